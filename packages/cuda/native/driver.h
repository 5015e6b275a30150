// The CUDA driver API and cuBLAS, opened with dlopen at run time: the addon builds where neither
// a GPU nor cuBLAS exists (only cuda.h is needed), and loads anywhere, reporting what is missing.
#pragma once
#include <cuda.h>
#include <string>

// Function pointers named after the driver API; the macros of cuda.h map each name to its
// current versioned symbol (cuMemAlloc -> cuMemAlloc_v2), which is what dlsym looks up.
#define CU_FUNCTIONS(X)                                                                                                    \
  X(cuInit) X(cuDriverGetVersion) X(cuDeviceGet) X(cuDeviceGetCount) X(cuDeviceGetName) X(cuDeviceGetAttribute)            \
  X(cuDeviceTotalMem) X(cuDevicePrimaryCtxRetain) X(cuCtxSetCurrent) X(cuGetErrorString) X(cuGetErrorName)                \
  X(cuModuleLoadData) X(cuModuleGetFunctionCount) X(cuModuleEnumerateFunctions) X(cuFuncGetName) X(cuFuncSetAttribute) X(cuLaunchKernel) X(cuMemAlloc) X(cuMemFree)           \
  X(cuMemAllocHost) X(cuMemFreeHost) X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync) X(cuMemcpyDtoDAsync) X(cuMemsetD32Async)    \
  X(cuMemGetInfo) X(cuStreamCreate) X(cuStreamSynchronize) X(cuEventCreate) X(cuEventRecord) X(cuEventSynchronize)         \
  X(cuEventDestroy) X(cuEventElapsedTime) X(cuTensorMapEncodeTiled) X(cuMemcpyHtoD) X(cuStreamBeginCapture) X(cuStreamEndCapture) \
  X(cuStreamGetCaptureInfo) X(cuGraphInstantiate) X(cuGraphLaunch) X(cuGraphExecKernelNodeSetParams) X(cuGraphDestroy)    \
  X(cuGraphExecDestroy)

struct Driver {
#define DECLARE(name) decltype(&name) name##_ = nullptr;
  CU_FUNCTIONS(DECLARE)
#undef DECLARE
  // Loads libcuda.so.1; on failure returns false with the reason.
  bool load(std::string& why);
  std::string error(CUresult r) const;
};

// cuBLAS, declared here (its headers are not needed to build): the enum values are cuBLAS's.
typedef struct cublasContext* cublasHandle_t;
typedef int cublasStatus_t;
enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum { CUDA_R_32F_ = 0, CUDA_R_16F_ = 2, CUDA_R_16BF_ = 14 };
enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum { CUBLAS_GEMM_DEFAULT = -1 };

struct Blas {
  cublasStatus_t (*create)(cublasHandle_t*) = nullptr;
  cublasStatus_t (*setStream)(cublasHandle_t, CUstream) = nullptr;
  cublasStatus_t (*setWorkspace)(cublasHandle_t, void*, size_t) = nullptr;
  const char* (*statusString)(cublasStatus_t) = nullptr;
  cublasStatus_t (*gemmStridedBatchedEx)(cublasHandle_t, int transa, int transb, int m, int n, int k, const void* alpha,
                                         const void* A, int Atype, int lda, long long strideA, const void* B, int Btype, int ldb,
                                         long long strideB, const void* beta, void* C, int Ctype, int ldc, long long strideC,
                                         int batchCount, int computeType, int algo) = nullptr;
  // Opens libcublas.so.13 (CUDA_HOME/lib64, /usr/local/cuda/lib64, then the loader's path).
  bool load(std::string& why);
};
