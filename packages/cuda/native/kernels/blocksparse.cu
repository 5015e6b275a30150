// Block-sparse products in fp32 (FMA on the CUDA cores): forward Y = X W^T, dX = dY W and the
// SDDMM dW = (dY^T X) at W's blocks. W is a BSR matrix of bs x bs blocks (see BlockLayout in core).
//
// Each is a register-tiled product: a CTA computes a BM x BN output tile, each thread TM x TN of it
// (in groups of four rows/columns spread across the tile so that shared-memory reads are
// consecutive float4s). The shared dimension is walked in steps of BK through two shared-memory
// stages, the next step prefetched into registers while the current one is multiplied, one barrier
// per step. For the forward and dX a tile is BM tokens by one block; the shared dimension is the
// list of blocks of its block row (block column for dX). For the SDDMM a tile is one block row by
// several of its blocks (they share dY's columns), over a chunk of the tokens.
#include "common.cuh"

// Padding (floats, a multiple of 4 so rows stay float4-aligned) of a k-row of a [BK][ROWS] stage
// that minimises bank conflicts of the loader's transposing stores (k-contiguous operands: lane e
// holds 4 consecutive k of row e / (BK / 4)).
constexpr int conflictWays(int rows, int bk, int pad, int j) {
  int worst = 0;
  for (int bank = 0; bank < 32; bank++) {
    int ways = 0;
    for (int lane = 0; lane < 32; lane++) {
      int r = lane / (bk / 4), kk = (lane % (bk / 4)) * 4 + j;
      if ((kk * (rows + pad) + r) % 32 == bank) ways++;
    }
    worst = ways > worst ? ways : worst;
  }
  return worst;
}
constexpr int bestPad(int rows, int bk) {
  int best = 0, bestWays = 1 << 30;
  for (int pad = 0; pad <= 28; pad += 4) {
    int ways = 0;
    for (int j = 0; j < 4; j++) ways = conflictWays(rows, bk, pad, j) > ways ? conflictWays(rows, bk, pad, j) : ways;
    if (ways < bestWays) { bestWays = ways; best = pad; }
  }
  return best;
}

// One operand's ROWS x BK tile per step. K-contiguous operands (element (r, k) at base + r * rs +
// k) are loaded as float4s along k and transposed into the stage; row-contiguous ones (element (r,
// k) at base + k * ks + col[r]) are float4s along the rows and copied straight. `limit` bounds the
// rows (r < limit) and `klimit` the k of the step (k < klimit; BK when the step is full).
template <int ROWS, int BK, int NT, bool KCONTIG>
struct Operand {
  static constexpr int PAD = KCONTIG ? bestPad(ROWS, BK) : 0;
  static constexpr int STRIDE = ROWS + PAD;  // floats per k-row of a stage
  static constexpr int STAGE = BK * STRIDE;
  static constexpr int UNITS = ROWS * BK / 4;
  static constexpr int PER = (UNITS + NT - 1) / NT;
  float4 reg[PER];

  __device__ static int unitRow(int e) { return KCONTIG ? e / (BK / 4) : (e % (ROWS / 4)) * 4; }
  __device__ static int unitK(int e) { return KCONTIG ? (e % (BK / 4)) * 4 : e / (ROWS / 4); }

  // K-contiguous: base points at (row 0, k0); rs is the row stride.
  __device__ void loadK(const float* base, uint32_t rs, int limit) {
#pragma unroll
    for (int l = 0; l < PER; l++) {
      const int e = l * NT + threadIdx.x;
      const int r = unitRow(e), k = unitK(e);
      reg[l] = (UNITS % NT == 0 || e < UNITS) && r < limit ? *reinterpret_cast<const float4*>(base + (size_t)r * rs + k) : make_float4(0, 0, 0, 0);
    }
  }
  // Row-contiguous: base points at k0's row; col[l] is the offset of this thread's unit l (or -1 past the limit).
  __device__ void loadRows(const float* base, uint32_t ks, const int* col, int klimit) {
#pragma unroll
    for (int l = 0; l < PER; l++) {
      const int e = l * NT + threadIdx.x;
      const int k = unitK(e);
      reg[l] = (UNITS % NT == 0 || e < UNITS) && col[l] >= 0 && k < klimit ? *reinterpret_cast<const float4*>(base + (size_t)k * ks + col[l]) : make_float4(0, 0, 0, 0);
    }
  }
  __device__ void store(float* stage) const {
#pragma unroll
    for (int l = 0; l < PER; l++) {
      const int e = l * NT + threadIdx.x;
      if (UNITS % NT != 0 && e >= UNITS) continue;
      const int r = unitRow(e), k = unitK(e);
      if (KCONTIG) {
        stage[(k + 0) * STRIDE + r] = reg[l].x;
        stage[(k + 1) * STRIDE + r] = reg[l].y;
        stage[(k + 2) * STRIDE + r] = reg[l].z;
        stage[(k + 3) * STRIDE + r] = reg[l].w;
      } else {
        *reinterpret_cast<float4*>(stage + k * STRIDE + r) = reg[l];
      }
    }
  }
};

// The accumulators and the multiply of one stage.
template <int BM, int BN, int BK, int TM, int TN>
struct Accum {
  static constexpr int WM = BM / TM, WN = BN / TN;  // threads along rows / columns
  float c[TM][TN];
  __device__ Accum() {
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
      for (int j = 0; j < TN; j++) c[i][j] = 0.f;
  }
  __device__ static int tx() { return threadIdx.x % WN; }
  __device__ static int ty() { return threadIdx.x / WN; }
  // Row i of this thread's tile (group of four i / 4, spread 4 * WM apart), likewise columns.
  __device__ static int row(int i) { return (i / 4) * 4 * WM + ty() * 4 + i % 4; }
  __device__ static int col(int j) { return (j / 4) * 4 * WN + tx() * 4 + j % 4; }

  template <int ASTRIDE, int BSTRIDE>
  __device__ void multiply(const float* As, const float* Bs) {
#pragma unroll
    for (int k = 0; k < BK; k++) {
      float a[TM], b[TN];
#pragma unroll
      for (int g = 0; g < TM / 4; g++) *reinterpret_cast<float4*>(&a[4 * g]) = *reinterpret_cast<const float4*>(As + k * ASTRIDE + g * 4 * WM + ty() * 4);
#pragma unroll
      for (int h = 0; h < TN / 4; h++) *reinterpret_cast<float4*>(&b[4 * h]) = *reinterpret_cast<const float4*>(Bs + k * BSTRIDE + h * 4 * WN + tx() * 4);
#pragma unroll
      for (int i = 0; i < TM; i++)
#pragma unroll
        for (int j = 0; j < TN; j++) c[i][j] = fmaf(a[i], b[j], c[i][j]);
    }
  }
};

// The two-stage pipeline of every product: load(t) fetches step t into a's and b's registers, which
// are stored into the stage not being multiplied; one barrier per step.
template <class A, class B, class Acc, class Load>
__device__ void pipeline(int steps, A& a, B& b, Acc& acc, float (*As)[A::STAGE], float (*Bs)[B::STAGE], Load load) {
  if (steps <= 0) return;
  load(0);
  a.store(As[0]);
  b.store(Bs[0]);
  __syncthreads();
  for (int t = 0; t < steps; t++) {
    const int cur = t & 1;
    if (t + 1 < steps) load(t + 1);
    acc.template multiply<A::STRIDE, B::STRIDE>(As[cur], Bs[cur]);
    if (t + 1 < steps) {
      a.store(As[cur ^ 1]);
      b.store(Bs[cur ^ 1]);
    }
    __syncthreads();
  }
}

// Y [m, rows] = X [m, cols] W^T. Grid: x = block rows, y = token tiles (CTAs running together share X's tile in L2).
template <int BS, int BM, int BK, int TM, int TN>
__device__ void bsrForward(const float* __restrict__ x, const float* __restrict__ w, const int32_t* __restrict__ rowPtr,
                           const int32_t* __restrict__ colIdx, float* __restrict__ y, uint32_t m, uint32_t rows, uint32_t cols) {
  constexpr int NT = (BM / TM) * (BS / TN);
  using A = Operand<BM, BK, NT, true>;
  using B = Operand<BS, BK, NT, true>;
  __shared__ __align__(16) float As[2][A::STAGE];
  __shared__ __align__(16) float Bs[2][B::STAGE];
  const uint32_t br = blockIdx.x, m0 = blockIdx.y * BM;
  const int first = rowPtr[br], steps = (rowPtr[br + 1] - first) * (BS / BK);
  const int limit = min((uint32_t)BM, m - m0);
  Accum<BM, BS, BK, TM, TN> acc;
  A a;
  B b;
  auto load = [&](int t) {
    const int s = first + t / (BS / BK), k0 = (t % (BS / BK)) * BK;
    a.loadK(x + (size_t)m0 * cols + (size_t)colIdx[s] * BS + k0, cols, limit);
    b.loadK(w + (size_t)s * BS * BS + k0, BS, BS);
  };
  pipeline(steps, a, b, acc, As, Bs, load);
#pragma unroll
  for (int i = 0; i < TM; i++) {
    const int r = acc.row(i);
    if (r >= limit) continue;
#pragma unroll
    for (int h = 0; h < TN / 4; h++)
      *reinterpret_cast<float4*>(y + (size_t)(m0 + r) * rows + br * BS + acc.col(4 * h)) =
          make_float4(acc.c[i][4 * h], acc.c[i][4 * h + 1], acc.c[i][4 * h + 2], acc.c[i][4 * h + 3]);
  }
}

// dX [m, cols] = dY [m, rows] W. Grid: x = block columns, y = token tiles.
template <int BS, int BM, int BK, int TM, int TN>
__device__ void bsrGradInput(const float* __restrict__ dy, const float* __restrict__ w, const int32_t* __restrict__ colPtr,
                             const int32_t* __restrict__ cscBlock, const int32_t* __restrict__ rowIdx, float* __restrict__ dx,
                             uint32_t m, uint32_t rows, uint32_t cols) {
  constexpr int NT = (BM / TM) * (BS / TN);
  using A = Operand<BM, BK, NT, true>;
  using B = Operand<BS, BK, NT, false>;
  __shared__ __align__(16) float As[2][A::STAGE];
  __shared__ __align__(16) float Bs[2][B::STAGE];
  const uint32_t bc = blockIdx.x, m0 = blockIdx.y * BM;
  const int first = colPtr[bc], steps = (colPtr[bc + 1] - first) * (BS / BK);
  const int limit = min((uint32_t)BM, m - m0);
  int bcol[B::PER];
#pragma unroll
  for (int l = 0; l < B::PER; l++) bcol[l] = B::unitRow(l * NT + threadIdx.x);
  Accum<BM, BS, BK, TM, TN> acc;
  A a;
  B b;
  auto load = [&](int t) {
    const int blk = cscBlock[first + t / (BS / BK)], k0 = (t % (BS / BK)) * BK;
    a.loadK(dy + (size_t)m0 * rows + (size_t)rowIdx[blk] * BS + k0, rows, limit);
    // B (k = row r of the block, n = column c) = blk[r][c]: rows of the block are contiguous.
    b.loadRows(w + (size_t)blk * BS * BS + (size_t)k0 * BS, BS, bcol, BK);
  };
  pipeline(steps, a, b, acc, As, Bs, load);
#pragma unroll
  for (int i = 0; i < TM; i++) {
    const int r = acc.row(i);
    if (r >= limit) continue;
#pragma unroll
    for (int h = 0; h < TN / 4; h++)
      *reinterpret_cast<float4*>(dx + (size_t)(m0 + r) * cols + bc * BS + acc.col(4 * h)) =
          make_float4(acc.c[i][4 * h], acc.c[i][4 * h + 1], acc.c[i][4 * h + 2], acc.c[i][4 * h + 3]);
  }
}

// dW blocks: out[split][blk] (bs x bs) = dY[t0:t1, rows of blk]^T X[t0:t1, cols of blk] for the G
// consecutive blocks of one block row that group `grp` holds (groups[2 grp] = first block,
// groups[2 grp + 1] = count). Grid: x = groups, y = token chunks (partial sums, added afterwards).
template <int BS, int BN, int BK, int TM, int TN>
__device__ void bsrSddmm(const float* __restrict__ dy, const float* __restrict__ x, const int32_t* __restrict__ rowIdx,
                         const int32_t* __restrict__ colIdx, const int32_t* __restrict__ groups, float* __restrict__ out,
                         uint32_t m, uint32_t rows, uint32_t cols, uint32_t nnz, uint32_t chunk) {
  constexpr int NT = (BS / TM) * (BN / TN);
  using A = Operand<BS, BK, NT, false>;
  using B = Operand<BN, BK, NT, false>;
  __shared__ __align__(16) float As[2][A::STAGE];
  __shared__ __align__(16) float Bs[2][B::STAGE];
  const uint32_t grp = blockIdx.x, split = blockIdx.y;
  const int first = groups[2 * grp], count = groups[2 * grp + 1];
  const uint32_t t0 = split * chunk;
  const int len = (int)min(chunk, m - t0);
  const int steps = (len + BK - 1) / BK;
  // Column offsets of this thread's loads: A's rows are dY's columns of the block row; B's
  // columns are gathered from the group's blocks.
  int acol[A::PER], bcol[B::PER];
  const int r0 = rowIdx[first] * BS;
#pragma unroll
  for (int l = 0; l < A::PER; l++) acol[l] = r0 + A::unitRow(l * NT + threadIdx.x);
#pragma unroll
  for (int l = 0; l < B::PER; l++) {
    const int n = B::unitRow(l * NT + threadIdx.x);
    bcol[l] = n / BS < count ? colIdx[first + n / BS] * BS + n % BS : -1;
  }
  Accum<BS, BN, BK, TM, TN> acc;
  A a;
  B b;
  auto load = [&](int t) {
    const uint32_t k0 = t0 + t * BK;
    const int kl = min(BK, len - t * BK);
    a.loadRows(dy + (size_t)k0 * rows, rows, acol, kl);
    b.loadRows(x + (size_t)k0 * cols, cols, bcol, kl);
  };
  pipeline(steps, a, b, acc, As, Bs, load);
#pragma unroll
  for (int i = 0; i < TM; i++) {
    const int r = acc.row(i);
#pragma unroll
    for (int h = 0; h < TN / 4; h++) {
      const int c = acc.col(4 * h);
      if (c / BS >= count) continue;
      *reinterpret_cast<float4*>(out + (((size_t)split * nnz + first + c / BS) * BS + r) * BS + c % BS) =
          make_float4(acc.c[i][4 * h], acc.c[i][4 * h + 1], acc.c[i][4 * h + 2], acc.c[i][4 * h + 3]);
    }
  }
}

// Tile shapes per block size: tokens per tile (BM), k-step (BK), outputs per thread (TM x TN);
// 128 threads each. The SDDMM tile is one block row by BN = 128 columns.
#define BSR_KERNELS(BS, BM, BK, TM, TN, SBK, STM, STN)                                                                          \
  extern "C" __global__ void __launch_bounds__((BM / TM) * (BS / TN)) bsr_forward_##BS(                                            \
      const float* x, const float* w, const int32_t* rowPtr, const int32_t* colIdx, float* y, uint32_t m, uint32_t rows, uint32_t cols) { \
    bsrForward<BS, BM, BK, TM, TN>(x, w, rowPtr, colIdx, y, m, rows, cols);                                                       \
  }                                                                                                                              \
  extern "C" __global__ void __launch_bounds__((BM / TM) * (BS / TN)) bsr_grad_input_##BS(                                         \
      const float* dy, const float* w, const int32_t* colPtr, const int32_t* cscBlock, const int32_t* rowIdx, float* dx, uint32_t m,    \
      uint32_t rows, uint32_t cols) {                                                                                            \
    bsrGradInput<BS, BM, BK, TM, TN>(dy, w, colPtr, cscBlock, rowIdx, dx, m, rows, cols);                                         \
  }                                                                                                                              \
  extern "C" __global__ void __launch_bounds__((BS / STM) * (128 / STN)) bsr_sddmm_##BS(                                         \
      const float* dy, const float* x, const int32_t* rowIdx, const int32_t* colIdx, const int32_t* groups, float* out, uint32_t m,   \
      uint32_t rows, uint32_t cols, uint32_t nnz, uint32_t chunk) {                                                              \
    bsrSddmm<BS, 128, SBK, STM, STN>(dy, x, rowIdx, colIdx, groups, out, m, rows, cols, nnz, chunk);                             \
  }

BSR_KERNELS(16, 256, 16, 8, 4, 16, 4, 4)
BSR_KERNELS(32, 128, 16, 8, 4, 16, 8, 4)
BSR_KERNELS(64, 128, 16, 8, 8, 16, 8, 8)


// Between block data [nnz, bs, bs] and a dense row-major matrix [rows, cols] (the dense route of
// src/dense-route.ts, where cuBLAS outruns the block-sparse kernels): toDense writes every block
// into the dense matrix (zeroed beforehand), otherwise every block is read from it. Block b lies
// at block row rowIdx[b] and block column colIdx[b] (the layout's CSR order, as the block data).
// E: float, or uint16_t for either 16-bit dtype (moved as bits).
template <typename E>
__device__ void blocksDense(E* blocks, E* dense, const int32_t* rowIdx, const int32_t* colIdx, uint32_t nnz, uint32_t bs, uint32_t cols, int32_t toDense) {
  const size_t per = (size_t)bs * bs, total = nnz * per;
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
    const size_t b = i / per;
    const uint32_t e = (uint32_t)(i - b * per), r = e / bs, c = e - r * bs;
    E* d = dense + ((size_t)rowIdx[b] * bs + r) * cols + (size_t)colIdx[b] * bs + c;
    if (toDense) *d = blocks[i];
    else blocks[i] = *d;
  }
}
extern "C" __global__ void bsr_blocks_dense(float* blocks, float* dense, const int32_t* rowIdx, const int32_t* colIdx, uint32_t nnz, uint32_t bs,
                                            uint32_t cols, int32_t toDense) {
  blocksDense(blocks, dense, rowIdx, colIdx, nnz, bs, cols, toDense);
}
extern "C" __global__ void bsr_blocks_dense_16(uint16_t* blocks, uint16_t* dense, const int32_t* rowIdx, const int32_t* colIdx, uint32_t nnz,
                                               uint32_t bs, uint32_t cols, int32_t toDense) {
  blocksDense(blocks, dense, rowIdx, colIdx, nnz, bs, cols, toDense);
}
