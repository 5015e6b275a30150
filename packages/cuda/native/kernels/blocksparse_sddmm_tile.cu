// SDDMM dW = dY^T X at the 32x32 blocks of W with 2-D tiles: a CTA takes 8 consecutive block rows
// and up to 16 of the block columns their blocks use (an "item" of the host's table, built by
// buildTileItems in core), loads the dY slab of each row and the X slab of each column once per
// token step into shared memory ([token][column], as they lie in memory), and computes only the
// blocks present in the tile (at most 32). Tokens are cut into chunks on the grid's y dimension;
// out[split][block] holds partial sums that the host adds up.
//
// fp32 FMA: each thread 8 x 8 outputs of a block, an outer product per token (4 float4 reads for
// 64 FMA). A TF32 mma.sync consumer of the same pipeline measured no faster than the one-row
// kernel of blocksparse_tc.cu (NOTES 19, see packages/cuda/DESIGN.md), so tensor cores stay there.
#include "async_mma.cuh"

namespace {
constexpr int BS = 32, ROWS = 8, COLS = 16, MAX_BLOCKS = 32, WARPS = 8, THREADS = 32 * WARPS;
// Tokens per pipeline stage and stages in flight (4 x 50 KB of shared memory, one CTA per SM).
constexpr int BK = 16, STAGES = 4;
// Rows padded by 8 floats: 16-byte aligned, and a quarter-warp's float4 reads (one token row, 8
// consecutive floats of dY broadcast, 16 of X) hit distinct banks.
constexpr int LDA = ROWS * BS + 8, LDB = COLS * BS + 8;
constexpr int STAGE_FLOATS = BK * (LDA + LDB);
// An item's record (ints): first block row, columns, blocks, unused, the columns' block indexes
// [COLS], the blocks' indexes in W [MAX_BLOCKS], their positions row * COLS + column in the tile
// [MAX_BLOCKS] (row-major order).
constexpr int ITEM_INTS = 4 + COLS + 2 * MAX_BLOCKS;
constexpr int BLOCK_AT = 4 + COLS, POS_AT = 4 + COLS + MAX_BLOCKS;
}  // namespace

// fp32: 16 threads per block (a 4 x 4 grid of 8 x 8 outputs: rows 4ty..4ty+3 and 16+4ty..,
// columns likewise, so that each read is one float4 and a quarter-warp's reads are broadcasts or
// consecutive), 16 blocks at a time, each thread two blocks of the item (slot s and s + 16).
struct Fp32Consumer {
  static constexpr int PER = MAX_BLOCKS / (THREADS / 16);
  float c[PER][8][8];
  int aOff[PER], bOff[PER], blk[PER], mine;
  __device__ void init(const int32_t* item) {
    const int slot = threadIdx.x / 16, ty = (threadIdx.x % 16) / 4, tx = threadIdx.x % 4, nblocks = item[2];
    mine = 0;
#pragma unroll
    for (int q = 0; q < PER; q++) {
      const int b = slot + q * (THREADS / 16);
      if (b < nblocks) mine++;
      const int pos = b < nblocks ? item[POS_AT + b] : 0;
      blk[q] = b < nblocks ? item[BLOCK_AT + b] : 0;
      aOff[q] = (pos / COLS) * BS + 4 * ty;
      bOff[q] = (pos % COLS) * BS + 4 * tx;
#pragma unroll
      for (int i = 0; i < 8; i++)
#pragma unroll
        for (int j = 0; j < 8; j++) c[q][i][j] = 0.f;
    }
  }
  __device__ void step(const float* sa, const float* sb) {
#pragma unroll
    for (int q = 0; q < PER; q++) {
      if (q >= mine) break;
#pragma unroll 4
      for (int k = 0; k < BK; k++) {
        const float4 a0 = *reinterpret_cast<const float4*>(sa + k * LDA + aOff[q]), a1 = *reinterpret_cast<const float4*>(sa + k * LDA + aOff[q] + 16);
        const float4 b0 = *reinterpret_cast<const float4*>(sb + k * LDB + bOff[q]), b1 = *reinterpret_cast<const float4*>(sb + k * LDB + bOff[q] + 16);
        const float a[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w}, b[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
        for (int i = 0; i < 8; i++)
#pragma unroll
          for (int j = 0; j < 8; j++) c[q][i][j] = fmaf(a[i], b[j], c[q][i][j]);
      }
    }
  }
  __device__ void store(float* out) const {
    const int ty = (threadIdx.x % 16) / 4, tx = threadIdx.x % 4;
#pragma unroll
    for (int q = 0; q < PER; q++) {
      if (q >= mine) break;
      float* o = out + (size_t)blk[q] * BS * BS;
#pragma unroll
      for (int i = 0; i < 8; i++) {
        float* row = o + ((i / 4) * 16 + 4 * ty + i % 4) * BS + 4 * tx;
        *reinterpret_cast<float4*>(row) = make_float4(c[q][i][0], c[q][i][1], c[q][i][2], c[q][i][3]);
        *reinterpret_cast<float4*>(row + 16) = make_float4(c[q][i][4], c[q][i][5], c[q][i][6], c[q][i][7]);
      }
    }
  }
};

template <class Consumer>
__device__ __forceinline__ void sddmmTile(const float* dy, const float* x, const int32_t* items, float* out, uint32_t m, uint32_t rows, uint32_t cols,
                                          uint32_t nnz, uint32_t chunk) {
  extern __shared__ __align__(16) float smem[];
  const int32_t* item = items + (size_t)blockIdx.x * ITEM_INTS;
  const int r0 = item[0] * BS, ncols = item[1];
  const int rowCols = min(ROWS * BS, (int)rows - r0);  // dY columns of this tile inside the matrix
  const uint32_t t0 = blockIdx.y * chunk;
  const int len = (int)min(chunk, m - t0);
  const int steps = (len + BK - 1) / BK;

  // A stage: the dY slab (16 bytes x 4 per thread) and the X slabs of the item's columns (up to 8).
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

  Consumer consumer;
  consumer.init(item);
  cpAsyncPipeline<STAGES>(steps, issue, [&](int step) {
    const float* sa = smem + (step % STAGES) * STAGE_FLOATS;
    consumer.step(sa, sa + BK * LDA);
  });
  consumer.store(out + (size_t)blockIdx.y * nnz * BS * BS);
}

// Grid (items, token chunks); bsr_sddmm_tile_params' threads and dynamic shared memory.
extern "C" __global__ void __launch_bounds__(THREADS, 1) bsr_sddmm_tile_f32_32(const float* dy, const float* x, const int32_t* items, float* out,
                                                                             uint32_t m, uint32_t rows, uint32_t cols, uint32_t nnz, uint32_t chunk) {
  sddmmTile<Fp32Consumer>(dy, x, items, out, m, rows, cols, nnz, chunk);
}

// For the host: the item limits and the kernels' launch shape.
extern "C" __global__ void bsr_sddmm_tile_params(int32_t* out) {
  out[0] = ROWS;
  out[1] = COLS;
  out[2] = MAX_BLOCKS;
  out[3] = ITEM_INTS;
  out[4] = THREADS;
  out[5] = STAGES * STAGE_FLOATS * 4;
  out[6] = BK;
}
