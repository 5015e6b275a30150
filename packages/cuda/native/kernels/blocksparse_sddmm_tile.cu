// SDDMM dW = dY^T X at the 32x32 blocks of W, on the tensor cores (TF32 mma.sync, fp32
// accumulation), with 2-D tiles: a CTA takes 8 consecutive block rows and up to 16 of the block
// columns their blocks use (an "item", built by the host: src/sddmm-items.ts), loads the dY slab of
// each row and the X slab of each column once per token step, and computes only the blocks present
// in the tile (at most 32). The one-block-row kernel (blocksparse_tc.cu) loads a dY slab for every 4
// blocks and an X slab for every block, ~2.5 MB of L2 traffic per block over 16384 tokens, which
// is where it ran (packages/cuda/NOTES.md, "SDDMM floor"); here a block costs (8 + columns) /
// blocks slabs, ~1 MB at density 0.5.
//
// Tokens are cut into chunks on the grid's y dimension; out[split][block] holds partial sums that
// the host reduces, as for the other SDDMM kernels.
#include "async_mma.cuh"

namespace {
constexpr int BS = 32, ROWS = 8, COLS = 16, MAX_BLOCKS = 32, WARPS = 8, THREADS = 32 * WARPS;
constexpr int PER_WARP = MAX_BLOCKS / WARPS;
// Tokens per pipeline stage and stages in flight (4 x 50 KB of shared memory, one CTA per SM).
constexpr int BK = 16, STAGES = 4;
// Stored [token][column]; a fragment read covers 4 token rows x 8 columns, so a row length of 8
// mod 32 puts the 32 lanes on distinct banks.
constexpr int LDA = ROWS * BS + 8, LDB = COLS * BS + 8;
constexpr int STAGE_FLOATS = BK * (LDA + LDB);
// An item's record in the table (ints): first block row, columns, blocks, unused, the columns'
// block indexes [COLS], the blocks' indexes in W [MAX_BLOCKS], their positions row * COLS + column
// in the tile [MAX_BLOCKS]. Blocks are in row-major order, so a warp's consecutive blocks often
// share a row and reuse its dY fragments.
constexpr int ITEM_INTS = 4 + COLS + 2 * MAX_BLOCKS;
}  // namespace

__device__ __forceinline__ uint32_t tf32(float v) { return __float_as_uint(v); }

template <bool REUSE_A>
__device__ __forceinline__ void sddmmTile(const float* dy, const float* x, const int32_t* items, float* out, uint32_t m, uint32_t rows, uint32_t cols,
                                          uint32_t nnz, uint32_t chunk) {
  extern __shared__ __align__(16) float smem[];
  const int32_t* item = items + (size_t)blockIdx.x * ITEM_INTS;
  const int r0 = item[0] * BS, ncols = item[1], nblocks = item[2];
  const int rowCols = min(ROWS * BS, (int)rows - r0);  // dY columns of this tile inside the matrix
  const uint32_t t0 = blockIdx.y * chunk;
  const int len = (int)min(chunk, m - t0);
  const int steps = (len + BK - 1) / BK;

  // This thread's sources: 4 chunks of 16 bytes of the dY slab, up to 8 of the X slabs per stage.
  auto issue = [&](int step) {
    float* sa = smem + (step % STAGES) * STAGE_FLOATS;
    float* sb = sa + BK * LDA;
    const int tk0 = step * BK;
#pragma unroll
    for (int i = 0; i < BK * ROWS * BS / 4 / THREADS; i++) {
      const int e = i * THREADS + threadIdx.x, k = e / (ROWS * BS / 4), c = (e % (ROWS * BS / 4)) * 4;
      const bool v = tk0 + k < len && c < rowCols;
      cpAsync16(sa + k * LDA + c, dy + (size_t)(t0 + (v ? tk0 + k : 0)) * rows + r0 + (v ? c : 0), v);
    }
#pragma unroll
    for (int i = 0; i < BK * COLS * BS / 4 / THREADS; i++) {
      const int e = i * THREADS + threadIdx.x, k = e / (COLS * BS / 4), c = (e % (COLS * BS / 4)) / (BS / 4), j = (e % (BS / 4)) * 4;
      if (c >= ncols) continue;
      const bool v = tk0 + k < len;
      cpAsync16(sb + k * LDB + c * BS + j, x + (size_t)(t0 + (v ? tk0 + k : 0)) * cols + (size_t)item[4 + c] * BS + j, v);
    }
  };

  // This warp's blocks: an even share of the item's, in order. The rows of an mma tile are
  // permuted within the block so that a thread's A fragment comes as two 8-byte reads straight
  // into the register pairs the mma takes: mma row g of m-tile i is block row 16i + 2g, row g + 8
  // is 16i + 2g + 1 (a 16-byte read across m-tiles would need register moves before every mma).
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int lo = warp * nblocks / WARPS, mine = (warp + 1) * nblocks / WARPS - lo;
  int aOff[PER_WARP], bOff[PER_WARP];
#pragma unroll
  for (int q = 0; q < PER_WARP; q++) {
    const int pos = q < mine ? item[4 + COLS + MAX_BLOCKS + lo + q] : 0;
    aOff[q] = (pos / COLS) * BS + 2 * g;
    bOff[q] = (pos % COLS) * BS + g;
  }
  float c[PER_WARP][2][4][4];
#pragma unroll
  for (int q = 0; q < PER_WARP; q++)
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 4; j++)
#pragma unroll
        for (int r = 0; r < 4; r++) c[q][i][j][r] = 0.f;

#pragma unroll
  for (int s = 0; s < STAGES - 1; s++) {
    if (s < steps) issue(s);
    cpAsyncCommit();
  }
  for (int step = 0; step < steps; step++) {
    cpAsyncWait<STAGES - 2>();
    __syncthreads();
    // The stage refilled now was read in the previous step, which every thread has finished.
    if (step + STAGES - 1 < steps) issue(step + STAGES - 1);
    cpAsyncCommit();
    const float* sa = smem + (step % STAGES) * STAGE_FLOATS;
    const float* sb = sa + BK * LDA;
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      const float* ka = sa + (kk + t) * LDA;
      const float* kb = sb + (kk + t) * LDB;
      uint32_t a[2][4];
      int aRow = -1;
#pragma unroll
      for (int q = 0; q < PER_WARP; q++) {
        if (q >= mine) break;
        if (!REUSE_A || aOff[q] != aRow) {  // warp-uniform: a new block row
          aRow = aOff[q];
#pragma unroll
          for (int i = 0; i < 2; i++) {
            const float2 k0 = *reinterpret_cast<const float2*>(ka + aRow + 16 * i), k4 = *reinterpret_cast<const float2*>(ka + 4 * LDA + aRow + 16 * i);
            a[i][0] = tf32(k0.x), a[i][1] = tf32(k0.y), a[i][2] = tf32(k4.x), a[i][3] = tf32(k4.y);
          }
        }
        uint32_t b[4][2];
#pragma unroll
        for (int j = 0; j < 4; j++) {
          b[j][0] = tf32(kb[bOff[q] + 8 * j]);
          b[j][1] = tf32(kb[4 * LDB + bOff[q] + 8 * j]);
        }
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
          for (int j = 0; j < 4; j++) mmaTf32(c[q][i][j], a[i], b[j]);
      }
    }
  }
  cpAsyncWait<0>();

  // mma element (row g, columns 2t, 2t + 1) of tile (i, j) is block element (16i + 2g, 8j + 2t);
  // row g + 8 is block row 16i + 2g + 1.
#pragma unroll
  for (int q = 0; q < PER_WARP; q++) {
    if (q >= mine) break;
    float* o = out + ((size_t)blockIdx.y * nnz + item[4 + COLS + lo + q]) * BS * BS + 2 * g * BS + 2 * t;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) {
        *reinterpret_cast<float2*>(o + 16 * i * BS + 8 * j) = make_float2(c[q][i][j][0], c[q][i][j][1]);
        *reinterpret_cast<float2*>(o + (16 * i + 1) * BS + 8 * j) = make_float2(c[q][i][j][2], c[q][i][j][3]);
      }
  }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1)
    bsr_sddmm_tile_tf32_32(const float* dy, const float* x, const int32_t* items, float* out, uint32_t m, uint32_t rows, uint32_t cols, uint32_t nnz, uint32_t chunk) {
  sddmmTile<true>(dy, x, items, out, m, rows, cols, nnz, chunk);
}
extern "C" __global__ void __launch_bounds__(THREADS, 1)
    bsr_sddmm_tile_tf32_32_fresh(const float* dy, const float* x, const int32_t* items, float* out, uint32_t m, uint32_t rows, uint32_t cols, uint32_t nnz, uint32_t chunk) {
  sddmmTile<false>(dy, x, items, out, m, rows, cols, nnz, chunk);
}

// For the host: the item limits and the kernel's launch shape.
extern "C" __global__ void bsr_sddmm_tile_params(int32_t* out) {
  out[0] = ROWS;
  out[1] = COLS;
  out[2] = MAX_BLOCKS;
  out[3] = ITEM_INTS;
  out[4] = THREADS;
  out[5] = STAGES * STAGE_FLOATS * 4;
  out[6] = BK;
}
