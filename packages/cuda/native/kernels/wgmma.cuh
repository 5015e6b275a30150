// Hopper warpgroup tensor-core instructions (wgmma, sm_90a) on 32x32 block tiles staged in shared
// memory in the swizzled K-major layout the instructions read: one 32-element k row of a block
// (128 bytes in fp32, 64 in bf16) is exactly one swizzle row. Used by blocksparse_tma.cu.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>

template <bool BF>
struct WgTypes {
  static constexpr int ROW_BYTES = BF ? 64 : 128;  // one k row of 32 elements
  static constexpr int K_STEP = BF ? 16 : 8;      // k per instruction
};

// Byte offset within a 1024-byte-aligned tile -> its swizzled place: the 16-byte chunk index
// (bits 4..6, or 4..5 for 64-byte rows) XOR the row within the swizzle atom (bits 7..9 / 7..8).
template <bool BF>
__device__ __forceinline__ uint32_t swizzle(uint32_t off) {
  return BF ? off ^ (((off >> 7) & 3) << 4) : off ^ (((off >> 7) & 7) << 4);
}
// Shared-memory matrix descriptor of a K-major swizzled tile: start address, stride between
// 8-row groups (8 swizzle rows), swizzle mode (1: 128 bytes, 2: 64 bytes). Adding 2 advances the
// start by 32 bytes: the next k step within the swizzle row.
template <bool BF>
__device__ __forceinline__ uint64_t descriptor(uint32_t addr) {
  constexpr uint64_t rowBytes = WgTypes<BF>::ROW_BYTES, mode = BF ? 2 : 1;
  return (uint64_t)((addr & 0x3FFFF) >> 4) | (1ull << 16) | (((8 * rowBytes) >> 4) << 32) | (mode << 62);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmmaCommit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmmaWait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }
// Keeps the compiler from moving accesses to accumulators across the asynchronous instructions.
__device__ __forceinline__ void fenceOperand(float (&d)[16]) {
#pragma unroll
  for (int i = 0; i < 16; i++) asm volatile("" : "+f"(d[i])::"memory");
}

#define WG_ACC "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define WG_OUT(d)                                                                                                  \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), \
      "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
// d [64 x 32] += A [64 x k] B [32 x k]^T, both from shared memory.
template <bool BF>
__device__ __forceinline__ void wgmma(float (&d)[16], uint64_t a, uint64_t b) {
  if constexpr (BF) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " WG_ACC ", %16, %17, 1, 1, 1, 0, 0;\n"
                 : WG_OUT(d) : "l"(a), "l"(b));
  } else {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32 " WG_ACC ", %16, %17, 1, 1, 1;\n"
                 : WG_OUT(d) : "l"(a), "l"(b));
  }
}
// The same with A [64 x k] from registers: the fragment of mma.sync's m16n8k8 (TF32) or m16n8k16
// (BF16) A operand, for the 16 rows of each warp of the warpgroup.
template <bool BF>
__device__ __forceinline__ void wgmmaRegA(float (&d)[16], const uint32_t (&a)[4], uint64_t b) {
  if constexpr (BF) {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 " WG_ACC ", {%16, %17, %18, %19}, %20, 1, 1, 1, 0;\n"
                 : WG_OUT(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  } else {
    asm volatile("wgmma.mma_async.sync.aligned.m64n32k8.f32.tf32.tf32 " WG_ACC ", {%16, %17, %18, %19}, %20, 1, 1, 1;\n"
                 : WG_OUT(d) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b));
  }
}
// Loads that fragment for k step ks of a warpgroup's 64-row slice of a swizzled tile (rows
// `rows` bytes into the tile at `tile`, 1024-byte aligned): conflict-free, the swizzle spreads the
// 8 rows a warp reads over distinct banks.
template <bool BF>
__device__ __forceinline__ void loadA(uint32_t (&a)[4], const uint8_t* tile, int ks) {
  constexpr int ROW = WgTypes<BF>::ROW_BYTES;
  const int lane = threadIdx.x % 32, r = ((threadIdx.x / 32) % 4) * 16 + lane / 4, t4 = lane % 4;
  // Byte offsets of the fragment's k columns within a row: TF32 k = 8 ks + t4 (+ 4), BF16 pairs
  // k = 16 ks + 2 t4 (+ 8).
  const uint32_t c0 = BF ? (16 * ks + 2 * t4) * 2 : (8 * ks + t4) * 4, c1 = c0 + 16;
  const auto at = [&](int row, uint32_t col) { return *reinterpret_cast<const uint32_t*>(tile + swizzle<BF>(row * ROW + col)); };
  a[0] = at(r, c0);
  a[1] = at(r + 8, c0);
  a[2] = at(r, c1);
  a[3] = at(r + 8, c1);
}
#undef WG_ACC
#undef WG_OUT

// Two adjacent outputs (an even column): float32 as they are, bf16 rounded to nearest even once.
__device__ __forceinline__ void store2(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = make_float2(a, b); }
__device__ __forceinline__ void store2(__nv_bfloat16* p, float a, float b) { *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(a, b); }
// One 64 x 32 accumulator tile to out [m, outCols] at token row0, output column col0: warp w of the
// warpgroup holds rows 16 w + lane / 4 (+ 8), columns 8 j + 2 (lane % 4) (+ 1) in registers 4 j
// (+ 1) and 4 j + 2 (+ 1). Rows at or past `limit` (relative to row0 - tile) are not written.
template <typename O>
__device__ __forceinline__ void storeTile(const float (&d)[16], O* out, uint32_t outCols, uint32_t m0, int tileRow, int limit, uint32_t col0) {
  const int lane = threadIdx.x % 32, r = tileRow + ((threadIdx.x / 32) % 4) * 16 + lane / 4;
#pragma unroll
  for (int j = 0; j < 4; j++) {
    const uint32_t col = col0 + 8 * j + 2 * (lane % 4);
    if (r < limit) store2(out + (size_t)(m0 + r) * outCols + col, d[4 * j], d[4 * j + 1]);
    if (r + 8 < limit) store2(out + (size_t)(m0 + r + 8) * outCols + col, d[4 * j + 2], d[4 * j + 3]);
  }
}
#endif
