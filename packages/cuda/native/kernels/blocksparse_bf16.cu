// BF16 block-sparse forward and dX for 32x32 blocks ('medium'), on operands converted to bf16
// beforehand. The fp32 kernels of blocksparse_tc.cu are bound by L2 bandwidth at 32x32 (each
// activation loaded serves only the 32 outputs of one block); here the activations and weight
// blocks are read as bf16 (half the bytes; each fragment register is one 32-bit shared load, no
// conversion in the inner loop), and a CTA covers a union tile of 4 block rows (forward) or block
// columns (dX) so each activation tile staged serves up to 4 blocks (see tcUnion).
#include <cuda_bf16.h>
#include "async_mma.cuh"
#include "common.cuh"
#include "half.cuh"

namespace {
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
}  // namespace

// y (bf16 pairs) = x rounded to bf16; n4 groups of 4 floats.
extern "C" __global__ void f32_to_bf16(const float4* x, uint2* y, uint32_t n4) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += gridDim.x * blockDim.x) {
    const float4 v = x[i];
    y[i] = make_uint2(pack(v.x, v.y), pack(v.z, v.w));
  }
}
// 32x32 weight blocks to bf16, transposed within each block when `transpose` (dX reads W[r][c] as
// [c][r] so that both products read k-contiguous rows). One thread per output pair.
// blocks_bf16_to_bf16 does the same for bf16 blocks (their bf16 inputs), transposing only.
template <typename S>
__device__ void blocksToBf16(const S* w, uint32_t* y, uint32_t nnz, int transpose) {
  const uint32_t pairs = nnz * 32 * 16;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += gridDim.x * blockDim.x) {
    const uint32_t b = i / 512, row = (i / 16) % 32, col = (i % 16) * 2;  // output element (row, col), (row, col + 1)
    const S* blk = w + (size_t)b * 1024;
    y[i] = transpose ? pack(toF(blk[col * 32 + row]), toF(blk[(col + 1) * 32 + row])) : pack(toF(blk[row * 32 + col]), toF(blk[row * 32 + col + 1]));
  }
}
extern "C" __global__ void blocks_to_bf16(const float* w, uint32_t* y, uint32_t nnz, int transpose) { blocksToBf16(w, y, nnz, transpose); }
extern "C" __global__ void blocks_bf16_to_bf16(const __nv_bfloat16* w, uint32_t* y, uint32_t nnz, int transpose) { blocksToBf16(w, y, nnz, transpose); }

constexpr int TOKENS = 128, BS = 32, THREADS = 256, STAGES = 3;
constexpr int LDW = 20;                  // 32-bit words per staged row: 16 (32 bf16) + 4 of padding
constexpr int A_WORDS = TOKENS * LDW;
constexpr int B_WORDS = BS * LDW;
template <int G>
struct UnionShape {
  static constexpr int STAGE_WORDS = A_WORDS + G * B_WORDS;
  static constexpr int SMEM = STAGES * STAGE_WORDS * 4;
  static constexpr int WARPS_PER_MEMBER = 8 / G;               // the 8 warps split each member's tokens
  static constexpr int WARP_TOKENS = TOKENS / WARPS_PER_MEMBER;  // 64 for G = 4
  static constexpr int MT = WARP_TOKENS / 16;
};

// act [m, actCols] bf16; wb [nnz][32][32] bf16 as rows n with k contiguous; union table as in
// tcUnion; out [m, outCols] fp32.
template <int G>
__device__ void unionBf16(const uint16_t* act, const uint16_t* wb, const int32_t* unionPtr, const int32_t* unionIdx,
                          const int32_t* unionBlk, float* out, uint32_t m, uint32_t actCols, uint32_t outCols) {
  extern __shared__ __align__(16) uint32_t sm[];
  const uint32_t grp = blockIdx.x, m0 = blockIdx.y * TOKENS;
  const int limit = (int)min((uint32_t)TOKENS, m - m0);
  const int first = unionPtr[grp], steps = unionPtr[grp + 1] - first;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g8 = lane / 4, t4 = lane % 4;
  using U = UnionShape<G>;
  constexpr int STAGE_WORDS = U::STAGE_WORDS, MT = U::MT;
  const int mine = warp / U::WARPS_PER_MEMBER, wm = (warp % U::WARPS_PER_MEMBER) * U::WARP_TOKENS;
  float c[MT][4][4];
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
      for (int q = 0; q < 4; q++) c[i][j][q] = 0.f;

  auto issue = [&](int step) {
    uint32_t* s = sm + (step % STAGES) * STAGE_WORDS;
    const int e = first + step;
    const uint16_t* abase = act + (size_t)m0 * actCols + (size_t)unionIdx[e] * BS;
    // Activation tile: 128 rows x 64 bytes = 4 chunks of 16 bytes per row.
#pragma unroll
    for (int i = 0; i < TOKENS * 4 / THREADS; i++) {
      const int q = i * THREADS + threadIdx.x, row = q / 4, ch = q % 4;
      const bool valid = row < limit;
      cpAsync16(s + row * LDW + ch * 4, abase + (size_t)(valid ? row : 0) * actCols + ch * 8, valid);
    }
    // Weight blocks: G x 32 rows x 4 chunks.
#pragma unroll
    for (int i = 0; i < G * BS * 4 / THREADS; i++) {
      const int q = i * THREADS + threadIdx.x, g = q / (BS * 4), row = (q / 4) % BS, ch = q % 4;
      const int blk = unionBlk[e * G + g];
      if (blk >= 0) cpAsync16(s + A_WORDS + g * B_WORDS + row * LDW + ch * 4, wb + (size_t)blk * BS * BS + row * BS + ch * 8, true);
    }
  };
  cpAsyncPipeline<STAGES>(steps, issue, [&](int step) {
    if (unionBlk[(first + step) * G + mine] < 0) return;  // warp-uniform
    const uint32_t* sa = sm + (step % STAGES) * STAGE_WORDS;
    const uint32_t* sb = sa + A_WORDS + mine * B_WORDS;
#pragma unroll
    for (int kw = 0; kw < 16; kw += 8) {  // two k16 steps; a word holds two k
      uint32_t a[MT][4], b[4][2];
#pragma unroll
      for (int i = 0; i < MT; i++) {
        const uint32_t* r0 = sa + (wm + 16 * i + g8) * LDW + kw + t4;
        a[i][0] = r0[0];
        a[i][1] = r0[8 * LDW];
        a[i][2] = r0[4];
        a[i][3] = r0[8 * LDW + 4];
      }
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const uint32_t* r0 = sb + (8 * j + g8) * LDW + kw + t4;
        b[j][0] = r0[0];
        b[j][1] = r0[4];
      }
#pragma unroll
      for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) mmaBf16(c[i][j], a[i], b[j]);
    }
  });
  const uint32_t ob = grp * G + mine;
  if (ob * BS >= outCols) return;
#pragma unroll
  for (int i = 0; i < MT; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int r = wm + 16 * i + g8, col = ob * BS + 8 * j + 2 * t4;
      if (r < limit) *reinterpret_cast<float2*>(out + (size_t)(m0 + r) * outCols + col) = make_float2(c[i][j][0], c[i][j][1]);
      if (r + 8 < limit) *reinterpret_cast<float2*>(out + (size_t)(m0 + r + 8) * outCols + col) = make_float2(c[i][j][2], c[i][j][3]);
    }
}

// One kernel serves forward and dX: dX passes dY and the blocks converted transposed.
#define BF16U_KERNELS(GG, LB)                                                                                                     \
  extern "C" __global__ void __launch_bounds__(THREADS, LB) bsr_union_bf16u##GG##_32(const uint16_t* act, const uint16_t* wb, const int32_t* up, \
      const int32_t* ui, const int32_t* ub, float* out, uint32_t m, uint32_t actCols, uint32_t outCols) { unionBf16<GG>(act, wb, up, ui, ub, out, m, actCols, outCols); }
// Groups of 4 measured faster than groups of 2 on an H100 (0.58 vs 0.61 ms, forward at density 0.5).
BF16U_KERNELS(4, 2)

// For the host: the group size, tokens per tile and the dynamic shared memory.
extern "C" __global__ void bsr_bf16u_params(int32_t* out) {
  out[0] = 4;
  out[1] = TOKENS;
  out[2] = UnionShape<4>::SMEM;
}
