#include "driver.h"
#include <dlfcn.h>
#include <cstdlib>

#define STR2(x) #x
#define STR(x) STR2(x)

bool Driver::load(std::string& why) {
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    why = std::string("the NVIDIA driver library libcuda.so.1 could not be opened (no NVIDIA driver on this machine?): ") + dlerror();
    return false;
  }
#define RESOLVE(name)                                                          \
  name##_ = reinterpret_cast<decltype(&name)>(dlsym(lib, STR(name)));          \
  if (!name##_) {                                                              \
    why = "libcuda.so.1 lacks " STR(name) " (driver too old for CUDA 13?)";     \
    return false;                                                              \
  }
  CU_FUNCTIONS(RESOLVE)
#undef RESOLVE
  return true;
}

std::string Driver::error(CUresult r) const {
  const char* name = nullptr;
  const char* text = nullptr;
  if (cuGetErrorName_) cuGetErrorName_(r, &name);
  if (cuGetErrorString_) cuGetErrorString_(r, &text);
  return std::string(name ? name : "CUDA error") + " (" + (text ? text : std::to_string(r)) + ")";
}

static void* openFirst(const std::string* paths, int count, std::string& tried) {
  for (int i = 0; i < count; i++) {
    void* h = dlopen(paths[i].c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (h) return h;
    tried += std::string("\n  ") + dlerror();
  }
  return nullptr;
}

bool Blas::load(std::string& why) {
  const char* home = getenv("CUDA_HOME");
  std::string dirs[3] = {home ? std::string(home) + "/lib64/" : "", "/usr/local/cuda/lib64/", ""};
  std::string tried;
  // libcublasLt first, globally, so that libcublas finds it wherever it was found.
  std::string lt[3], blas[3];
  for (int i = 0; i < 3; i++) {
    lt[i] = dirs[i] + "libcublasLt.so.13";
    blas[i] = dirs[i] + "libcublas.so.13";
  }
  openFirst(lt, 3, tried);
  void* lib = openFirst(blas, 3, tried);
  if (!lib) {
    why = "cuBLAS (libcublas.so.13) could not be opened:" + tried;
    return false;
  }
  create = reinterpret_cast<decltype(create)>(dlsym(lib, "cublasCreate_v2"));
  setStream = reinterpret_cast<decltype(setStream)>(dlsym(lib, "cublasSetStream_v2"));
  setWorkspace = reinterpret_cast<decltype(setWorkspace)>(dlsym(lib, "cublasSetWorkspace_v2"));
  statusString = reinterpret_cast<decltype(statusString)>(dlsym(lib, "cublasGetStatusString"));
  gemmStridedBatchedEx = reinterpret_cast<decltype(gemmStridedBatchedEx)>(dlsym(lib, "cublasGemmStridedBatchedEx"));
  if (!create || !setStream || !setWorkspace || !gemmStridedBatchedEx || !statusString) {
    why = "libcublas.so.13 lacks an expected function";
    return false;
  }
  return true;
}
