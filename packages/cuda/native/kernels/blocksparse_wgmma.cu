// Block-sparse forward / dX for 32x32 blocks on Hopper's warpgroup tensor-core instructions (wgmma,
// sm_90a only): 'high' (TF32, fp32 operands) and 'medium' (BF16, operands converted to bf16 first).
//
// The mma.sync kernels (blocksparse_tc.cu, blocksparse_bf16.cu) spend their issue slots on
// fragment loads: every fragment element passes through a thread's registers. Here the tensor
// cores read both operands from shared memory through matrix descriptors, so a warpgroup issues
// one instruction per 64 tokens x 32 outputs x 8 (TF32) or 16 (BF16) k. The tile structure is the
// union tile of tcUnion: a CTA covers 128 tokens x G block rows (forward) or block columns (dX, on
// transposed blocks), walks the union of their column blocks, stages each activation tile once
// for the (up to G) weight blocks at that column, and multiplies only the blocks that exist.
// Tiles are staged by cp.async into the 128-byte (TF32) or 64-byte (BF16) swizzle wgmma expects:
// one 32-wide k row of a block is exactly one swizzle row.
#include <cstdint>
#include "async_mma.cuh"

namespace {
constexpr int WG_TOKENS = 128, WG_BS = 32, WG_THREADS = 256;

template <bool BF>
struct WgTypes {
  static constexpr int ROW_BYTES = BF ? 64 : 128;  // one k row of 32 elements
  static constexpr int K_STEP = BF ? 16 : 8;      // k per instruction
  static constexpr int A_BYTES = WG_TOKENS * ROW_BYTES;
  static constexpr int B_BYTES = WG_BS * ROW_BYTES;
};
template <int G, int S, bool BF>
struct WgShape : WgTypes<BF> {
  static constexpr int STAGE_BYTES = WgTypes<BF>::A_BYTES + G * WgTypes<BF>::B_BYTES;
  static constexpr int SMEM = S * STAGE_BYTES + 1024;  // + slack to align the stages to 1024 bytes
};

// Byte offset within a 1024-byte-aligned tile -> its swizzled place: the 16-byte chunk index
// (bits 4..6, or 4..5 for 64-byte rows) XOR the row within the swizzle atom (bits 7..9 / 7..8).
template <bool BF>
__device__ __forceinline__ uint32_t swizzle(uint32_t off) {
  return BF ? off ^ (((off >> 7) & 3) << 4) : off ^ (((off >> 7) & 7) << 4);
}
// Shared-memory matrix descriptor of a K-major swizzled tile: start address, stride between
// 8-row groups (8 swizzle rows), swizzle mode (1: 128 bytes, 2: 64 bytes).
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
#endif
}  // namespace

// act [m, actCols] (fp32, or bf16 for BF); w: blocks as [n][k] rows (fp32 or bf16; dX passes
// transposed blocks); union table as in tcUnion (blocksparse_tc.cu), groups of G; out [m, outCols].
// S shared-memory stages; PENDING: groups of wgmma left in flight while the next stage is issued.
template <int G, int S, int PENDING, bool BF>
__device__ void wgmmaUnion(const void* act, const void* w, const int32_t* unionPtr, const int32_t* unionIdx, const int32_t* unionBlk,
                           float* out, uint32_t m, uint32_t actCols, uint32_t outCols) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using W = WgShape<G, S, BF>;
  constexpr int ES = BF ? 2 : 4, ROW = W::ROW_BYTES, CHUNKS = ROW / 16, AHEAD = S - 1 - PENDING;
  static_assert(AHEAD >= 1, "at least one stage must be in flight");
  extern __shared__ __align__(16) uint8_t smemRaw[];
  const uint32_t base = (smemAddr(smemRaw) + 1023) & ~1023u;
  uint8_t* smem = smemRaw + (base - smemAddr(smemRaw));
  const uint32_t grp = blockIdx.x, m0 = blockIdx.y * WG_TOKENS;
  const int limit = (int)min((uint32_t)WG_TOKENS, m - m0);
  const int first = unionPtr[grp], steps = unionPtr[grp + 1] - first;
  const int wg = threadIdx.x / 128, warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32;
  const uint8_t* actBytes = static_cast<const uint8_t*>(act);
  const uint8_t* wBytes = static_cast<const uint8_t*>(w);

  float acc[G][16];
#pragma unroll
  for (int g = 0; g < G; g++)
#pragma unroll
    for (int i = 0; i < 16; i++) acc[g][i] = 0.f;

  auto issue = [&](int step) {
    const uint32_t s = (step % S) * W::STAGE_BYTES;
    const int e = first + step;
    const uint8_t* abase = actBytes + ((size_t)m0 * actCols + (size_t)unionIdx[e] * WG_BS) * ES;
#pragma unroll
    for (int i = 0; i < WG_TOKENS * CHUNKS / WG_THREADS; i++) {
      const int q = i * WG_THREADS + threadIdx.x, row = q / CHUNKS, ch = q % CHUNKS;
      const bool valid = row < limit;
      cpAsync16(smem + s + swizzle<BF>(row * ROW + ch * 16), abase + (size_t)(valid ? row : 0) * actCols * ES + ch * 16, valid);
    }
#pragma unroll
    for (int i = 0; i < G * WG_BS * CHUNKS / WG_THREADS; i++) {
      const int q = i * WG_THREADS + threadIdx.x, g = q / (WG_BS * CHUNKS), row = (q / CHUNKS) % WG_BS, ch = q % CHUNKS;
      const int blk = unionBlk[e * G + g];
      if (blk >= 0)
        cpAsync16(smem + s + W::A_BYTES + g * W::B_BYTES + swizzle<BF>(row * ROW + ch * 16), wBytes + ((size_t)blk * WG_BS * WG_BS) * ES + row * ROW + ch * 16, true);
    }
  };
#pragma unroll
  for (int s = 0; s < AHEAD; s++) {
    if (s < steps) issue(s);
    cpAsyncCommit();
  }
  for (int step = 0; step < steps; step++) {
    cpAsyncWait<AHEAD - 1>();
    // The tensor cores read through the async proxy what cp.async wrote through the generic one.
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    // This warpgroup's products of step - 1 - PENDING are done: the stage they read is refilled below.
    wgmmaWait<PENDING>();
    __syncthreads();
    if (step + AHEAD < steps) issue(step + AHEAD);
    cpAsyncCommit();
    const uint32_t s = base + (step % S) * W::STAGE_BYTES;
    const uint64_t da = descriptor<BF>(s + wg * 64 * ROW);
    const int32_t* blk = unionBlk + (size_t)(first + step) * G;
#pragma unroll
    for (int g = 0; g < G; g++) fenceOperand(acc[g]);
    wgmmaFence();
#pragma unroll
    for (int g = 0; g < G; g++) {
      if (blk[g] < 0) continue;  // uniform across the CTA
      const uint64_t db = descriptor<BF>(s + W::A_BYTES + g * W::B_BYTES);
#pragma unroll
      for (int k = 0; k < 32 / W::K_STEP; k++) wgmma<BF>(acc[g], da + 2 * k, db + 2 * k);  // +32 bytes per k step
    }
    wgmmaCommit();
#pragma unroll
    for (int g = 0; g < G; g++) fenceOperand(acc[g]);
  }
  wgmmaWait<0>();
  cpAsyncWait<0>();
#pragma unroll
  for (int g = 0; g < G; g++) fenceOperand(acc[g]);
  // Accumulator layout: warp w of the warpgroup holds rows 16 w + lane / 4 (+ 8), columns
  // 8 j + 2 (lane % 4) (+ 1) in registers 4 j (+ 1) and 4 j + 2 (+ 1).
  const int r = wg * 64 + warp * 16 + lane / 4;
#pragma unroll
  for (int g = 0; g < G; g++) {
    const uint32_t ob = grp * G + g;
    if (ob * WG_BS >= outCols) break;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const uint32_t col = ob * WG_BS + 8 * j + 2 * (lane % 4);
      if (r < limit) *reinterpret_cast<float2*>(out + (size_t)(m0 + r) * outCols + col) = make_float2(acc[g][4 * j], acc[g][4 * j + 1]);
      if (r + 8 < limit) *reinterpret_cast<float2*>(out + (size_t)(m0 + r + 8) * outCols + col) = make_float2(acc[g][4 * j + 2], acc[g][4 * j + 3]);
    }
  }
#endif
}

// One kernel per variant: bsr_wgmma_{tf32,bf16}_g{G}s{S}p{PENDING}. The forward passes
// (x, w, ..., cols, rows); dX passes (dY, transposed blocks, ..., rows, cols).
#define WGMMA_KERNEL(NAME, BF, G, S, P, LB)                                                                                   \
  extern "C" __global__ void __launch_bounds__(WG_THREADS, LB) bsr_wgmma_##NAME##_g##G##s##S##p##P(                          \
      const void* act, const void* w, const int32_t* up, const int32_t* ui, const int32_t* ub, float* out, uint32_t m,       \
      uint32_t actCols, uint32_t outCols) { wgmmaUnion<G, S, P, BF>(act, w, up, ui, ub, out, m, actCols, outCols); }
#define WGMMA_VARIANTS(X) \
  X(tf32, false, 4, 3, 0, 2) X(tf32, false, 4, 4, 1, 1) X(tf32, false, 8, 3, 0, 1) X(tf32, false, 8, 4, 1, 1) \
  X(bf16, true, 4, 3, 0, 2) X(bf16, true, 4, 4, 1, 2) X(bf16, true, 8, 3, 0, 1) X(bf16, true, 8, 4, 1, 1)
WGMMA_VARIANTS(WGMMA_KERNEL)

// For the host: tokens per tile, then per variant (in WGMMA_VARIANTS order) its group size and
// dynamic shared memory.
#define WGMMA_PARAMS(NAME, BF, G, S, P, LB) G, WgShape<G, S, BF>::SMEM,
extern "C" __global__ void bsr_wgmma_params(int32_t* out) {
  const int v[] = {WGMMA_VARIANTS(WGMMA_PARAMS)};
  out[0] = WG_TOKENS;
  for (int i = 0; i < (int)(sizeof(v) / sizeof(v[0])); i++) out[1 + i] = v[i];
}
