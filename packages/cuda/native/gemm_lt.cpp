#include "gemm_lt.h"
#include <dlfcn.h>
#include <map>
#include <tuple>

namespace {
// cublasLt.h's values.
enum { DESC_TRANSA = 3, DESC_TRANSB = 4, LAYOUT_BATCH_COUNT = 5, LAYOUT_STRIDED_BATCH_OFFSET = 6, PREF_MAX_WORKSPACE_BYTES = 1 };
struct Algo { uint64_t data[8]; };
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};
using Key = std::tuple<int, int, int, int, int, int, int, int, long long, long long, long long, int, int, int>;
struct Plan {
  bool ok = false;
  void *desc = nullptr, *a = nullptr, *b = nullptr, *c = nullptr;
  Algo algo{};
  size_t workspace = 0;
};
std::map<Key, Plan> plans;
// Plans kept at most: shapes that keep changing (sampling with a growing sequence) would otherwise
// accumulate descriptors for the life of the process.
constexpr size_t MAX_PLANS = 4096;
}  // namespace

struct GemmLt::Fns {
  int (*create)(void**);
  int (*descCreate)(void**, int computeType, int scaleType);
  int (*descSet)(void*, int, const void*, size_t);
  int (*layoutCreate)(void**, int type, uint64_t rows, uint64_t cols, int64_t ld);
  int (*layoutSet)(void*, int, const void*, size_t);
  int (*prefCreate)(void**);
  int (*prefSet)(void*, int, const void*, size_t);
  int (*prefDestroy)(void*);
  int (*descDestroy)(void*);
  int (*layoutDestroy)(void*);
  int (*heuristic)(void*, void*, void*, void*, void*, void*, void*, int, HeuristicResult*, int*);
  int (*matmul)(void*, void*, const void*, const void*, void*, const void*, void*, const void*, const void*, void*, void*, void*,
                const Algo*, void*, size_t, CUstream);
};

bool GemmLt::load(std::string& why) {
  void* lib = dlopen("libcublasLt.so.13", RTLD_NOW | RTLD_NOLOAD);
  if (!lib) {
    why = "libcublasLt.so.13 is not loaded";
    return false;
  }
  Fns* f = new Fns();
  const std::pair<void**, const char*> syms[] = {
      {(void**)&f->create, "cublasLtCreate"}, {(void**)&f->descCreate, "cublasLtMatmulDescCreate"},
      {(void**)&f->descSet, "cublasLtMatmulDescSetAttribute"}, {(void**)&f->layoutCreate, "cublasLtMatrixLayoutCreate"},
      {(void**)&f->layoutSet, "cublasLtMatrixLayoutSetAttribute"}, {(void**)&f->prefCreate, "cublasLtMatmulPreferenceCreate"},
      {(void**)&f->prefSet, "cublasLtMatmulPreferenceSetAttribute"}, {(void**)&f->prefDestroy, "cublasLtMatmulPreferenceDestroy"},
      {(void**)&f->descDestroy, "cublasLtMatmulDescDestroy"}, {(void**)&f->layoutDestroy, "cublasLtMatrixLayoutDestroy"},
      {(void**)&f->heuristic, "cublasLtMatmulAlgoGetHeuristic"}, {(void**)&f->matmul, "cublasLtMatmul"}};
  for (auto& s : syms) {
    *s.first = dlsym(lib, s.second);
    if (!*s.first) {
      why = std::string("libcublasLt.so.13 lacks ") + s.second;
      delete f;
      return false;
    }
  }
  if (f->create(&handle_) != 0) {
    why = "cublasLtCreate failed";
    delete f;
    return false;
  }
  f_ = f;
  return true;
}

int GemmLt::gemm(int transa, int transb, int m, int n, int k, const void* A, int lda, long long strideA, const void* B, int ldb,
                 long long strideB, void* C, int ldc, long long strideC, int batch, int computeType, int dataType, void* workspace,
                 size_t workspaceBytes, CUstream stream) {
  const Key key{transa, transb, m, n, k, lda, ldb, ldc, strideA, strideB, strideC, batch, computeType, dataType};
  auto it = plans.find(key);
  if (it == plans.end()) {
    if (plans.size() >= MAX_PLANS) {
      // Queued products keep their own copies of what they need; the descriptors may go.
      for (auto& kv : plans) {
        if (kv.second.desc) f_->descDestroy(kv.second.desc);
        for (void* l : {kv.second.a, kv.second.b, kv.second.c})
          if (l) f_->layoutDestroy(l);
      }
      plans.clear();
    }
    Plan p;
    const int32_t ta = transa, tb = transb, count = batch;
    // Stored shapes of A and B (column-major): op(A) is m x k, op(B) k x n.
    bool ok = f_->descCreate(&p.desc, computeType, CUDA_R_32F_) == 0 && f_->descSet(p.desc, DESC_TRANSA, &ta, sizeof ta) == 0 &&
              f_->descSet(p.desc, DESC_TRANSB, &tb, sizeof tb) == 0 &&
              f_->layoutCreate(&p.a, dataType, transa ? k : m, transa ? m : k, lda) == 0 &&
              f_->layoutCreate(&p.b, dataType, transb ? n : k, transb ? k : n, ldb) == 0 &&
              f_->layoutCreate(&p.c, dataType, m, n, ldc) == 0;
    if (ok && batch > 1) {
      const std::pair<void*, int64_t> strides[] = {{p.a, strideA}, {p.b, strideB}, {p.c, strideC}};
      for (auto& s : strides) {
        ok = ok && f_->layoutSet(s.first, LAYOUT_BATCH_COUNT, &count, sizeof count) == 0 &&
             f_->layoutSet(s.first, LAYOUT_STRIDED_BATCH_OFFSET, &s.second, sizeof s.second) == 0;
      }
    }
    void* pref = nullptr;
    const uint64_t wsBytes = workspaceBytes;
    HeuristicResult result{};
    int found = 0;
    ok = ok && f_->prefCreate(&pref) == 0 && f_->prefSet(pref, PREF_MAX_WORKSPACE_BYTES, &wsBytes, sizeof wsBytes) == 0 &&
         f_->heuristic(handle_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &result, &found) == 0 && found > 0 && result.state == 0;
    if (pref) f_->prefDestroy(pref);
    // A shape without a plan keeps ok = false (the legacy call serves it).
    p.ok = ok;
    p.algo = result.algo;
    p.workspace = result.workspaceSize;
    it = plans.emplace(key, p).first;
  }
  Plan& p = it->second;
  if (!p.ok) return -1;
  const float one = 1.f, zero = 0.f;
  const int s = f_->matmul(handle_, p.desc, &one, A, p.a, B, p.b, &zero, C, p.c, C, p.c, &p.algo, workspace, workspaceBytes, stream);
  if (s != 0) p.ok = false;  // this shape goes to the legacy call from now on
  return s;
}
