// The Node-API side of the CUDA backend: device memory, one stream, kernel launches from the
// embedded fatbins, cuBLAS products, device timers and asynchronous readback. Everything here is
// mechanism; which kernel runs with which arguments is decided in src/ (TypeScript).
#include <napi.h>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>
#include "driver.h"
#include "gemm_lt.h"

// The fatbins (kernels/*.cu compiled by nvcc for sm_80, sm_90a and compute_90 PTX), embedded by
// build.mjs through fatbins.S.
extern "C" const unsigned char* const sparsegradFatbins[];
extern "C" const int sparsegradFatbinCount;

namespace {

Driver cu;
Blas blas;
bool blasLoaded = false;
std::string blasError;
// cuBLASLt with a plan per shape where it loads (the host tuning's cublasLt off keeps the legacy call).
GemmLt lt;
bool ltLoaded = false;
CUdeviceptr blasWorkspace = 0;
constexpr size_t BLAS_WORKSPACE = 32u << 20;
CUcontext ctx = nullptr;
CUstream stream = nullptr;
cublasHandle_t blasHandle = nullptr;
std::vector<CUfunction> functions;  // every kernel of every module, by id
std::map<std::string, int> functionIds;
std::vector<CUevent> events;  // device timers, by id

// Pinned staging buffers for readback, reused by size.
std::mutex pinnedLock;
std::multimap<size_t, void*> pinnedFree;

[[noreturn]] void fail(Napi::Env env, const std::string& what, CUresult r) {
  Napi::Error e = Napi::Error::New(env, what + ": " + cu.error(r));
  e.Set("code", Napi::String::New(env, r == CUDA_ERROR_OUT_OF_MEMORY ? "CUDA_OOM" : "CUDA_ERROR"));
  throw e;
}
void check(Napi::Env env, const char* what, CUresult r) {
  if (r != CUDA_SUCCESS) fail(env, what, r);
}
CUdeviceptr ptrArg(const Napi::Value& v) { return (CUdeviceptr)(uint64_t)v.As<Napi::Number>().DoubleValue(); }
uint32_t u32(const Napi::CallbackInfo& info, int i) { return info[i].As<Napi::Number>().Uint32Value(); }

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (ctx) throw Napi::Error::New(env, "the CUDA addon is already initialised");
  std::string why;
  if (!cu.load(why)) throw Napi::Error::New(env, why);
  check(env, "cuInit", cu.cuInit_(0));
  int count = 0;
  check(env, "cuDeviceGetCount", cu.cuDeviceGetCount_(&count));
  if (count == 0) throw Napi::Error::New(env, "no CUDA device found");
  const int ordinal = info.Length() > 0 ? info[0].As<Napi::Number>().Int32Value() : 0;
  if (ordinal < 0 || ordinal >= count) throw Napi::Error::New(env, "CUDA device " + std::to_string(ordinal) + " does not exist (" + std::to_string(count) + " found)");
  CUdevice dev;
  check(env, "cuDeviceGet", cu.cuDeviceGet_(&dev, ordinal));
  // The primary context, shared with cuBLAS (which works through the runtime API).
  check(env, "cuDevicePrimaryCtxRetain", cu.cuDevicePrimaryCtxRetain_(&ctx, dev));
  check(env, "cuCtxSetCurrent", cu.cuCtxSetCurrent_(ctx));
  check(env, "cuStreamCreate", cu.cuStreamCreate_(&stream, CU_STREAM_NON_BLOCKING));
  for (int i = 0; i < sparsegradFatbinCount; i++) {
    CUmodule m;
    check(env, "cuModuleLoadData (kernels for this GPU)", cu.cuModuleLoadData_(&m, sparsegradFatbins[i]));
    unsigned count = 0;
    check(env, "cuModuleGetFunctionCount", cu.cuModuleGetFunctionCount_(&count, m));
    std::vector<CUfunction> fs(count);
    check(env, "cuModuleEnumerateFunctions", cu.cuModuleEnumerateFunctions_(fs.data(), count, m));
    for (CUfunction f : fs) {
      const char* name = nullptr;
      check(env, "cuFuncGetName", cu.cuFuncGetName_(&name, f));
      functionIds[name] = (int)functions.size();
      functions.push_back(f);
    }
  }
  char name[256] = {0};
  cu.cuDeviceGetName_(name, sizeof(name), dev);
  int major = 0, minor = 0, sms = 0, smem = 0, driver = 0;
  cu.cuDeviceGetAttribute_(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
  cu.cuDeviceGetAttribute_(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
  cu.cuDeviceGetAttribute_(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  cu.cuDeviceGetAttribute_(&smem, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev);
  cu.cuDriverGetVersion_(&driver);
  size_t total = 0;
  cu.cuDeviceTotalMem_(&total, dev);
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", name);
  out.Set("computeCapability", std::to_string(major) + "." + std::to_string(minor));
  out.Set("multiprocessors", sms);
  out.Set("sharedMemoryPerBlock", smem);
  out.Set("totalMemory", (double)total);
  out.Set("driverVersion", driver);
  return out;
}

// The kernel's id for launch(); throws if no module has it.
Napi::Value Function(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>();
  auto it = functionIds.find(name);
  if (it == functionIds.end()) throw Napi::Error::New(env, "no CUDA kernel named " + name + " in the addon");
  return Napi::Number::New(env, it->second);
}

// Kernel parameters packed as for launch(): args (Uint8Array) at the offsets (Uint32Array).
size_t kernelParams(Napi::Env env, const Napi::CallbackInfo& info, int argsAt, void** params) {
  Napi::Uint8Array args = info[argsAt].As<Napi::Uint8Array>();
  Napi::Uint32Array offsets = info[argsAt + 1].As<Napi::Uint32Array>();
  const size_t count = offsets.ElementLength();
  if (count > 64) throw Napi::Error::New(env, "too many kernel parameters");
  for (size_t i = 0; i < count; i++) params[i] = args.Data() + offsets[i];
  return count;
}

// launch(id, gx, gy, gz, bx, by, bz, sharedBytes, args: Uint8Array, offsets: Uint32Array): the
// kernel's parameters packed in `args` (src/args.ts), parameter i starting at offsets[i].
Napi::Value Launch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t id = u32(info, 0);
  if (id >= functions.size()) throw Napi::Error::New(env, "bad kernel id");
  void* params[64];
  kernelParams(env, info, 8, params);
  check(env, "cuLaunchKernel", cu.cuLaunchKernel_(functions[id], u32(info, 1), u32(info, 2), u32(info, 3), u32(info, 4), u32(info, 5), u32(info, 6), u32(info, 7), stream, params, nullptr));
  return env.Undefined();
}

// tensorMap(ptr, bf16, inner, outer, rowStrideBytes, boxInner, boxOuter, swizzleBytes): the
// 128-byte TMA descriptor of a row-major 2D matrix [outer, inner] of fp32 (or bf16), read in boxes
// of boxOuter x boxInner with the given shared-memory swizzle (64 or 128 bytes); rows past `outer`
// read as zeros. Passed to kernels by value (a __grid_constant__ CUtensorMap parameter).
Napi::Value TensorMap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CUtensorMap map;
  const cuuint64_t dims[2] = {u32(info, 2), u32(info, 3)};
  const cuuint64_t strides[1] = {u32(info, 4)};
  const cuuint32_t box[2] = {u32(info, 5), u32(info, 6)};
  const cuuint32_t elementStrides[2] = {1, 1};
  const uint32_t swizzle = u32(info, 7);
  check(env, "cuTensorMapEncodeTiled", cu.cuTensorMapEncodeTiled_(&map, u32(info, 1) ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2,
      (void*)ptrArg(info[0]), dims, strides, box, elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      swizzle == 128 ? CU_TENSOR_MAP_SWIZZLE_128B : swizzle == 64 ? CU_TENSOR_MAP_SWIZZLE_64B : CU_TENSOR_MAP_SWIZZLE_NONE,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  Napi::Uint8Array out = Napi::Uint8Array::New(env, sizeof(map));
  memcpy(out.Data(), &map, sizeof(map));
  return out;
}

Napi::Value SetSharedMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const uint32_t id = u32(info, 0);
  if (id >= functions.size()) throw Napi::Error::New(env, "bad kernel id");
  check(env, "cuFuncSetAttribute", cu.cuFuncSetAttribute_(functions[id], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)u32(info, 1)));
  return env.Undefined();
}

Napi::Value Malloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CUdeviceptr p = 0;
  const double bytes = info[0].As<Napi::Number>().DoubleValue();
  check(env, "cuMemAlloc", cu.cuMemAlloc_(&p, (size_t)bytes));
  return Napi::Number::New(env, (double)p);
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  check(info.Env(), "cuMemFree", cu.cuMemFree_(ptrArg(info[0])));
  return info.Env().Undefined();
}

// upload(ptr, typedArray): stream-ordered; pageable memory is staged before the call returns.
Napi::Value Upload(const Napi::CallbackInfo& info) {
  Napi::TypedArray a = info[1].As<Napi::TypedArray>();
  const uint8_t* data = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  if (a.ByteLength() > 0) check(info.Env(), "cuMemcpyHtoDAsync", cu.cuMemcpyHtoDAsync_(ptrArg(info[0]), data, a.ByteLength(), stream));
  return info.Env().Undefined();
}

Napi::Value Memset32(const Napi::CallbackInfo& info) {
  const double count = info[2].As<Napi::Number>().DoubleValue();
  if (count > 0) check(info.Env(), "cuMemsetD32Async", cu.cuMemsetD32Async_(ptrArg(info[0]), u32(info, 1), (size_t)count, stream));
  return info.Env().Undefined();
}

Napi::Value CopyDtoD(const Napi::CallbackInfo& info) {
  const double bytes = info[2].As<Napi::Number>().DoubleValue();
  if (bytes > 0) check(info.Env(), "cuMemcpyDtoDAsync", cu.cuMemcpyDtoDAsync_(ptrArg(info[0]), ptrArg(info[1]), (size_t)bytes, stream));
  return info.Env().Undefined();
}

// A pinned buffer of at least `bytes` (reused from earlier readbacks when one fits), and its capacity.
std::map<void*, size_t> pinnedSize;
void* takePinned(Napi::Env env, size_t bytes) {
  std::lock_guard<std::mutex> lock(pinnedLock);
  auto it = pinnedFree.lower_bound(bytes);
  if (it != pinnedFree.end() && it->first <= 2 * bytes + 4096) {
    void* p = it->second;
    pinnedFree.erase(it);
    return p;
  }
  size_t cap = 4096;
  while (cap < bytes) cap *= 2;
  void* p = nullptr;
  check(env, "cuMemAllocHost", cu.cuMemAllocHost_(&p, cap));
  pinnedSize[p] = cap;
  return p;
}

// Waits for one readback off the JS thread, then resolves with a copy of the bytes.
class ReadWorker : public Napi::AsyncWorker {
 public:
  ReadWorker(Napi::Env env, CUevent done, void* pinned, size_t bytes)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), done_(done), pinned_(pinned), bytes_(bytes) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    cu.cuCtxSetCurrent_(ctx);
    CUresult r = cu.cuEventSynchronize_(done_);
    if (r != CUDA_SUCCESS) SetError("a kernel queued before this readback failed: " + cu.error(r));
  }
  void OnOK() override {
    Napi::ArrayBuffer out = Napi::ArrayBuffer::New(Env(), bytes_);
    std::memcpy(out.Data(), pinned_, bytes_);
    release();
    deferred_.Resolve(out);
  }
  void OnError(const Napi::Error& e) override {
    release();
    deferred_.Reject(e.Value());
  }

 private:
  void release() {
    cu.cuEventDestroy_(done_);
    std::lock_guard<std::mutex> lock(pinnedLock);
    pinnedFree.emplace(pinnedSize[pinned_], pinned_);
  }
  Napi::Promise::Deferred deferred_;
  CUevent done_;
  void* pinned_;
  size_t bytes_;
};

// read(ptr, bytes) -> Promise<ArrayBuffer>, resolved once every kernel queued before it finished.
Napi::Value Read(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t bytes = (size_t)info[1].As<Napi::Number>().DoubleValue();
  void* pinned = takePinned(env, bytes);
  CUevent done = nullptr;
  CUresult r = bytes > 0 ? cu.cuMemcpyDtoHAsync_(pinned, ptrArg(info[0]), bytes, stream) : CUDA_SUCCESS;
  if (r == CUDA_SUCCESS) r = cu.cuEventCreate_(&done, CU_EVENT_DISABLE_TIMING);
  if (r == CUDA_SUCCESS) r = cu.cuEventRecord_(done, stream);
  if (r != CUDA_SUCCESS) {
    // The staging buffer goes back to the pool; the error names the failing call's result.
    if (done) cu.cuEventDestroy_(done);
    {
      std::lock_guard<std::mutex> lock(pinnedLock);
      pinnedFree.emplace(pinnedSize[pinned], pinned);
    }
    fail(env, "queueing the readback", r);
  }
  ReadWorker* w = new ReadWorker(env, done, pinned, bytes);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// readSync(ptr, bytes) -> ArrayBuffer, waiting for the device (setup only, never in a step).
Napi::Value ReadSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const size_t bytes = (size_t)info[1].As<Napi::Number>().DoubleValue();
  Napi::ArrayBuffer out = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) {
    check(env, "cuMemcpyDtoHAsync", cu.cuMemcpyDtoHAsync_(out.Data(), ptrArg(info[0]), bytes, stream));
    check(env, "cuStreamSynchronize", cu.cuStreamSynchronize_(stream));
  }
  return out;
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  check(info.Env(), "cuStreamSynchronize", cu.cuStreamSynchronize_(stream));
  return info.Env().Undefined();
}

Napi::Value MemInfo(const Napi::CallbackInfo& info) {
  size_t free = 0, total = 0;
  check(info.Env(), "cuMemGetInfo", cu.cuMemGetInfo_(&free, &total));
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, (double)free);
  out.Set(1u, (double)total);
  return out;
}

// Device timers: recordEvent() -> id; elapsed(a, b) in ms once both completed (after synchronize).
Napi::Value RecordEvent(const Napi::CallbackInfo& info) {
  CUevent e;
  check(info.Env(), "cuEventCreate", cu.cuEventCreate_(&e, CU_EVENT_DEFAULT));
  check(info.Env(), "cuEventRecord", cu.cuEventRecord_(e, stream));
  events.push_back(e);
  return Napi::Number::New(info.Env(), (double)events.size() - 1);
}
Napi::Value Elapsed(const Napi::CallbackInfo& info) {
  float ms = 0;
  check(info.Env(), "cuEventElapsedTime", cu.cuEventElapsedTime_(&ms, events.at(u32(info, 0)), events.at(u32(info, 1))));
  return Napi::Number::New(info.Env(), ms);
}
Napi::Value ReleaseEvents(const Napi::CallbackInfo& info) {
  for (CUevent e : events) cu.cuEventDestroy_(e);
  events.clear();
  return info.Env().Undefined();
}

// gemm(transa, transb, m, n, k, A, lda, strideA, B, ldb, strideB, C, ldc, strideC, batch, compute, cublasLt, dtype):
// column-major C = op(A) op(B), alpha 1, beta 0. dtype 0: fp32 in and out, compute 0 = fp32, 1 = TF32,
// 2 = BF16 tensor cores; dtype 1 (bf16) or 2 (fp16): A, B and C in that type, accumulated in fp32.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!blasLoaded) {
    if (!blasError.empty()) throw Napi::Error::New(env, blasError);
    std::string why;
    if (!blas.load(why)) {
      blasError = why;
      throw Napi::Error::New(env, why);
    }
    cublasStatus_t s = blas.create(&blasHandle);
    if (s == 0) s = blas.setStream(blasHandle, stream);
    // A workspace of our own: without one cuBLAS allocates its scratch memory itself; in a CPU
    // profile of 22 GPT steps on an H100 its calls took 595 ms of host time, 330 ms with this.
    // 32 MiB is what NVIDIA recommends for Hopper.
    if (s == 0) {
      check(env, "cuMemAlloc (cuBLAS workspace)", cu.cuMemAlloc_(&blasWorkspace, BLAS_WORKSPACE));
      s = blas.setWorkspace(blasHandle, (void*)blasWorkspace, BLAS_WORKSPACE);
    }
    if (s != 0) {
      blasError = std::string("cublasCreate: ") + blas.statusString(s);
      throw Napi::Error::New(env, blasError);
    }
    blasLoaded = true;
    std::string ltWhy;
    ltLoaded = lt.load(ltWhy);
  }
  auto i32 = [&](int i) { return info[i].As<Napi::Number>().Int32Value(); };
  auto i64 = [&](int i) { return (long long)info[i].As<Napi::Number>().DoubleValue(); };
  const int compute = i32(15), dtype = i32(17);
  const int data = dtype == 1 ? CUDA_R_16BF_ : dtype == 2 ? CUDA_R_16F_ : CUDA_R_32F_;
  const int type = dtype != 0 ? CUBLAS_COMPUTE_32F
                   : compute == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32
                   : compute == 2 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                  : CUBLAS_COMPUTE_32F;
  // cublasLt (argument 16): the host's tuning may ask for the legacy call instead (benchmarks compare).
  if (ltLoaded && i32(16) != 0 && lt.gemm(i32(0), i32(1), i32(2), i32(3), i32(4), (const void*)ptrArg(info[5]), i32(6), i64(7), (const void*)ptrArg(info[8]),
                         i32(9), i64(10), (void*)ptrArg(info[11]), i32(12), i64(13), i32(14), type, data, (void*)blasWorkspace, BLAS_WORKSPACE,
                         stream) == 0)
    return env.Undefined();
  const float one = 1.f, zero = 0.f;
  cublasStatus_t s = blas.gemmStridedBatchedEx(blasHandle, i32(0), i32(1), i32(2), i32(3), i32(4), &one,
      (const void*)ptrArg(info[5]), data, i32(6), i64(7), (const void*)ptrArg(info[8]), data, i32(9), i64(10), &zero,
      (void*)ptrArg(info[11]), data, i32(12), i64(13), i32(14), type, CUBLAS_GEMM_DEFAULT);
  if (s != 0) throw Napi::Error::New(env, std::string("cublasGemmStridedBatchedEx: ") + blas.statusString(s));
  return env.Undefined();
}

// ---- CUDA graphs (captureStep, src/capture.ts) ----
std::vector<CUgraph> graphs;          // by id; null once released
std::vector<CUgraphExec> graphExecs;  // instantiated, by the same id
std::vector<CUgraphNode> graphNodes;  // nodes a capture reported (captureNode), by index

// uploadSync(ptr, data): a synchronous copy outside the stream (an upload while it is captured).
Napi::Value UploadSync(const Napi::CallbackInfo& info) {
  Napi::TypedArray a = info[1].As<Napi::TypedArray>();
  const uint8_t* data = static_cast<const uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset();
  if (a.ByteLength() > 0) check(info.Env(), "cuMemcpyHtoD", cu.cuMemcpyHtoD_(ptrArg(info[0]), data, a.ByteLength()));
  return info.Env().Undefined();
}

// Relaxed mode: the caching allocator may call cuMemAlloc while the stream is captured.
Napi::Value CaptureBegin(const Napi::CallbackInfo& info) {
  check(info.Env(), "cuStreamBeginCapture", cu.cuStreamBeginCapture_(stream, CU_STREAM_CAPTURE_MODE_RELAXED));
  return info.Env().Undefined();
}

// The node the last captured operation became (the capture is a chain: one dependency).
Napi::Value CaptureNode(const Napi::CallbackInfo& info) {
  CUstreamCaptureStatus status;
  cuuint64_t id = 0;
  CUgraph graph = nullptr;
  const CUgraphNode* deps = nullptr;
  const CUgraphEdgeData* edges = nullptr;
  size_t count = 0;
  check(info.Env(), "cuStreamGetCaptureInfo", cu.cuStreamGetCaptureInfo_(stream, &status, &id, &graph, &deps, &edges, &count));
  if (status != CU_STREAM_CAPTURE_STATUS_ACTIVE || count != 1) throw Napi::Error::New(info.Env(), "captureNode: the stream is not capturing a chain of operations");
  graphNodes.push_back(deps[0]);
  return Napi::Number::New(info.Env(), (double)graphNodes.size() - 1);
}

Napi::Value CaptureEnd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CUgraph graph = nullptr;
  check(env, "cuStreamEndCapture", cu.cuStreamEndCapture_(stream, &graph));
  CUgraphExec exec = nullptr;
  CUresult r = cu.cuGraphInstantiate_(&exec, graph, 0);
  if (r != CUDA_SUCCESS) {
    cu.cuGraphDestroy_(graph);
    fail(env, "cuGraphInstantiate", r);
  }
  graphs.push_back(graph);
  graphExecs.push_back(exec);
  return Napi::Number::New(env, (double)graphs.size() - 1);
}

Napi::Value CaptureAbort(const Napi::CallbackInfo& info) {
  CUgraph graph = nullptr;
  if (cu.cuStreamEndCapture_(stream, &graph) == CUDA_SUCCESS && graph) cu.cuGraphDestroy_(graph);
  return info.Env().Undefined();
}

CUgraphExec execArg(const Napi::CallbackInfo& info, int i) {
  const uint32_t id = u32(info, i);
  if (id >= graphExecs.size() || !graphExecs[id]) throw Napi::Error::New(info.Env(), "no such graph");
  return graphExecs[id];
}

Napi::Value GraphLaunch(const Napi::CallbackInfo& info) {
  check(info.Env(), "cuGraphLaunch", cu.cuGraphLaunch_(execArg(info, 0), stream));
  return info.Env().Undefined();
}

// graphSetKernel(graph, node, id, gx, gy, gz, bx, by, bz, sharedBytes, args, offsets).
Napi::Value GraphSetKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CUgraphExec exec = execArg(info, 0);
  const uint32_t node = u32(info, 1), id = u32(info, 2);
  if (node >= graphNodes.size()) throw Napi::Error::New(env, "no such graph node");
  if (id >= functions.size()) throw Napi::Error::New(env, "bad kernel id");
  void* params[64];
  kernelParams(env, info, 10, params);
  CUDA_KERNEL_NODE_PARAMS p{};
  p.func = functions[id];
  p.gridDimX = u32(info, 3);
  p.gridDimY = u32(info, 4);
  p.gridDimZ = u32(info, 5);
  p.blockDimX = u32(info, 6);
  p.blockDimY = u32(info, 7);
  p.blockDimZ = u32(info, 8);
  p.sharedMemBytes = u32(info, 9);
  p.kernelParams = params;
  check(env, "cuGraphExecKernelNodeSetParams", cu.cuGraphExecKernelNodeSetParams_(exec, graphNodes[node], &p));
  return env.Undefined();
}

Napi::Value GraphRelease(const Napi::CallbackInfo& info) {
  CUgraphExec exec = execArg(info, 0);
  const uint32_t id = u32(info, 0);
  cu.cuGraphExecDestroy_(exec);
  cu.cuGraphDestroy_(graphs[id]);
  graphExecs[id] = nullptr;
  graphs[id] = nullptr;
  return info.Env().Undefined();
}

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  exports.Set("init", Napi::Function::New(env, Init));
  exports.Set("fn", Napi::Function::New(env, Function));
  exports.Set("launch", Napi::Function::New(env, Launch));
  exports.Set("tensorMap", Napi::Function::New(env, TensorMap));
  exports.Set("setSharedMemory", Napi::Function::New(env, SetSharedMemory));
  exports.Set("malloc", Napi::Function::New(env, Malloc));
  exports.Set("free", Napi::Function::New(env, Free));
  exports.Set("upload", Napi::Function::New(env, Upload));
  exports.Set("memset32", Napi::Function::New(env, Memset32));
  exports.Set("copy", Napi::Function::New(env, CopyDtoD));
  exports.Set("read", Napi::Function::New(env, Read));
  exports.Set("readSync", Napi::Function::New(env, ReadSync));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize));
  exports.Set("memInfo", Napi::Function::New(env, MemInfo));
  exports.Set("recordEvent", Napi::Function::New(env, RecordEvent));
  exports.Set("elapsed", Napi::Function::New(env, Elapsed));
  exports.Set("releaseEvents", Napi::Function::New(env, ReleaseEvents));
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("uploadSync", Napi::Function::New(env, UploadSync));
  exports.Set("captureBegin", Napi::Function::New(env, CaptureBegin));
  exports.Set("captureNode", Napi::Function::New(env, CaptureNode));
  exports.Set("captureEnd", Napi::Function::New(env, CaptureEnd));
  exports.Set("captureAbort", Napi::Function::New(env, CaptureAbort));
  exports.Set("graphLaunch", Napi::Function::New(env, GraphLaunch));
  exports.Set("graphSetKernel", Napi::Function::New(env, GraphSetKernel));
  exports.Set("graphRelease", Napi::Function::New(env, GraphRelease));
  return exports;
}

}  // namespace

NODE_API_MODULE(sparsegrad_cuda, Module)
