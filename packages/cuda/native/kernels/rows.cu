// Reductions, softmax, layer norm, gather and scatter-add.
#include "common.cuh"
#include "half.cuh"

// A "team" reduces one row: a warp for short rows (several rows per block, no block barrier), the
// whole block for long ones.
template <bool WARP>
struct Team {
  __device__ static int size() { return WARP ? 32 : blockDim.x; }
  __device__ static int rank() { return WARP ? (threadIdx.x & 31) : threadIdx.x; }
  // First row and row step of this team within the grid.
  __device__ static uint32_t first() { return WARP ? blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5) : blockIdx.x; }
  __device__ static uint32_t step() { return WARP ? gridDim.x * (blockDim.x >> 5) : gridDim.x; }
  template <typename F>
  __device__ static float all(float v, F f, float identity) { return WARP ? warpAll(v, f) : blockAll(v, f, identity); }
};

// Rows of a contiguous [rows, n] buffer, each cut into `chunks` pieces of `chunk` elements: y[row *
// chunks + c] is the reduction of piece c (chunks == 1 for a plain row reduction; a long row is
// reduced in pieces, then the pieces again).
// X: the input's element type (float32, or a 16-bit float read as float32); y is float32.
template <bool WARP, typename X, typename F>
__device__ void reduceRowsBody(const X* x, float* y, uint32_t rows, uint32_t n, uint32_t chunk, uint32_t chunks, F f, float identity) {
  using T = Team<WARP>;
  for (uint32_t r = T::first(); r < rows * chunks; r += T::step()) {
    const uint32_t row = r / chunks, c = r % chunks;
    const uint32_t begin = c * chunk, end = min(n, begin + chunk);
    const X* base = x + (size_t)row * n;
    float acc = identity;
    for (uint32_t j = begin + T::rank(); j < end; j += T::size()) acc = f(acc, toF(base[j]));
    acc = T::all(acc, f, identity);
    if (T::rank() == 0) y[r] = acc;
  }
}
#define ROW_REDUCE_T(NAME, X, F, ID) \
  extern "C" __global__ void NAME##_warp(const X* x, float* y, uint32_t rows, uint32_t n, uint32_t chunk, uint32_t chunks) { reduceRowsBody<true>(x, y, rows, n, chunk, chunks, F(), ID); } \
  extern "C" __global__ void NAME##_block(const X* x, float* y, uint32_t rows, uint32_t n, uint32_t chunk, uint32_t chunks) { reduceRowsBody<false>(x, y, rows, n, chunk, chunks, F(), ID); }
#define ROW_REDUCE(NAME, F, ID) \
  ROW_REDUCE_T(NAME##_rows, float, F, ID) \
  ROW_REDUCE_T(NAME##_rows_bf16, __nv_bfloat16, F, ID) \
  ROW_REDUCE_T(NAME##_rows_f16, __half, F, ID)
ROW_REDUCE(sum, Add, 0.f)
ROW_REDUCE(max, Max, -INFINITY)
ROW_REDUCE(min, Min, INFINITY)

// Columns of [outer, n, inner] reduced over n, rows cut into `chunks` pieces: y [outer, chunks,
// inner]. One thread per output column walks its rows; neighbouring threads read neighbouring columns.
template <typename X, typename F>
__device__ void reduceColumnsBody(const X* x, float* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t chunk, uint32_t chunks, F f, float identity) {
  const uint32_t total = outer * chunks * inner;
  for (uint32_t t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
    const uint32_t i = t % inner, c = (t / inner) % chunks, o = t / (inner * chunks);
    const uint32_t begin = c * chunk, end = min(n, begin + chunk);
    const X* base = x + (size_t)o * n * inner + i;
    float acc = identity;
    for (uint32_t j = begin; j < end; j++) acc = f(acc, toF(base[(size_t)j * inner]));
    y[t] = acc;
  }
}
#define COLUMN_REDUCE(NAME, X, F, ID) \
  extern "C" __global__ void NAME(const X* x, float* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t chunk, uint32_t chunks) { reduceColumnsBody(x, y, outer, n, inner, chunk, chunks, F(), ID); }
#define COLUMN_REDUCES(NAME, F, ID) \
  COLUMN_REDUCE(NAME##_columns, float, F, ID) \
  COLUMN_REDUCE(NAME##_columns_bf16, __nv_bfloat16, F, ID) \
  COLUMN_REDUCE(NAME##_columns_f16, __half, F, ID)
COLUMN_REDUCES(sum, Add, 0.f)
COLUMN_REDUCES(max, Max, -INFINITY)
COLUMN_REDUCES(min, Min, INFINITY)

// Any op, any dtype, one thread per output: integer tensors and argmax/argmin (small in practice).
// op: 0 sum, 1 max, 2 min, 3 argmax, 4 argmin. NaN wins max/min, first occurrence wins ties.
template <typename T, typename O>
__device__ void reduceSimpleBody(const T* x, O* y, int op, uint32_t outer, uint32_t n, uint32_t inner) {
  for (uint32_t t = blockIdx.x * blockDim.x + threadIdx.x; t < outer * inner; t += gridDim.x * blockDim.x) {
    const T* base = x + (size_t)(t / inner) * n * inner + t % inner;
    if (op == 0) {
      T acc = 0;
      for (uint32_t j = 0; j < n; j++) acc += base[(size_t)j * inner];
      y[t] = (O)acc;
      continue;
    }
    const bool greater = op == 1 || op == 3;
    T best = base[0];
    uint32_t at = 0;
    for (uint32_t j = 1; j < n; j++) {
      T v = base[(size_t)j * inner];
      if ((greater ? v > best : v < best) || (v != v && best == best)) { best = v; at = j; }
    }
    y[t] = op >= 3 ? (O)at : (O)best;
  }
}
extern "C" __global__ void reduce_simple_f32(const float* x, float* y, int op, uint32_t outer, uint32_t n, uint32_t inner) { reduceSimpleBody(x, y, op, outer, n, inner); }
extern "C" __global__ void reduce_simple_i32(const int32_t* x, int32_t* y, int op, uint32_t outer, uint32_t n, uint32_t inner) { reduceSimpleBody(x, y, op, outer, n, inner); }
extern "C" __global__ void arg_reduce_f32(const float* x, int32_t* y, int op, uint32_t outer, uint32_t n, uint32_t inner) { reduceSimpleBody(x, y, op, outer, n, inner); }

// E: the element type (float32 or a 16-bit float, computed in float32 and rounded at the store).
template <bool WARP, typename E>
__device__ void softmaxBody(const E* x, E* y, uint32_t rows, uint32_t n, int log, int causal) {
  using T = Team<WARP>;
  for (uint32_t r = T::first(); r < rows; r += T::step()) {
    const E* xr = x + (size_t)r * n;
    E* yr = y + (size_t)r * n;
    // Causal: row i of each [n, n] matrix keeps columns 0..i; the rest is written as 0.
    const uint32_t len = causal ? r % n + 1 : n;
    float m = -INFINITY;
    for (uint32_t j = T::rank(); j < len; j += T::size()) m = nanMax(m, toF(xr[j]));
    m = T::all(m, Max(), -INFINITY);
    float s = 0.f;
    for (uint32_t j = T::rank(); j < len; j += T::size()) s += expf(toF(xr[j]) - m);
    s = T::all(s, Add(), 0.f);
    const float ls = logf(s), inv = 1.f / s;
    for (uint32_t j = T::rank(); j < n; j += T::size())
      yr[j] = fromF<E>(j >= len ? 0.f : log ? toF(xr[j]) - m - ls : expf(toF(xr[j]) - m) * inv);
  }
}

// y is the forward output; out = dL/dx.
template <bool WARP, typename E>
__device__ void softmaxBackwardBody(const E* y, const E* dy, E* out, uint32_t rows, uint32_t n, int log) {
  using T = Team<WARP>;
  for (uint32_t r = T::first(); r < rows; r += T::step()) {
    const size_t b = (size_t)r * n;
    float s = 0.f;
    for (uint32_t j = T::rank(); j < n; j += T::size()) s += log ? toF(dy[b + j]) : toF(dy[b + j]) * toF(y[b + j]);
    s = T::all(s, Add(), 0.f);
    for (uint32_t j = T::rank(); j < n; j += T::size()) {
      const float yj = toF(y[b + j]), dj = toF(dy[b + j]);
      out[b + j] = fromF<E>(log ? dj - expf(yj) * s : yj * (dj - s));
    }
  }
}
#define SOFTMAX(SUFFIX, E) \
  extern "C" __global__ void softmax##SUFFIX##_warp(const E* x, E* y, uint32_t rows, uint32_t n, int log, int causal) { softmaxBody<true>(x, y, rows, n, log, causal); } \
  extern "C" __global__ void softmax##SUFFIX##_block(const E* x, E* y, uint32_t rows, uint32_t n, int log, int causal) { softmaxBody<false>(x, y, rows, n, log, causal); } \
  extern "C" __global__ void softmax_backward##SUFFIX##_warp(const E* y, const E* dy, E* out, uint32_t rows, uint32_t n, int log) { softmaxBackwardBody<true>(y, dy, out, rows, n, log); } \
  extern "C" __global__ void softmax_backward##SUFFIX##_block(const E* y, const E* dy, E* out, uint32_t rows, uint32_t n, int log) { softmaxBackwardBody<false>(y, dy, out, rows, n, log); }
SOFTMAX(, float)
SOFTMAX(_bf16, __nv_bfloat16)
SOFTMAX(_f16, __half)

// gamma/beta may be null.
template <bool WARP>
__device__ void layerNormBody(const float* x, const float* gamma, const float* beta, float* y, float* mean, float* rstd, uint32_t rows, uint32_t n, float eps) {
  using T = Team<WARP>;
  for (uint32_t r = T::first(); r < rows; r += T::step()) {
    const float* xr = x + (size_t)r * n;
    float s = 0.f;
    for (uint32_t j = T::rank(); j < n; j += T::size()) s += xr[j];
    const float mu = T::all(s, Add(), 0.f) / n;
    float v = 0.f;
    for (uint32_t j = T::rank(); j < n; j += T::size()) { float d = xr[j] - mu; v += d * d; }
    const float rs = rsqrtf(T::all(v, Add(), 0.f) / n + eps);
    if (T::rank() == 0) { mean[r] = mu; rstd[r] = rs; }
    for (uint32_t j = T::rank(); j < n; j += T::size()) {
      float o = (xr[j] - mu) * rs;
      if (gamma) o *= gamma[j];
      if (beta) o += beta[j];
      y[(size_t)r * n + j] = o;
    }
  }
}
extern "C" __global__ void layer_norm_warp(const float* x, const float* g, const float* b, float* y, float* mean, float* rstd, uint32_t rows, uint32_t n, float eps) { layerNormBody<true>(x, g, b, y, mean, rstd, rows, n, eps); }
extern "C" __global__ void layer_norm_block(const float* x, const float* g, const float* b, float* y, float* mean, float* rstd, uint32_t rows, uint32_t n, float eps) { layerNormBody<false>(x, g, b, y, mean, rstd, rows, n, eps); }

template <bool WARP>
__device__ void layerNormBackwardBody(const float* x, const float* gamma, const float* mean, const float* rstd, const float* dy, float* dx, uint32_t rows, uint32_t n) {
  using T = Team<WARP>;
  for (uint32_t r = T::first(); r < rows; r += T::step()) {
    const size_t b = (size_t)r * n;
    const float mu = mean[r], rs = rstd[r];
    float sd = 0.f, sdx = 0.f;
    for (uint32_t j = T::rank(); j < n; j += T::size()) {
      float xh = (x[b + j] - mu) * rs, d = gamma ? dy[b + j] * gamma[j] : dy[b + j];
      sd += d;
      sdx += d * xh;
    }
    const float md = T::all(sd, Add(), 0.f) / n;
    const float mdx = T::all(sdx, Add(), 0.f) / n;
    for (uint32_t j = T::rank(); j < n; j += T::size()) {
      float xh = (x[b + j] - mu) * rs, d = gamma ? dy[b + j] * gamma[j] : dy[b + j];
      dx[b + j] = rs * (d - md - xh * mdx);
    }
  }
}
extern "C" __global__ void layer_norm_backward_warp(const float* x, const float* g, const float* mean, const float* rstd, const float* dy, float* dx, uint32_t rows, uint32_t n) { layerNormBackwardBody<true>(x, g, mean, rstd, dy, dx, rows, n); }
extern "C" __global__ void layer_norm_backward_block(const float* x, const float* g, const float* mean, const float* rstd, const float* dy, float* dx, uint32_t rows, uint32_t n) { layerNormBackwardBody<false>(x, g, mean, rstd, dy, dx, rows, n); }

// Parameter gradients of layer norm, column sums over rows cut into chunks: dg/db [chunks, n].
extern "C" __global__ void layer_norm_params(const float* x, const float* mean, const float* rstd, const float* dy, float* dg, float* db,
                                             uint32_t rows, uint32_t n, uint32_t chunk, uint32_t chunks) {
  for (uint32_t t = blockIdx.x * blockDim.x + threadIdx.x; t < chunks * n; t += gridDim.x * blockDim.x) {
    const uint32_t i = t % n, c = t / n;
    float g = 0.f, b = 0.f;
    for (uint32_t r = c * chunk; r < min(rows, (c + 1) * chunk); r++) {
      const float d = dy[(size_t)r * n + i];
      g += d * (x[(size_t)r * n + i] - mean[r]) * rstd[r];
      b += d;
    }
    dg[t] = g;
    db[t] = b;
  }
}

// An index outside [0, n): the first one is recorded in err [op code, index, n] (read back by the
// host at its next read, which then throws; core's edge-case rules) and the element reads as 0.
__device__ __forceinline__ void reportIndex(int32_t* err, int32_t code, int32_t k, uint32_t n) {
  if (atomicCAS(&err[0], 0, code) == 0) {
    err[1] = k;
    err[2] = (int32_t)n;
  }
}

// out[o, j, i] = x[o, idx[o, j, i], i].
template <typename T>
__device__ void gatherBody(const T* x, const int32_t* idx, T* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t count,
                           uint32_t io, int32_t is0, int32_t is1, int32_t is2, int32_t* err) {
  for (uint32_t t = blockIdx.x * blockDim.x + threadIdx.x; t < outer * count * inner; t += gridDim.x * blockDim.x) {
    const uint32_t q = t % inner, j = (t / inner) % count, o = t / (inner * count);
    const int32_t k = idx[io + o * is0 + j * is1 + q * is2];
    const bool in = k >= 0 && (uint32_t)k < n;
    if (!in) reportIndex(err, 1, k, n);
    y[t] = in ? x[((size_t)o * n + k) * inner + q] : T(0);
  }
}
extern "C" __global__ void gather_f32(const float* x, const int32_t* idx, float* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t count, uint32_t io, int32_t s0, int32_t s1, int32_t s2, int32_t* err) { gatherBody(x, idx, y, outer, n, inner, count, io, s0, s1, s2, err); }
extern "C" __global__ void gather_i32(const int32_t* x, const int32_t* idx, int32_t* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t count, uint32_t io, int32_t s0, int32_t s1, int32_t s2, int32_t* err) { gatherBody(x, idx, y, outer, n, inner, count, io, s0, s1, s2, err); }

// out (zeroed before) [outer, n, inner]; out[o, idx[o, j, i], i] += src[o, j, i].
template <typename T>
__device__ void scatterAddBody(const T* src, const int32_t* idx, T* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t count,
                               uint32_t io, int32_t is0, int32_t is1, int32_t is2, int32_t* err) {
  for (uint32_t t = blockIdx.x * blockDim.x + threadIdx.x; t < outer * count * inner; t += gridDim.x * blockDim.x) {
    const uint32_t q = t % inner, j = (t / inner) % count, o = t / (inner * count);
    const int32_t k = idx[io + o * is0 + j * is1 + q * is2];
    if (k >= 0 && (uint32_t)k < n) atomicAdd(&y[((size_t)o * n + k) * inner + q], src[t]);
    else reportIndex(err, 2, k, n);
  }
}
extern "C" __global__ void scatter_add_f32(const float* s, const int32_t* idx, float* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t count, uint32_t io, int32_t s0, int32_t s1, int32_t s2, int32_t* err) { scatterAddBody(s, idx, y, outer, n, inner, count, io, s0, s1, s2, err); }
extern "C" __global__ void scatter_add_i32(const int32_t* s, const int32_t* idx, int32_t* y, uint32_t outer, uint32_t n, uint32_t inner, uint32_t count, uint32_t io, int32_t s0, int32_t s1, int32_t s2, int32_t* err) { scatterAddBody(s, idx, y, outer, n, inner, count, io, s0, s1, s2, err); }
