// Peak throughput of warp-level mma.sync (TF32 m16n8k8, BF16 m16n8k16) with operands in registers:
// every warp runs 8 independent accumulator chains, nothing else. The ceiling the mma.sync
// block-sparse kernels are measured against (packages/cuda/DESIGN.md; NOTES 19 in git history).
//   nvcc -O3 -arch=sm_90a -o mma-rate benchmarks/mma-rate.cu && ./mma-rate      (on the GPU host)
#include <cstdio>
#include <cstdint>
#include "../packages/cuda/native/kernels/async_mma.cuh"
template <int P>
__global__ void k(float* out, int iters) {
  float c[8][4] = {};
  uint32_t a[4] = {threadIdx.x, 1u, 2u, 3u}, b[2] = {5u, threadIdx.x};
  for (int it = 0; it < iters; it++) {
#pragma unroll
    for (int j = 0; j < 8; j++) { if (P == 0) mmaTf32(c[j], a, b); else mmaBf16(c[j], a, b); }
  }
  float s = 0; for (int j = 0; j < 8; j++) for (int r = 0; r < 4; r++) s += c[j][r];
  if (s == 1.2345f) out[0] = s;
}
int main() {
  float* out; cudaMalloc(&out, 4);
  cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
  for (int p = 0; p < 2; p++) for (int warps : {4, 8, 16}) {
    int iters = 4096, blocks = 132 * 2;
    auto run = [&] { if (p == 0) k<0><<<blocks, 32 * warps>>>(out, iters); else k<1><<<blocks, 32 * warps>>>(out, iters); };
    run(); cudaEventRecord(e0); for (int r = 0; r < 5; r++) run(); cudaEventRecord(e1); cudaEventSynchronize(e1);
    float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= 5;
    double macs = (double)blocks * warps * iters * 8 * (p == 0 ? 16 * 8 * 8 : 16 * 8 * 16);
    printf("%s m16n8k%d, %d warps x 2 CTAs per SM: %.1f TFLOP/s\n", p == 0 ? "TF32" : "BF16", p == 0 ? 8 : 16, warps, 2 * macs / ms / 1e9);
  }
}
