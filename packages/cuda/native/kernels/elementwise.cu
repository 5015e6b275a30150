// Elementwise kernels, fills and the fused Adam step. Op codes follow the order of UNARY_OPS and
// BINARY_OPS in src/backend.ts (test/kernel-names.test.ts checks both lists against these switches).
#include "common.cuh"
#include "half.cuh"
#include <cmath>
#include <type_traits>

#define GRID_STRIDE(i, n) for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

// JavaScript's ToInt32 (what storing a number into an Int32Array does), so that casts and integer
// results agree with the CPU backend: NaN and infinities give 0, others truncate and wrap mod 2^32.
__device__ __forceinline__ int32_t toInt32(double x) {
  if (!isfinite(x)) return 0;
  x = trunc(x);
  if (x >= -2147483648.0 && x < 2147483648.0) return (int32_t)x;
  double m = fmod(x, 4294967296.0);
  if (m < 0) m += 4294967296.0;
  return (int32_t)(uint32_t)m;
}

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }
#define GELU_C 0.7978845608028654f

__device__ float unaryF(int op, float a) {
  switch (op) {
    case 0: return -a;  // neg
    case 1: return expf(a);  // exp
    case 2: return logf(a);  // log
    case 3: return sqrtf(a);  // sqrt
    case 4: return fabsf(a);  // abs
    case 5: return a > 0.f ? 1.f : a < 0.f ? -1.f : a;  // sign: keeps 0, -0 and NaN, as Math.sign
    case 6: return tanhf(a);  // tanh
    case 7: return sigm(a);  // sigmoid
    case 8: return a > 0.f ? a : (a == a ? 0.f : a);  // relu
    case 9: return a * sigm(2.f * GELU_C * (a + 0.044715f * a * a * a));  // geluTanh
    case 10: return 0.5f * a * (1.f + erff(a * 0.7071067811865476f));  // geluErf
    case 11: {  // geluTanhGrad
      float s = sigm(2.f * GELU_C * (a + 0.044715f * a * a * a));
      return s + a * 2.f * s * (1.f - s) * GELU_C * (1.f + 3.f * 0.044715f * a * a);
    }
    case 12: return 0.5f * (1.f + erff(a * 0.7071067811865476f)) + a * 0.3989422804014327f * expf(-0.5f * a * a);  // geluErfGrad
  }
  return a;
}
__device__ int32_t unaryI(int op, int32_t a) {
  switch (op) {
    case 0: return (int32_t)(0u - (uint32_t)a);  // neg
    case 4: return a < 0 ? (int32_t)(0u - (uint32_t)a) : a;  // abs
    case 5: return (a > 0) - (a < 0);  // sign
  }
  return a;  // core allows only neg/abs/sign on integers
}

extern "C" __global__ void unary_f32(const float* x, float* y, int op, Strided L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[2];
    viewOffsets(L, i, o);
    y[i] = unaryF(op, x[o[1]]);
  }
}
extern "C" __global__ void unary_i32(const int32_t* x, int32_t* y, int op, Strided L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[2];
    viewOffsets(L, i, o);
    y[i] = unaryI(op, x[o[1]]);
  }
}

__device__ float binaryF(int op, float a, float b) {
  switch (op) {
    case 0: return a + b;  // add
    case 1: return a - b;  // sub
    case 2: return a * b;  // mul
    case 3: return a / b;  // div
    case 4: return powf(a, b);  // pow
    case 5: return nanMax(a, b);  // maximum
    case 6: return nanMin(a, b);  // minimum
    case 7: return a == b;  // eq
    case 8: return a != b;  // ne
    case 9: return a < b;  // lt
    case 10: return a <= b;  // le
    case 11: return a > b;  // gt
    case 12: return a >= b;  // ge
    case 13: return b * unaryF(11, a);  // geluTanhBackward
    case 14: return b * unaryF(12, a);  // geluErfBackward
  }
  return 0.f;
}
// int32 a^b, exact and wrapping mod 2^32; a negative exponent truncates a^b toward zero (0 unless |a| = 1).
__device__ int32_t ipow(int32_t a, int32_t b) {
  if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
  uint32_t r = 1u, base = (uint32_t)a;
  for (uint32_t e = (uint32_t)b; e; e >>= 1) {
    if (e & 1u) r *= base;
    base *= base;
  }
  return (int32_t)r;
}
// Integer arithmetic wraps (core's edge-case rules); division goes through doubles, so it
// truncates and a zero divisor gives 0 (toInt32 of an infinity or NaN).
__device__ double binaryI(int op, int32_t a, int32_t b) {
  switch (op) {
    case 0: return (int32_t)((uint32_t)a + (uint32_t)b);  // add
    case 1: return (int32_t)((uint32_t)a - (uint32_t)b);  // sub
    case 2: return (int32_t)((uint32_t)a * (uint32_t)b);  // mul
    case 3: return (double)a / (double)b;  // div
    case 4: return ipow(a, b);  // pow
    case 5: return a > b ? a : b;  // maximum
    case 6: return a < b ? a : b;  // minimum
    case 7: return a == b;  // eq
    case 8: return a != b;  // ne
    case 9: return a < b;  // lt
    case 10: return a <= b;  // le
    case 11: return a > b;  // gt
    case 12: return a >= b;  // ge
    case 13: return 0;  // geluTanhBackward (float only: core never asks for it on int32)
    case 14: return 0;  // geluErfBackward
  }
  return 0;
}

// A scalar operand has no view: `scalars` says which (bit 0: a, bit 1: b) and its value is sa/sb.
// Views are numbered in order among the non-scalar operands (1, 2). b's offset is chosen between
// two registers: indexing o[] with a run-time value put the array in local memory.
template <typename T, typename R, typename F>
__device__ __forceinline__ void binaryBody(const T* a, const T* b, R* y, int scalars, T sa, T sb, const Strided& L, F f) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[3];
    viewOffsets(L, i, o);
    const T x0 = scalars & 1 ? sa : a[o[1]];
    const T x1 = scalars & 2 ? sb : b[scalars & 1 ? o[1] : o[2]];
    y[i] = f(x0, x1);
  }
}
extern "C" __global__ void binary_f32(const float* a, const float* b, float* y, int op, int scalars, float sa, float sb, Strided L) {
  binaryBody(a, b, y, scalars, sa, sb, L, [op](float x0, float x1) { return binaryF(op, x0, x1); });
}
extern "C" __global__ void binary_i32(const int32_t* a, const int32_t* b, int32_t* y, int op, int scalars, int32_t sa, int32_t sb, Strided L) {
  binaryBody(a, b, y, scalars, sa, sb, L, [op](int32_t x0, int32_t x1) { return toInt32(binaryI(op, x0, x1)); });
}
// Comparisons of integers write float32 (core's comparison dtype).
extern "C" __global__ void compare_i32(const int32_t* a, const int32_t* b, float* y, int op, int scalars, int32_t sa, int32_t sb, Strided L) {
  binaryBody(a, b, y, scalars, sa, sb, L, [op](int32_t x0, int32_t x1) { return (float)binaryI(op, x0, x1); });
}

// The 16-bit floats: each element computed in float32 (unaryF, binaryF) and rounded once; scalar
// operands arrive as float32, as the float32 kernel would see them.
template <typename H>
__device__ __forceinline__ void unaryHalf(const H* x, H* y, int op, const Strided& L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[2];
    viewOffsets(L, i, o);
    y[i] = fromF<H>(unaryF(op, toF(x[o[1]])));
  }
}
template <typename H, typename R>
__device__ __forceinline__ void binaryHalf(const H* a, const H* b, R* y, int op, int scalars, float sa, float sb, const Strided& L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[3];
    viewOffsets(L, i, o);
    const float x0 = scalars & 1 ? sa : toF(a[o[1]]);
    const float x1 = scalars & 2 ? sb : toF(b[scalars & 1 ? o[1] : o[2]]);
    y[i] = fromF<R>(binaryF(op, x0, x1));
  }
}
#define HALF_ELEMENTWISE(NAME, H)                                                                                              \
  extern "C" __global__ void unary_##NAME(const H* x, H* y, int op, Strided L) { unaryHalf(x, y, op, L); }                      \
  extern "C" __global__ void binary_##NAME(const H* a, const H* b, H* y, int op, int scalars, float sa, float sb, Strided L) { \
    binaryHalf(a, b, y, op, scalars, sa, sb, L);                                                                               \
  }                                                                                                                             \
  extern "C" __global__ void compare_##NAME(const H* a, const H* b, float* y, int op, int scalars, float sa, float sb, Strided L) { \
    binaryHalf(a, b, y, op, scalars, sa, sb, L);                                                                               \
  }
HALF_ELEMENTWISE(bf16, __nv_bfloat16)
HALF_ELEMENTWISE(f16, __half)

// 4-element forms of the unary, binary and copy kernels, on layouts whose innermost dim is
// contiguous in every operand and whose offsets and other strides are multiples of 4 (src/layout.ts's
// vectorLayout rescales them to units of 4 elements): 16-byte loads and stores of float32, 8-byte
// ones of the 16-bit dtypes (instead of 2-byte ones), a quarter of the index arithmetic, and the
// arithmetic ops chosen at compile time. The values are the scalar kernels' exactly.
template <typename H>
__device__ __forceinline__ void load4(const H* p, float (&f)[4]) {
  const uint2 u = *reinterpret_cast<const uint2*>(p);
  const H* h = reinterpret_cast<const H*>(&u);
#pragma unroll
  for (int j = 0; j < 4; j++) f[j] = toF(h[j]);
}
__device__ __forceinline__ void load4(const float* p, float (&f)[4]) {
  const float4 u = *reinterpret_cast<const float4*>(p);
  f[0] = u.x, f[1] = u.y, f[2] = u.z, f[3] = u.w;
}
template <typename H>
__device__ __forceinline__ void store4(H* p, const float (&f)[4]) {
  uint2 u;
  H* h = reinterpret_cast<H*>(&u);
#pragma unroll
  for (int j = 0; j < 4; j++) h[j] = fromF<H>(f[j]);
  *reinterpret_cast<uint2*>(p) = u;
}
__device__ __forceinline__ void store4(float* p, const float (&f)[4]) { *reinterpret_cast<float4*>(p) = make_float4(f[0], f[1], f[2], f[3]); }

template <typename E>
__device__ __forceinline__ void unary4(const E* x, E* y, int op, const Strided& L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[2];
    viewOffsets(L, i, o);
    float f[4];
    load4(x + 4 * (size_t)o[1], f);
#pragma unroll
    for (int j = 0; j < 4; j++) f[j] = unaryF(op, f[j]);
    store4(y + 4 * (size_t)i, f);
  }
}
// OP >= 0: the op fixed at compile time; -1: the runtime `op`.
template <int OP, typename E>
__device__ __forceinline__ void binary4(const E* a, const E* b, E* y, int op, int scalars, float sa, float sb, const Strided& L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[3];
    viewOffsets(L, i, o);
    float x0[4] = {sa, sa, sa, sa}, x1[4] = {sb, sb, sb, sb};
    if (!(scalars & 1)) load4(a + 4 * (size_t)o[1], x0);
    if (!(scalars & 2)) load4(b + 4 * (size_t)(scalars & 1 ? o[1] : o[2]), x1);
#pragma unroll
    for (int j = 0; j < 4; j++) x0[j] = binaryF(OP >= 0 ? OP : op, x0[j], x1[j]);
    store4(y + 4 * (size_t)i, x0);
  }
}
// Between float32 and a 16-bit dtype: converted (rounded to nearest even on the way in).
template <typename S, typename D>
__device__ __forceinline__ void cast4(const S* x, D* y, const Strided& L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[2];
    viewOffsets(L, i, o);
    float f[4];
    load4(x + 4 * (size_t)o[1], f);
    store4(y + 4 * (size_t)o[0], f);
  }
}
// Within one dtype the bits move (NaN payloads included), as in the scalar copies.
template <typename E>
__device__ __forceinline__ void copyBits4(const E* x, E* y, const Strided& L) {
  using V = typename std::conditional<sizeof(E) == 4, uint4, uint2>::type;
  GRID_STRIDE(i, L.n) {
    uint32_t o[2];
    viewOffsets(L, i, o);
    *reinterpret_cast<V*>(y + 4 * (size_t)o[0]) = *reinterpret_cast<const V*>(x + 4 * (size_t)o[1]);
  }
}
#define ELEMENTWISE4(NAME, E)                                                                                                    \
  extern "C" __global__ void unary_##NAME##x4(const E* x, E* y, int op, Strided L) { unary4(x, y, op, L); }                       \
  extern "C" __global__ void binary_##NAME##x4(const E* a, const E* b, E* y, int op, int scalars, float sa, float sb, Strided L) { \
    switch (op) { /* the arithmetic ops, each with its own loop; the rest share one */                                          \
      case 0: return binary4<0>(a, b, y, op, scalars, sa, sb, L);                                                                 \
      case 1: return binary4<1>(a, b, y, op, scalars, sa, sb, L);                                                                 \
      case 2: return binary4<2>(a, b, y, op, scalars, sa, sb, L);                                                                 \
      case 3: return binary4<3>(a, b, y, op, scalars, sa, sb, L);                                                                 \
    }                                                                                                                             \
    binary4<-1>(a, b, y, op, scalars, sa, sb, L);                                                                                 \
  }                                                                                                                               \
  extern "C" __global__ void copy_##NAME##_##NAME##x4(const E* x, E* y, Strided L) { copyBits4(x, y, L); }
ELEMENTWISE4(f32, float)
ELEMENTWISE4(bf16, __nv_bfloat16)
ELEMENTWISE4(f16, __half)
#define CASTS4(NAME, H)                                                                                \
  extern "C" __global__ void copy_f32_##NAME##x4(const float* x, H* y, Strided L) { cast4(x, y, L); } \
  extern "C" __global__ void copy_##NAME##_f32x4(const H* x, float* y, Strided L) { cast4(x, y, L); }
CASTS4(bf16, __nv_bfloat16)
CASTS4(f16, __half)

template <typename C, typename T>
__device__ void whereBody(const C* c, const T* a, const T* b, T* y, const Strided& L) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[4];
    viewOffsets(L, i, o);
    y[i] = c[o[1]] != C(0) ? a[o[2]] : b[o[3]];
  }
}
extern "C" __global__ void where_f32_f32(const float* c, const float* a, const float* b, float* y, Strided L) { whereBody(c, a, b, y, L); }
extern "C" __global__ void where_f32_i32(const float* c, const int32_t* a, const int32_t* b, int32_t* y, Strided L) { whereBody(c, a, b, y, L); }
extern "C" __global__ void where_i32_f32(const int32_t* c, const float* a, const float* b, float* y, Strided L) { whereBody(c, a, b, y, L); }
extern "C" __global__ void where_i32_i32(const int32_t* c, const int32_t* a, const int32_t* b, int32_t* y, Strided L) { whereBody(c, a, b, y, L); }

// dst[view 0] = cast(src[view 1]); here operand 0 is the strided destination, not a fresh output.
template <typename S, typename D, typename F>
__device__ __forceinline__ void copyBody(const S* x, D* y, const Strided& L, F cast) {
  GRID_STRIDE(i, L.n) {
    uint32_t o[2];
    viewOffsets(L, i, o);
    y[o[0]] = cast(x[o[1]]);
  }
}
extern "C" __global__ void copy_f32_f32(const float* x, float* y, Strided L) { copyBody(x, y, L, [](float v) { return v; }); }
extern "C" __global__ void copy_i32_i32(const int32_t* x, int32_t* y, Strided L) { copyBody(x, y, L, [](int32_t v) { return v; }); }
extern "C" __global__ void copy_i32_f32(const int32_t* x, float* y, Strided L) { copyBody(x, y, L, [](int32_t v) { return (float)v; }); }
extern "C" __global__ void copy_f32_i32(const float* x, int32_t* y, Strided L) { copyBody(x, y, L, [](float v) { return toInt32(v); }); }

// Casts to and from the 16-bit floats: rounding to nearest even; int32 goes through float32 on
// the way in, as on every backend (core/src/backend.ts), and float32's ToInt32 on the way out.
#define COPY_HALF(NAME, H, TO_H, FROM_H)                                                                                            \
  extern "C" __global__ void copy_f32_##NAME(const float* x, H* y, Strided L) { copyBody(x, y, L, [](float v) { return TO_H(v); }); } \
  extern "C" __global__ void copy_i32_##NAME(const int32_t* x, H* y, Strided L) {                                                   \
    copyBody(x, y, L, [](int32_t v) { return TO_H((float)v); });                                                                  \
  }                                                                                                                                \
  extern "C" __global__ void copy_##NAME##_f32(const H* x, float* y, Strided L) { copyBody(x, y, L, [](H v) { return FROM_H(v); }); } \
  extern "C" __global__ void copy_##NAME##_i32(const H* x, int32_t* y, Strided L) {                                                 \
    copyBody(x, y, L, [](H v) { return toInt32(FROM_H(v)); });                                                                    \
  }                                                                                                                                \
  extern "C" __global__ void copy_##NAME##_##NAME(const H* x, H* y, Strided L) { copyBody(x, y, L, [](H v) { return v; }); }
COPY_HALF(bf16, __nv_bfloat16, __float2bfloat16_rn, __bfloat162float)
COPY_HALF(f16, __half, __float2half_rn, __half2float)
extern "C" __global__ void copy_bf16_f16(const __nv_bfloat16* x, __half* y, Strided L) {
  copyBody(x, y, L, [](__nv_bfloat16 v) { return __float2half_rn(__bfloat162float(v)); });
}
extern "C" __global__ void copy_f16_bf16(const __half* x, __nv_bfloat16* y, Strided L) {
  copyBody(x, y, L, [](__half v) { return __float2bfloat16_rn(__half2float(v)); });
}

// A copy that transposes its last two dims (dst [.., I, J] with J contiguous, src with I
// contiguous), e.g. a transposed view made contiguous: 32 x 32 tiles through shared memory, so
// that reads run along I and writes along J, both coalesced (the element-wise copy reads or
// writes with a stride). Grid (J tiles, I tiles, batch); the batch dims are L's leading dims.
// 32-bit elements of either dtype, copied as bits.
extern "C" __global__ void transpose_32(const uint32_t* x, uint32_t* y, Strided L) {
  __shared__ uint32_t tile[32][33];  // 33: a column of the tile spans all banks
  const int r = L.rank;
  const uint32_t I = L.shape[r - 2], J = L.shape[r - 1];
  uint32_t out = L.offset[0], in = L.offset[1], rem = blockIdx.z;
  for (int d = r - 3; d >= 0; d--) {
    const uint32_t c = rem % L.shape[d];
    rem /= L.shape[d];
    out += c * L.strides[0][d];
    in += c * L.strides[1][d];
  }
  const uint32_t tx = threadIdx.x % 32, ty = threadIdx.x / 32, i0 = blockIdx.y * 32, j0 = blockIdx.x * 32;
#pragma unroll
  for (int k = 0; k < 32; k += 8) {
    const uint32_t i = i0 + tx, j = j0 + ty + k;
    if (i < I && j < J) tile[ty + k][tx] = x[in + i + j * L.strides[1][r - 1]];
  }
  __syncthreads();
#pragma unroll
  for (int k = 0; k < 32; k += 8) {
    const uint32_t i = i0 + ty + k, j = j0 + tx;
    if (i < I && j < J) y[out + i * L.strides[0][r - 2] + j] = tile[tx][ty + k];
  }
}

// core's counter-based generator (random.ts), bit for bit.
__device__ __forceinline__ uint32_t fmix(uint32_t h) {
  h ^= h >> 16; h *= 0x85ebca6bu; h ^= h >> 13; h *= 0xc2b2ae35u; h ^= h >> 16;
  return h;
}
__device__ __forceinline__ uint32_t bits(uint32_t key, uint32_t i) { return fmix(fmix(i * 0x9e3779b1u + key) ^ key); }
// kind 0: uniform [a, b); 1: normal (mean a, std b); 2: keep (a dropout mask): b where the uniform
// draw is >= a, else 0. Written in the output's type (16-bit: rounded once).
template <typename T>
__device__ void randomBody(T* y, uint32_t n, int kind, uint32_t key, float a, float b) {
  GRID_STRIDE(i, n) {
    float v;
    if (kind == 1) {
      float u1 = (float)((bits(key, 2u * i) >> 8) + 1u) * (1.0f / 16777216.0f);
      float u2 = (float)(bits(key, 2u * i + 1u) >> 8) * (1.0f / 16777216.0f);
      v = a + b * sqrtf(-2.f * logf(u1)) * cosf(6.283185307179586f * u2);
    } else {
      const float u = (float)(bits(key, i) >> 8) * (1.0f / 16777216.0f);
      v = kind == 2 ? (u >= a ? b : 0.f) : a + (b - a) * u;
    }
    y[i] = fromF<T>(v);
  }
}
extern "C" __global__ void random_f32(float* y, uint32_t n, int kind, uint32_t key, float a, float b) { randomBody(y, n, kind, key, a, b); }
extern "C" __global__ void random_bf16(__nv_bfloat16* y, uint32_t n, int kind, uint32_t key, float a, float b) { randomBody(y, n, kind, key, a, b); }
extern "C" __global__ void random_f16(__half* y, uint32_t n, int kind, uint32_t key, float a, float b) { randomBody(y, n, kind, key, a, b); }

// Kernels over a list of tensors in one launch (as PyTorch's multi_tensor_apply): the pointers and
// sizes of up to LIST_MAX tensors travel by value in the kernel's parameters (src/lists.ts packs
// them); blockIdx.y picks the tensor, blockIdx.x strides over its elements.
#define LIST_MAX 48
#define LIST_STRIDE(i, n) for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

struct AdamList {
  const float* p[LIST_MAX]; const float* g[LIST_MAX]; const float* m[LIST_MAX]; const float* v[LIST_MAX];
  float* po[LIST_MAX]; float* mo[LIST_MAX]; float* vo[LIST_MAX];
  uint32_t n[LIST_MAX];
};

// One Adam(W) step (see Backend.adamStep); coefficients derived in core (adamCoefficients).
extern "C" __global__ void adam_step_list(AdamList L, float coupled, float shrink, float b1, float b2, float step, float bc2, float eps) {
  const int t = blockIdx.y;
  const float *p = L.p[t], *g = L.g[t], *m = L.m[t], *v = L.v[t];
  float *po = L.po[t], *mo = L.mo[t], *vo = L.vo[t];
  LIST_STRIDE(i, L.n[t]) {
    float gi = g[i] + coupled * p[i];
    float mi = b1 * m[i] + (1.f - b1) * gi;
    float vi = b2 * v[i] + (1.f - b2) * gi * gi;
    mo[i] = mi;
    vo[i] = vi;
    po[i] = p[i] * shrink - step * mi / (sqrtf(vi / bc2) + eps);
  }
}

struct ScaleList {
  const float* x[LIST_MAX]; float* y[LIST_MAX];
  uint32_t n[LIST_MAX];
};

// y = x * factor[0] for every tensor of the list (gradient clipping: the factor stays on the device).
extern "C" __global__ void scale_list(ScaleList L, const float* factor) {
  const int t = blockIdx.y;
  const float k = *factor;
  LIST_STRIDE(i, L.n[t]) L.y[t][i] = L.x[t][i] * k;
}

struct SumList {
  const float* x[LIST_MAX];
  uint32_t n[LIST_MAX];
};

// Partial sums of squares: block (x, y) writes the sum over its share of tensor y to
// partial[base + y * gridDim.x + x]; one ordinary sum over the partials follows (deterministic).
extern "C" __global__ void sum_squares_list(SumList L, float* partial, uint32_t base) {
  const int t = blockIdx.y;
  float acc = 0.f;
  LIST_STRIDE(i, L.n[t]) { float v = L.x[t][i]; acc += v * v; }
  acc = blockAll(acc, Add(), 0.f);
  if (threadIdx.x == 0) partial[base + blockIdx.y * gridDim.x + blockIdx.x] = acc;
}
