// Dense products through cuBLASLt with a plan per shape: cublasGemmStridedBatchedEx picks its
// kernel on every call (23-32 us of host time per call on the H100 host, 147 calls per GPT step);
// here the matrix descriptors and the heuristic's algorithm are made once per shape and reused.
// Declared without cuBLAS headers, as driver.h does; enum values and structs are cublasLt.h's.
#pragma once
#include <cstdint>
#include <string>
#include "driver.h"

class GemmLt {
 public:
  // Opens the cuBLASLt entry points from an already loaded libcublasLt.so.13; false with why if not.
  bool load(std::string& why);
  // C = op(A) op(B) as cublasGemmStridedBatchedEx takes it (column-major, alpha 1, beta 0; A, B
  // and C all of dataType, a cudaDataType: fp32, bf16 or fp16, scaled and accumulated in fp32);
  // returns a cuBLAS status (0 = done). A plan that cannot be made is remembered, and the caller
  // falls back to the legacy call for that shape.
  int gemm(int transa, int transb, int m, int n, int k, const void* A, int lda, long long strideA, const void* B, int ldb,
           long long strideB, void* C, int ldc, long long strideC, int batch, int computeType, int dataType, void* workspace,
           size_t workspaceBytes, CUstream stream);

 private:
  struct Fns;
  Fns* f_ = nullptr;
  void* handle_ = nullptr;
};
