// Block-sparse products on the tensor cores ('high': TF32, 'medium': BF16; fp32 accumulation),
// with warp-level mma.sync. fp32 tiles are copied global -> shared with cp.async (a 3-stage
// pipeline, zero-filled past the edges) in the layout they have in memory; the fragments are
// rounded to TF32 / BF16 as they are read from shared memory. The problems and grids are those of
// blocksparse.cu: forward and dX tiles are BM tokens by one block (the shared dimension walks the
// blocks of a block row / column), SDDMM tiles are one block row by 128 columns (several blocks of
// the row) over a chunk of the tokens.
#include <cuda_bf16.h>
#include "async_mma.cuh"
#include "common.cuh"

enum Prec { TF32 = 0, BF16 = 1 };

// The tensor cores read the top 19 bits of an fp32 operand as TF32 (truncation); rounding each
// fragment element first (cvt.rna) cost more instructions than the kernel could spare.
__device__ __forceinline__ uint32_t tf32(float x) { return __float_as_uint(x); }
// Two floats as a BF16 pair, the first in the low half (the lower k index, as mma expects).
__device__ __forceinline__ uint32_t bf16x2(float2 f) {
  __nv_bfloat162 v = __floats2bfloat162_rn(f.x, f.y);
  return *reinterpret_cast<uint32_t*>(&v);
}

// A shared-memory operand tile of ROWS (m or n) x BK (k). KCONTIG: stored [row][k] as in memory
// with k contiguous; else [k][row]. Rows are padded (by the fewest floats, keeping 16-byte
// alignment) so that a warp's fragment reads hit distinct banks: the row length mod 32 must be an
// odd multiple of 4 where a read covers 8 rows x 4 words or 4 k-rows x 2 (TF32 row-major, BF16
// k-major), and an odd multiple of 8 where it covers 4 k-rows x 8 words or 4 rows x 8 (TF32
// k-major, BF16 row-major with 8-byte reads).
template <int ROWS, int BK, bool KCONTIG, Prec P>
struct Tile {
  static constexpr int WIDTH = KCONTIG ? BK : ROWS;
  static constexpr int UNIT = (KCONTIG == (P == TF32)) ? 4 : 8;
  static constexpr int pad() {
    int p = 0;
    while (((WIDTH + p) % (2 * UNIT)) != UNIT) p += 4;
    return p;
  }
  static constexpr int LD = WIDTH + pad();
  static constexpr int FLOATS = (KCONTIG ? ROWS : BK) * LD;
  __device__ static float at(const float* s, int row, int k) { return KCONTIG ? s[row * LD + k] : s[k * LD + row]; }
  // Elements (row, k) and (row, k + 1), k even: one 8-byte read when k is contiguous.
  __device__ static float2 at2(const float* s, int row, int k) {
    return KCONTIG ? *reinterpret_cast<const float2*>(s + row * LD + k) : make_float2(s[k * LD + row], s[(k + 1) * LD + row]);
  }
};

template <Prec P>
struct Mma {
  static constexpr int K = P == TF32 ? 8 : 16;
  // A fragment of the 16 x K tile at (m0, k0); g = lane / 4, t = lane % 4.
  template <class T>
  __device__ static void loadA(uint32_t a[4], const float* s, int m0, int k0, int g, int t) {
    if (P == TF32) {
      a[0] = tf32(T::at(s, m0 + g, k0 + t));
      a[1] = tf32(T::at(s, m0 + g + 8, k0 + t));
      a[2] = tf32(T::at(s, m0 + g, k0 + t + 4));
      a[3] = tf32(T::at(s, m0 + g + 8, k0 + t + 4));
    } else {
      a[0] = bf16x2(T::at2(s, m0 + g, k0 + 2 * t));
      a[1] = bf16x2(T::at2(s, m0 + g + 8, k0 + 2 * t));
      a[2] = bf16x2(T::at2(s, m0 + g, k0 + 2 * t + 8));
      a[3] = bf16x2(T::at2(s, m0 + g + 8, k0 + 2 * t + 8));
    }
  }
  // B fragment of the K x 8 tile at (k0, n0), B given as rows n.
  template <class T>
  __device__ static void loadB(uint32_t b[2], const float* s, int n0, int k0, int g, int t) {
    if (P == TF32) {
      b[0] = tf32(T::at(s, n0 + g, k0 + t));
      b[1] = tf32(T::at(s, n0 + g, k0 + t + 4));
    } else {
      b[0] = bf16x2(T::at2(s, n0 + g, k0 + 2 * t));
      b[1] = bf16x2(T::at2(s, n0 + g, k0 + 2 * t + 8));
    }
  }
  __device__ static void run(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    if (P == TF32) mmaTf32(c, a, b);
    else mmaBf16(c, a, b);
  }
};

// A CTA of WARPS_M x WARPS_N warps computing a BM x BN tile; each warp a (BM / WARPS_M) x (BN /
// WARPS_N) piece as MT x NT mma tiles. `Problem` supplies the steps and their cp.async sources.
template <int BM, int BN, int BK, int WARPS_M, int WARPS_N, bool A_KCONTIG, bool B_KCONTIG, Prec P>
struct TcGemm {
  using TA = Tile<BM, BK, A_KCONTIG, P>;
  using TB = Tile<BN, BK, B_KCONTIG, P>;
  using MMA = Mma<P>;
  static constexpr int THREADS = 32 * WARPS_M * WARPS_N;
  static constexpr int STAGES = 3;
  static constexpr int MT = BM / WARPS_M / 16, NT = BN / WARPS_N / 8;
  static constexpr int STAGE_FLOATS = TA::FLOATS + TB::FLOATS;
  static constexpr int SMEM_BYTES = STAGES * STAGE_FLOATS * 4;
  float c[MT][NT][4];

  // Copies a ROWS x BK tile into a stage: chunk e covers 4 floats along the contiguous axis.
  // src(row, k) gives the global address of element (row, k) (4 contiguous floats from there)
  // and valid(row, k) whether it is inside the problem.
  template <class T, int ROWS, bool KCONTIG, class Src>
  __device__ static void copyTile(float* s, Src src) {
    constexpr int CHUNKS = ROWS * BK / 4;
#pragma unroll
    for (int i = 0; i < (CHUNKS + THREADS - 1) / THREADS; i++) {
      const int e = i * THREADS + threadIdx.x;
      if (CHUNKS % THREADS != 0 && e >= CHUNKS) break;
      const int row = KCONTIG ? e / (BK / 4) : (e % (ROWS / 4)) * 4;
      const int k = KCONTIG ? (e % (BK / 4)) * 4 : e / (ROWS / 4);
      bool valid;
      const float* g = src(row, k, valid);
      cpAsync16(s + (KCONTIG ? row * T::LD + k : k * T::LD + row), g, valid);
    }
  }

  template <class Problem>
  __device__ void run(const Problem& p, float* smem) {
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < NT; j++)
#pragma unroll
        for (int q = 0; q < 4; q++) c[i][j][q] = 0.f;
    const int steps = p.steps();
    auto issue = [&](int step) {
      float* s = smem + (step % STAGES) * STAGE_FLOATS;
      copyTile<TA, BM, A_KCONTIG>(s, [&](int r, int k, bool& v) { return p.a(step, r, k, v); });
      copyTile<TB, BN, B_KCONTIG>(s + TA::FLOATS, [&](int r, int k, bool& v) { return p.b(step, r, k, v); });
    };
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int wm = (warp / WARPS_N) * (BM / WARPS_M), wn = (warp % WARPS_N) * (BN / WARPS_N);
    cpAsyncPipeline<STAGES>(steps, issue, [&](int step) {
      const float* sa = smem + (step % STAGES) * STAGE_FLOATS;
      const float* sb = sa + TA::FLOATS;
#pragma unroll
      for (int kk = 0; kk < BK; kk += MMA::K) {
        uint32_t a[MT][4], b[NT][2];
#pragma unroll
        for (int i = 0; i < MT; i++) MMA::template loadA<TA>(a[i], sa, wm + 16 * i, kk, g, t);
#pragma unroll
        for (int j = 0; j < NT; j++) MMA::template loadB<TB>(b[j], sb, wn + 8 * j, kk, g, t);
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
          for (int j = 0; j < NT; j++) MMA::run(c[i][j], a[i], b[j]);
      }
    });
  }

  // Calls out(row, col, v0, v1) for each pair of adjacent outputs of this thread (col even).
  template <class Out>
  __device__ void store(Out out) const {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int wm = (warp / WARPS_N) * (BM / WARPS_M), wn = (warp % WARPS_N) * (BN / WARPS_N);
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
      for (int j = 0; j < NT; j++) {
        out(wm + 16 * i + g, wn + 8 * j + 2 * t, c[i][j][0], c[i][j][1]);
        out(wm + 16 * i + g + 8, wn + 8 * j + 2 * t, c[i][j][2], c[i][j][3]);
      }
  }
};

// ---- forward: Y [m, rows] = X [m, cols] W^T; grid x = block rows, y = token tiles ----
template <int BS, int BK>
struct ForwardProblem {
  const float* x; const float* w; const int32_t* colIdx;
  int first, nblocks, limit; uint32_t m0, cols;
  __device__ int steps() const { return nblocks * (BS / BK); }
  // A(row = token, k): X[m0 + row, colIdx[s] * BS + k0 + k]
  __device__ const float* a(int step, int row, int k, bool& v) const {
    const int s = first + step / (BS / BK), k0 = (step % (BS / BK)) * BK;
    v = row < limit;
    return x + (size_t)(m0 + (v ? row : 0)) * cols + (size_t)colIdx[s] * BS + k0 + k;
  }
  // B(row = output n, k) = block[n][k0 + k]
  __device__ const float* b(int step, int row, int k, bool& v) const {
    const int s = first + step / (BS / BK), k0 = (step % (BS / BK)) * BK;
    v = true;
    return w + (size_t)s * BS * BS + row * BS + k0 + k;
  }
};

// ---- dX [m, cols] = dY [m, rows] W; grid x = block columns, y = token tiles ----
template <int BS, int BK>
struct GradInputProblem {
  const float* dy; const float* w; const int32_t* cscBlock; const int32_t* rowIdx;
  int first, nblocks, limit; uint32_t m0, rows;
  __device__ int steps() const { return nblocks * (BS / BK); }
  __device__ const float* a(int step, int row, int k, bool& v) const {
    const int blk = cscBlock[first + step / (BS / BK)], k0 = (step % (BS / BK)) * BK;
    v = row < limit;
    return dy + (size_t)(m0 + (v ? row : 0)) * rows + (size_t)rowIdx[blk] * BS + k0 + k;
  }
  // B(row = output column c, k = r): block[r][c], stored k-major ([r][c], c contiguous).
  __device__ const float* b(int step, int row, int k, bool& v) const {
    const int blk = cscBlock[first + step / (BS / BK)], k0 = (step % (BS / BK)) * BK;
    v = true;
    return w + (size_t)blk * BS * BS + (size_t)(k0 + k) * BS + row;
  }
};

// ---- SDDMM: out[split][blk] = dY[t0:t1, rows of blk]^T X[t0:t1, cols of blk] ----
template <int BS, int BN, int BK>
struct SddmmProblem {
  const float* dy; const float* x; const int32_t* colIdx;
  int first, count, len, r0; uint32_t t0, rows, cols;
  __device__ int steps() const { return (len + BK - 1) / BK; }
  // A(row = r, k = token): dY[t0 + k, r0 + r], k-major.
  __device__ const float* a(int step, int row, int k, bool& v) const {
    const int tk = step * BK + k;
    v = tk < len;
    return dy + (size_t)(t0 + (v ? tk : 0)) * rows + r0 + row;
  }
  // B(row = column c of the group, k = token): X[t0 + k, colIdx[first + c / BS] * BS + c % BS].
  __device__ const float* b(int step, int row, int k, bool& v) const {
    const int tk = step * BK + k, blk = row / BS;
    v = tk < len && blk < count;
    return x + (size_t)(t0 + (v ? tk : 0)) * cols + (size_t)colIdx[first + (blk < count ? blk : 0)] * BS + row % BS;
  }
};

// Forward / dX tiles: TOKENS x BS, warps WM x WN, k-step BK. SDDMM: warps SWM x SWN over BS x 128.
// Measured on an H100 (32x32 blocks, TF32): 128 tokens with warps of 32 x 32 and a k-step of 32
// ran at 64 TFLOP/s per stored block, 256 tokens with warps of 64 x 32 and a k-step of 16 at 61.
template <int BS> struct TcShape;
template <> struct TcShape<16> { static constexpr int TOKENS = 128, WM = 4, WN = 1, BK = 16, SWM = 1, SWN = 4; };
template <> struct TcShape<32> { static constexpr int TOKENS = 128, WM = 4, WN = 1, BK = 32, SWM = 1, SWN = 4; };
template <> struct TcShape<64> { static constexpr int TOKENS = 128, WM = 2, WN = 2, BK = 32, SWM = 2, SWN = 2; };
constexpr int SDDMM_COLS = 128;
constexpr int SDDMM_BK = 32;

template <int BS, Prec P>
__device__ void tcForward(const float* x, const float* w, const int32_t* rowPtr, const int32_t* colIdx, float* y, uint32_t m, uint32_t rows, uint32_t cols) {
  extern __shared__ __align__(16) float smem[];
  using S = TcShape<BS>;
  TcGemm<S::TOKENS, BS, S::BK, S::WM, S::WN, true, true, P> gemm;
  const uint32_t br = blockIdx.x, m0 = blockIdx.y * S::TOKENS;
  const int first = rowPtr[br];
  const int limit = (int)min((uint32_t)S::TOKENS, m - m0);
  gemm.run(ForwardProblem<BS, S::BK>{x, w, colIdx, first, rowPtr[br + 1] - first, limit, m0, cols}, smem);
  gemm.store([&](int r, int c, float v0, float v1) {
    if (r < limit) *reinterpret_cast<float2*>(y + (size_t)(m0 + r) * rows + br * BS + c) = make_float2(v0, v1);
  });
}

template <int BS, Prec P>
__device__ void tcGradInput(const float* dy, const float* w, const int32_t* colPtr, const int32_t* cscBlock, const int32_t* rowIdx, float* dx, uint32_t m, uint32_t rows, uint32_t cols) {
  extern __shared__ __align__(16) float smem[];
  using S = TcShape<BS>;
  TcGemm<S::TOKENS, BS, S::BK, S::WM, S::WN, true, false, P> gemm;
  const uint32_t bc = blockIdx.x, m0 = blockIdx.y * S::TOKENS;
  const int first = colPtr[bc];
  const int limit = (int)min((uint32_t)S::TOKENS, m - m0);
  gemm.run(GradInputProblem<BS, S::BK>{dy, w, cscBlock, rowIdx, first, colPtr[bc + 1] - first, limit, m0, rows}, smem);
  gemm.store([&](int r, int c, float v0, float v1) {
    if (r < limit) *reinterpret_cast<float2*>(dx + (size_t)(m0 + r) * cols + bc * BS + c) = make_float2(v0, v1);
  });
}

template <int BS, Prec P>
__device__ void tcSddmm(const float* dy, const float* x, const int32_t* rowIdx, const int32_t* colIdx, const int32_t* groups, float* out,
                        uint32_t m, uint32_t rows, uint32_t cols, uint32_t nnz, uint32_t chunk) {
  extern __shared__ __align__(16) float smem[];
  using S = TcShape<BS>;
  TcGemm<BS, SDDMM_COLS, SDDMM_BK, S::SWM, S::SWN, false, false, P> gemm;
  const uint32_t grp = blockIdx.x, split = blockIdx.y;
  const int first = groups[2 * grp], count = groups[2 * grp + 1];
  const uint32_t t0 = split * chunk;
  const int len = (int)min(chunk, m - t0);
  gemm.run(SddmmProblem<BS, SDDMM_COLS, SDDMM_BK>{dy, x, colIdx, first, count, len, rowIdx[first] * BS, t0, rows, cols}, smem);
  gemm.store([&](int r, int c, float v0, float v1) {
    if (c / BS < count)
      *reinterpret_cast<float2*>(out + (((size_t)split * nnz + first + c / BS) * BS + r) * BS + c % BS) = make_float2(v0, v1);
  });
}

// Kernels bsr_{forward,grad_input,sddmm}_tc_{tf32,bf16}_{BS}: 128 threads; dynamic shared memory of
// bsr_tc_smem (below) bytes.
#define TC_KERNELS(BS, P, NAME)                                                                                                   \
  extern "C" __global__ void __launch_bounds__(128) bsr_forward_tc_##NAME##_##BS(const float* x, const float* w, const int32_t* rowPtr, \
      const int32_t* colIdx, float* y, uint32_t m, uint32_t rows, uint32_t cols) { tcForward<BS, P>(x, w, rowPtr, colIdx, y, m, rows, cols); } \
  extern "C" __global__ void __launch_bounds__(128) bsr_grad_input_tc_##NAME##_##BS(const float* dy, const float* w, const int32_t* colPtr, \
      const int32_t* cscBlock, const int32_t* rowIdx, float* dx, uint32_t m, uint32_t rows, uint32_t cols) {                          \
    tcGradInput<BS, P>(dy, w, colPtr, cscBlock, rowIdx, dx, m, rows, cols);                                                         \
  }
// SDDMM in TF32 only: with fp32 operands the BF16 variant measured slower at every size (the host
// runs 'medium' SDDMM in TF32).
#define TC_SDDMM(BS, P, NAME)                                                                                                     \
  extern "C" __global__ void __launch_bounds__(128) bsr_sddmm_tc_##NAME##_##BS(const float* dy, const float* x, const int32_t* rowIdx,  \
      const int32_t* colIdx, const int32_t* groups, float* out, uint32_t m, uint32_t rows, uint32_t cols, uint32_t nnz, uint32_t chunk) { \
    tcSddmm<BS, P>(dy, x, rowIdx, colIdx, groups, out, m, rows, cols, nnz, chunk);                                                  \
  }
TC_KERNELS(16, TF32, tf32)
TC_KERNELS(32, TF32, tf32)
TC_KERNELS(64, TF32, tf32)
TC_SDDMM(16, TF32, tf32)
TC_SDDMM(32, TF32, tf32)
TC_SDDMM(64, TF32, tf32)
TC_KERNELS(16, BF16, bf16)
TC_KERNELS(32, BF16, bf16)
TC_KERNELS(64, BF16, bf16)

// For the host: dynamic shared memory of each kernel (out[kind * 6 + prec * 3 + bs index], kind:
// forward, dX, SDDMM), then the tokens per forward / dX tile by block size (out[18 + bs index]).
template <int BS, Prec P>
__host__ __device__ constexpr int fwdSmem() { using S = TcShape<BS>; return TcGemm<S::TOKENS, BS, S::BK, S::WM, S::WN, true, true, P>::SMEM_BYTES; }
template <int BS, Prec P>
__host__ __device__ constexpr int dxSmem() { using S = TcShape<BS>; return TcGemm<S::TOKENS, BS, S::BK, S::WM, S::WN, true, false, P>::SMEM_BYTES; }
template <int BS, Prec P>
__host__ __device__ constexpr int sdSmem() { using S = TcShape<BS>; return TcGemm<BS, SDDMM_COLS, SDDMM_BK, S::SWM, S::SWN, false, false, P>::SMEM_BYTES; }
extern "C" __global__ void bsr_tc_smem(int32_t* out) {
  const int v[] = {fwdSmem<16, TF32>(), fwdSmem<32, TF32>(), fwdSmem<64, TF32>(), fwdSmem<16, BF16>(), fwdSmem<32, BF16>(), fwdSmem<64, BF16>(),
                   dxSmem<16, TF32>(), dxSmem<32, TF32>(), dxSmem<64, TF32>(), dxSmem<16, BF16>(), dxSmem<32, BF16>(), dxSmem<64, BF16>(),
                   sdSmem<16, TF32>(), sdSmem<32, TF32>(), sdSmem<64, TF32>(), sdSmem<16, BF16>(), sdSmem<32, BF16>(), sdSmem<64, BF16>()};
  for (int i = 0; i < 18; i++) out[i] = v[i];
  out[18] = TcShape<16>::TOKENS;
  out[19] = TcShape<32>::TOKENS;
  out[20] = TcShape<64>::TOKENS;
}

// ---- union tiles (32x32 blocks): one CTA per G block rows (forward) or block columns (dX) ----
// A tile one block wide reuses each activation it loads for only 32 outputs, and ncu showed the
// kernels above bound by L2 bandwidth for 32x32 blocks. Here a CTA computes 128 tokens x G blocks of
// outputs: its steps walk the union of the G rows' column blocks (from a host-built table), stage
// the activation tile once and the (up to G) weight blocks at that column, and the warps of a row
// without a block there skip the step's multiply. Warp w owns block w / 2 of the group and tokens
// 64 (w % 2) .. + 63.
constexpr int UNION_G = 4;
constexpr int UNION_TOKENS = 128;

template <Prec P>
struct UnionTiles {
  static constexpr int BS = 32, BK = 32, THREADS = 256, STAGES = 3, MT = 4, NT = 4;
  using TA = Tile<UNION_TOKENS, BK, true, P>;
  using TB = Tile<BS, BK, true, P>;  // blocks [n][k] (dX passes transposed blocks)
  static constexpr int STAGE_FLOATS = TA::FLOATS + UNION_G * TB::FLOATS;
  static constexpr int SMEM_BYTES = STAGES * STAGE_FLOATS * 4;
};

// act [m, actCols] (x or dY); blocks of W; union table of this launch: entries unionPtr[grp] ..
// unionPtr[grp + 1] - 1 of group grp, entry e at activation block unionIdx[e] with the G blocks
// unionBlk[e * G + g] (-1: none); out [m, outCols], block column grp * G + g (if < outBlocks).
template <Prec P>
__device__ void tcUnion(const float* act, const float* w, const int32_t* unionPtr, const int32_t* unionIdx, const int32_t* unionBlk,
                        float* out, uint32_t m, uint32_t actCols, uint32_t outCols) {
  using U = UnionTiles<P>;
  using TA = typename U::TA;
  using TB = typename U::TB;
  using MMA = Mma<P>;
  constexpr int BS = U::BS, BK = U::BK, G = UNION_G;
  extern __shared__ __align__(16) float smem[];
  const uint32_t grp = blockIdx.x, m0 = blockIdx.y * UNION_TOKENS;
  const int limit = (int)min((uint32_t)UNION_TOKENS, m - m0);
  const int first = unionPtr[grp], steps = unionPtr[grp + 1] - first;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g8 = lane / 4, t4 = lane % 4;
  const int mine = warp / 2, wm = (warp % 2) * 64;
  float c[U::MT][U::NT][4];
#pragma unroll
  for (int i = 0; i < U::MT; i++)
#pragma unroll
    for (int j = 0; j < U::NT; j++)
#pragma unroll
      for (int q = 0; q < 4; q++) c[i][j][q] = 0.f;

  auto issue = [&](int step) {
    float* s = smem + (step % U::STAGES) * U::STAGE_FLOATS;
    const int e = first + step;
    const float* abase = act + (size_t)m0 * actCols + (size_t)unionIdx[e] * BS;
    // Activation tile: 128 rows x 32 k, k contiguous.
#pragma unroll
    for (int i = 0; i < UNION_TOKENS * BK / 4 / U::THREADS; i++) {
      const int q = i * U::THREADS + threadIdx.x;
      const int row = q / (BK / 4), k = (q % (BK / 4)) * 4;
      const bool valid = row < limit;
      cpAsync16(s + row * TA::LD + k, abase + (size_t)(valid ? row : 0) * actCols + k, valid);
    }
    // Weight blocks: G x (32 x 32), each stored as in memory ([r][c]).
#pragma unroll
    for (int i = 0; i < G * BS * BK / 4 / U::THREADS; i++) {
      const int q = i * U::THREADS + threadIdx.x;
      const int g = q / (BS * BK / 4), qq = q % (BS * BK / 4);
      const int blk = unionBlk[e * G + g];
      if (blk < 0) continue;
      const int r = qq / (BS / 4), col = (qq % (BS / 4)) * 4;  // block element (r, col..col+3)
      cpAsync16(s + TA::FLOATS + g * TB::FLOATS + r * TB::LD + col, w + (size_t)blk * BS * BS + r * BS + col, true);
    }
  };
  cpAsyncPipeline<U::STAGES>(steps, issue, [&](int step) {
    if (unionBlk[(first + step) * G + mine] < 0) return;  // warp-uniform: this row has no block here
    const float* sa = smem + (step % U::STAGES) * U::STAGE_FLOATS;
    const float* sb = sa + TA::FLOATS + mine * TB::FLOATS;
#pragma unroll
    for (int kk = 0; kk < BK; kk += MMA::K) {
      uint32_t a[U::MT][4], b[U::NT][2];
#pragma unroll
      for (int i = 0; i < U::MT; i++) MMA::template loadA<TA>(a[i], sa, wm + 16 * i, kk, g8, t4);
#pragma unroll
      for (int j = 0; j < U::NT; j++) MMA::template loadB<TB>(b[j], sb, 8 * j, kk, g8, t4);
#pragma unroll
      for (int i = 0; i < U::MT; i++)
#pragma unroll
        for (int j = 0; j < U::NT; j++) MMA::run(c[i][j], a[i], b[j]);
    }
  });
  const uint32_t ob = grp * G + mine;
  if (ob * BS >= outCols) return;
#pragma unroll
  for (int i = 0; i < U::MT; i++)
#pragma unroll
    for (int j = 0; j < U::NT; j++) {
      const int r = wm + 16 * i + g8, col = ob * BS + 8 * j + 2 * t4;
      if (r < limit) *reinterpret_cast<float2*>(out + (size_t)(m0 + r) * outCols + col) = make_float2(c[i][j][0], c[i][j][1]);
      if (r + 8 < limit) *reinterpret_cast<float2*>(out + (size_t)(m0 + r + 8) * outCols + col) = make_float2(c[i][j][2], c[i][j][3]);
    }
}

// One kernel serves forward and dX: dX passes dY, the transposed blocks (blocks_transpose_32) and
// the union table built over block columns.
#define UNION_KERNELS(P, NAME)                                                                                                  \
  extern "C" __global__ void __launch_bounds__(256, 2) bsr_union_##NAME##_32(const float* act, const float* w, const int32_t* up, \
      const int32_t* ui, const int32_t* ub, float* out, uint32_t m, uint32_t actCols, uint32_t outCols) { tcUnion<P>(act, w, up, ui, ub, out, m, actCols, outCols); }
UNION_KERNELS(TF32, tf32)
UNION_KERNELS(BF16, bf16)

// For the host: union tiles' group size, tokens per tile and dynamic shared memory [tf32, bf16].
extern "C" __global__ void bsr_union_params(int32_t* out) {
  out[0] = UNION_G;
  out[1] = UNION_TOKENS;
  out[2] = UnionTiles<TF32>::SMEM_BYTES;
  out[3] = UnionTiles<BF16>::SMEM_BYTES;
}

// 32x32 blocks transposed (out[to[b]][c][r] = w[b][r][c]; to null: to[b] = b): dX on the union
// tiles runs as a forward product of dY with the transposed blocks, which reads them
// k-contiguous; the SDDMM of a tall W runs on W^T's layout and scatters its blocks back. 256
// threads take a block at a time through a padded shared tile, so that both the reads and the
// writes are whole rows (writing columns straight from the reads cost 14 us per GPT layer's W on
// the H100).
extern "C" __global__ void __launch_bounds__(256) blocks_transpose_32(const float* w, float* out, const int32_t* to, uint32_t nnz) {
  __shared__ float tile[32][33];
  const uint32_t x = threadIdx.x % 32, y = threadIdx.x / 32;
  for (uint32_t b = blockIdx.x; b < nnz; b += gridDim.x) {
    const float* src = w + (size_t)b * 1024;
    float* dst = out + (size_t)(to ? to[b] : b) * 1024;
#pragma unroll
    for (uint32_t r = y; r < 32; r += 8) tile[r][x] = src[r * 32 + x];
    __syncthreads();
#pragma unroll
    for (uint32_t c = y; c < 32; c += 8) dst[c * 32 + x] = tile[x][c];
    __syncthreads();
  }
}

// 64x64 blocks as 32x32 sub-blocks (the TMA kernels take 32x32 blocks): out[s] = the quadrant of
// its 64x64 block that starts at element src[s] (row stride 64). E: float, or uint16_t for the
// 16-bit dtypes (moved as bits).
template <typename E>
__device__ void splitBlocks64(const E* w, E* out, const int32_t* src, uint32_t n32) {
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n32 * 1024; i += gridDim.x * blockDim.x) {
    const uint32_t s = i / 1024, r = (i / 32) % 32, c = i % 32;
    out[i] = w[(size_t)src[s] + r * 64 + c];
  }
}
extern "C" __global__ void blocks_split_64(const float* w, float* out, const int32_t* src, uint32_t n32) { splitBlocks64(w, out, src, n32); }
extern "C" __global__ void blocks_split_64_16(const uint16_t* w, uint16_t* out, const int32_t* src, uint32_t n32) { splitBlocks64(w, out, src, n32); }
