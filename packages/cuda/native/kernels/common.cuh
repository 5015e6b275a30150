// Shared by every kernel file: the strided-operand description and reduction helpers.
#pragma once
#include <cstdint>

#define MAX_RANK 6
#define MAX_OPERANDS 4

// Shape and per-operand layouts of an elementwise kernel after merging contiguous dims (see
// src/args.ts, which packs it). Operand 0 is the output (contiguous), 1.. the inputs.
struct Strided {
  uint32_t n;     // elements
  int32_t rank;   // merged rank (<= MAX_RANK)
  int32_t flat;   // 1 when every operand is one contiguous run: element i at offset[k] + i
  uint32_t shape[MAX_RANK];
  uint32_t offset[MAX_OPERANDS];
  int32_t strides[MAX_OPERANDS][MAX_RANK];
};

// The offsets of element i in operands 0..K-1: the index is decomposed into coordinates once and
// the coordinates serve every operand (a 32-bit division per dim and element is what these
// memory-bound kernels spend their instructions on).
template <int K>
__device__ __forceinline__ void viewOffsets(const Strided& L, uint32_t i, uint32_t (&off)[K]) {
#pragma unroll
  for (int k = 0; k < K; k++) off[k] = L.offset[k] + (L.flat ? i : 0u);
  if (L.flat) return;
  uint32_t rem = i;
  for (int d = L.rank - 1; d >= 0; d--) {
    const uint32_t dim = L.shape[d], c = rem % dim;
    rem /= dim;
#pragma unroll
    for (int k = 0; k < K; k++) off[k] += c * L.strides[k][d];
  }
}

// NaN-propagating max/min, as PyTorch (fmaxf would drop the NaN).
__device__ __forceinline__ float nanMax(float a, float b) { return a > b || a != a ? a : b; }
__device__ __forceinline__ float nanMin(float a, float b) { return a < b || a != a ? a : b; }

template <typename F>
__device__ __forceinline__ float warpAll(float v, F f) {
  for (int o = 16; o > 0; o >>= 1) v = f(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Reduces v over the block (blockDim.x a multiple of 32, <= 1024); every thread gets the result.
template <typename F>
__device__ float blockAll(float v, F f, float identity) {
  __shared__ float part[32];
  __shared__ float total;
  v = warpAll(v, f);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // part[] may still be read by a previous call
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < (int)(blockDim.x >> 5) ? part[lane] : identity;
    w = warpAll(w, f);
    if (lane == 0) total = w;
  }
  __syncthreads();
  return total;
}

struct Add { __device__ float operator()(float a, float b) const { return a + b; } };
struct Max { __device__ float operator()(float a, float b) const { return nanMax(a, b); } };
struct Min { __device__ float operator()(float a, float b) const { return nanMin(a, b); } };
