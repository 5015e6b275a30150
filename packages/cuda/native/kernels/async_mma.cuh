// Asynchronous global -> shared copies (cp.async) and the warp-level tensor-core instructions
// (mma.sync) used by the tensor-core block-sparse kernels.
#pragma once
#include <cstdint>

__device__ __forceinline__ uint32_t smemAddr(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }
// 16 bytes global -> shared, or zeros when !valid.
__device__ __forceinline__ void cpAsync16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smemAddr(dst)), "l"(src), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cpAsyncWait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// The multi-stage cp.async pipeline of the kernels that use it: issue(step) queues the copies of
// stage `step`, body(step) consumes the stage once they landed, STAGES - 1 stages in flight. Ends
// with every copy complete.
template <int STAGES, class Issue, class Body>
__device__ __forceinline__ void cpAsyncPipeline(int steps, Issue issue, Body body) {
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
    body(step);
  }
  cpAsyncWait<0>();
}

// c += a b for a 16 x 8 x 8 TF32 tile and a 16 x 8 x 16 BF16 tile (fp32 accumulators).
__device__ __forceinline__ void mmaTf32(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
__device__ __forceinline__ void mmaBf16(float c[4], const uint32_t a[4], const uint32_t b[2]) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
