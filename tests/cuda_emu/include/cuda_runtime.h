// cuda-emu: the subset of the CUDA runtime that gpt2-gen uses, implemented on the CPU, so that
// the real kernel sources (kernels/*.cu, rewritten by rewrite_cu.py) and the real host driver
// (src/cuda/backend_cuda.cpp) run in CI on a machine without a GPU. Not a GPU model: it checks what
// the code computes, its barriers and warp shuffles, its launch configurations, its stream
// capture and (under ASan) its memory accesses; never speed, the memory model or real races.
//
// Execution model: the blocks of a grid run one after the other (consecutive launches alternate
// forward and reversed block and thread orders); the threads of a block are
// fibers (one stack each) on one OS thread, switched only at __syncthreads() and warp shuffles.
// A barrier is released when every thread of the block that has not exited waits at it, a
// shuffle when all 32 lanes of the warp are at it; anything else (a barrier some threads skip,
// a shuffle with exited lanes) stops the launch with an error, like a hang would on a GPU.
// Launches, async copies and memsets are queued on their stream and run when the host waits
// for them (a stream or device synchronisation, or a call CUDA makes synchronous), so a result
// read too early is wrong here too; while their stream is being captured they are recorded, and
// run when the graph is launched and waited for. Details in emu_runtime.cpp.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- CUDA C++ keywords ----------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Shared memory: one static object per kernel function, which is one per block because blocks
// run one at a time. (extern __shared__ arrays are rewritten into emu::dynamic_shared_memory().)
#define __shared__ static

// ---- vector types -----------------------------------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// The built-in variables of the running thread (set by the scheduler before it resumes a fiber).
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;

// ---- errors -----------------------------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorUnsupportedLimit = 215,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorNotReady = 600,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
};
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();

// ---- devices ----------------------------------------------------------------------------------
struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerBlock;
  int warpSize;
  int l2CacheSize;                // the played GPU's (the emulation models no cache)
  int persistingL2CacheMaxSize;   // the largest persisting set-aside cudaDeviceSetLimit accepts (0: none)
  int accessPolicyMaxWindowSize;  // the largest access-policy window (0: none)
};
// CUDA's values, for the attributes gpt2-gen reads.
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrL2CacheSize = 38,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
  cudaDevAttrMaxPersistingL2CacheSize = 108,
  cudaDevAttrMaxAccessPolicyWindowSize = 109,
};
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int d);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int d);
cudaError_t cudaDeviceSynchronize();
// Only the persisting L2 set-aside: recorded; refused above persistingL2CacheMaxSize, and with
// cudaErrorUnsupportedLimit on a GPU without persisting L2 (as before Ampere) or one that refuses it.
enum cudaLimit { cudaLimitPersistingL2CacheSize = 0x06 };
cudaError_t cudaDeviceSetLimit(cudaLimit limit, size_t value);
cudaError_t cudaDeviceGetLimit(size_t* value, cudaLimit limit);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);

// ---- memory -----------------------------------------------------------------------------------
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4
};
constexpr unsigned int cudaHostAllocDefault = 0;
typedef struct CUstream_st* cudaStream_t;
cudaError_t cudaMalloc(void** p, size_t bytes);
cudaError_t cudaFree(void* p);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);

// ---- streams and graphs -------------------------------------------------------------------------
constexpr unsigned int cudaStreamDefault = 0, cudaStreamNonBlocking = 1;
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2
};
typedef struct CUgraph_st* cudaGraph_t;
typedef struct CUgraphExec_st* cudaGraphExec_t;
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphUpload(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);

// ---- events and host functions --------------------------------------------------------------------
// An event records the host's steady clock when its stream reaches it (the times say nothing
// about a GPU, but their order and plumbing are real). A host function runs in stream order.
typedef struct CUevent_st* cudaEvent_t;
cudaError_t cudaEventCreate(cudaEvent_t* e);
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
#define CUDART_CB
typedef void (*cudaHostFn_t)(void* user_data);
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* user_data);

// ---- functions and launches ---------------------------------------------------------------------
struct cudaFuncAttributes {
  size_t sharedSizeBytes;
  int maxThreadsPerBlock;
  int maxDynamicSharedSizeBytes;
  int numRegs;
  int binaryVersion, ptxVersion;
};
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaLaunchAttributeID {
  cudaLaunchAttributeAccessPolicyWindow = 1,
  cudaLaunchAttributeProgrammaticStreamSerialization = 5
};
enum cudaAccessProperty { cudaAccessPropertyNormal = 0, cudaAccessPropertyStreaming = 1, cudaAccessPropertyPersisting = 2 };
struct cudaAccessPolicyWindow {
  void* base_ptr;
  size_t num_bytes;
  float hitRatio;
  cudaAccessProperty hitProp;
  cudaAccessProperty missProp;
};
union cudaLaunchAttributeValue {
  char pad[64];
  cudaAccessPolicyWindow accessPolicyWindow;
  int programmaticStreamSerializationAllowed;
};
struct cudaLaunchAttribute {
  cudaLaunchAttributeID id;
  cudaLaunchAttributeValue val;
};
struct cudaLaunchConfig_t {
  dim3 gridDim;
  dim3 blockDim;
  size_t dynamicSmemBytes;
  cudaStream_t stream;
  cudaLaunchAttribute* attrs;
  unsigned int numAttrs;
};

namespace emu {

// The GPU the emulator plays: its name, compute capability and limits as cudaGetDeviceProperties
// and cudaDeviceGetAttribute report them, enforced where a driver enforces them (the opt-in
// shared memory in cudaFuncSetAttribute, the persisting L2 set-aside, the access-policy window;
// programmatic dependent launch needs 9.0 here). Chosen by GPT2_EMU_DEVICE (find_device's keys;
// default h100) or select_device(). Its memory is set_memory_size()'s, whatever it plays.
struct DeviceSpec {
  const char* key;        // its GPT2_EMU_DEVICE name
  const char* name;       // the real GPU's name (the emulated one is "cuda-emu as <name>")
  int major, minor;       // compute capability
  int sms;                // multiprocessors
  int smem_optin;         // shared memory per block with the opt-in (cudaFuncSetAttribute's limit)
  int l2_bytes;           // L2 cache
  int persisting_l2_max;  // the largest persisting L2 set-aside (0: none)
  int max_window;         // the largest access-policy window (0: none)
  // The code the kernels run from, as cudaFuncGetAttributes' ptxVersion reports it (0: machine
  // code built for this GPU, ptxVersion = binaryVersion = major * 10 + minor; less: a build
  // without code for it, JIT-compiled from that older PTX).
  int ptx = 0;
  bool refuses_set_aside = false;  // cudaDeviceSetLimit refuses the set-aside (as under MPS or MIG)
};
// The GPUs it plays: t4, a100, h100, v100 (compute capability 7.0: below what gpt2-gen runs
// on). Null for another key.
const DeviceSpec* find_device(const char* key);
// Plays `spec` from now on, as a fresh context on that GPU would be: no kernel loaded, no
// function attribute or persisting set-aside, no launch counted.
void select_device(const DeviceSpec& spec);
const DeviceSpec& current_device();

// Identifies a kernel by its address (the key of its attributes).
template <typename F>
const void* function_key(F* f) { return reinterpret_cast<const void*>(f); }

cudaError_t func_get_attributes(cudaFuncAttributes* attr, const void* key);
cudaError_t func_set_attribute(const void* key, cudaFuncAttribute attr, int value);

struct LaunchSpec {
  dim3 grid, block;
  size_t smem = 0;
  cudaStream_t stream = nullptr;
  const void* key = nullptr;
};
// Checks the configuration (the error is returned by the next cudaGetLastError), then runs the
// kernel body once per thread of every block, or records it when `stream` is being captured.
void submit_kernel(const LaunchSpec& spec, std::function<void()> body);

// cudaLaunchKernelEx's attributes: an access-policy window must lie in one device allocation,
// within accessPolicyMaxWindowSize, with a hit ratio in [0, 1], and programmatic dependent launch
// needs compute capability 9.0 (else cudaErrorInvalidValue; a driver may ignore the attribute
// instead, but then nothing orders the kernels as the code expects). Counted in LaunchCounts;
// neither changes what the emulator runs.
cudaError_t check_launch_attributes(const cudaLaunchAttribute* attrs, unsigned int n);

// What kernel<<<grid, block, smem, stream>>>(args...) becomes after rewrite_cu.py.
class Launch {
 public:
  Launch(dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr) : spec_{grid, block, smem, stream, nullptr} {}
  template <typename... Params, typename... Args>
  void run(void (*kernel)(Params...), Args&&... args) {
    static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong number of arguments");
    spec_.key = function_key(kernel);
    // The parameters are copied at launch, converted to the kernel's parameter types, as CUDA does.
    auto params = std::make_shared<std::tuple<std::decay_t<Params>...>>(std::forward<Args>(args)...);
    submit_kernel(spec_, [kernel, params] { std::apply(kernel, *params); });
  }

 private:
  LaunchSpec spec_;
};

// The block's dynamic shared memory (extern __shared__), fresh for each block and filled with
// 0xFF bytes (NaN), so a read before any write shows.
void* dynamic_shared_memory();

// The emulated device's memory (default 16 GiB, or GPT2_EMU_MEMORY_BYTES): tests set it small
// to reach the out-of-memory paths.
void set_memory_size(size_t bytes);

// How many cudaMalloc, cudaFree, cudaHostAlloc and cudaFreeHost calls the process has made
// (tests check that generating tokens makes none).
long allocation_calls();

// How many graphs the process has launched and how many times it waited for an event (tests
// check that launch-ahead queues each step before waiting for the one before it); how many
// kernels were launched (or captured) with programmatic dependent launch and with an L2
// access-policy window, the largest such window, and the largest dynamic shared memory a launch
// asked for.
struct LaunchCounts {
  long graph_launches = 0;
  long event_waits = 0;
  long pdl_launches = 0;
  long window_launches = 0;
  size_t largest_window = 0;
  size_t largest_smem = 0;
};
LaunchCounts launch_counts();

// Warp and block synchronisation points of the running fiber.
void syncthreads();
uint64_t shuffle(unsigned mask, uint64_t bits, int src_lane);
// One exchange round of the warp: publishes this lane's `bits` and returns the warp's 32 slots
// once every lane has published. `*last` is set for the lane that arrived last: it runs on
// before the others resume, so it may overwrite the slots with per-lane results that the others
// then read (until their next exchange, the slots are theirs).
uint64_t* warp_exchange(unsigned mask, uint64_t bits, bool* last);
int lane_id();

// kernels/device_common.cuh's warp_reduce: the butterfly of five __shfl_xor_sync rounds
// (round o: lane l takes op(own, lane l^o's)), in one exchange instead of five. The last lane
// to arrive runs the five rounds for all 32 lanes, in the shuffles' order, so every lane gets
// bitwise what the shuffles give, for a fifth of the fiber switches (the emulator's main cost).
template <typename Op>
float warp_butterfly(float v) {
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof v);
  bool last = false;
  uint64_t* slots = warp_exchange(0xffffffffu, bits, &last);
  if (last) {
    float x[32], y[32];
    for (int l = 0; l < 32; ++l) std::memcpy(&x[l], &slots[l], sizeof(float));
    for (int o = 16; o > 0; o >>= 1) {
      for (int l = 0; l < 32; ++l) y[l] = Op()(x[l], x[l ^ o]);
      std::memcpy(x, y, sizeof x);
    }
    for (int l = 0; l < 32; ++l) std::memcpy(&slots[l], &x[l], sizeof(float));
  }
  float out;
  std::memcpy(&out, &slots[lane_id()], sizeof out);
  return out;
}

}  // namespace emu

template <typename... Params, typename... Args>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* config, void (*kernel)(Params...), Args&&... args) {
  // Launch attributes (programmatic dependent launch, an L2 access-policy window) change only
  // when a kernel may start and what L2 keeps; with kernels run one after the other they have no
  // effect beyond their checks.
  const cudaError_t e = emu::check_launch_attributes(config->attrs, config->numAttrs);
  if (e != cudaSuccess) return e;
  emu::Launch(config->gridDim, config->blockDim, config->dynamicSmemBytes, config->stream)
      .run(kernel, std::forward<Args>(args)...);
  return cudaPeekAtLastError();
}
template <typename F>
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* attr, F* kernel) {
  return emu::func_get_attributes(attr, emu::function_key(kernel));
}
template <typename F>
cudaError_t cudaFuncSetAttribute(F* kernel, cudaFuncAttribute attr, int value) {
  return emu::func_set_attribute(emu::function_key(kernel), attr, value);
}

// ---- device intrinsics ---------------------------------------------------------------------------
inline void __syncthreads() { emu::syncthreads(); }
inline void __threadfence() {}

template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type wider than 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const int lane = emu::lane_id();
  const int src = (lane & ~(width - 1)) | ((lane ^ lane_mask) & (width - 1));
  bits = emu::shuffle(mask, bits, src);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

template <typename T> T __ldg(const T* p) { return *p; }
template <typename T> T __ldcg(const T* p) { return *p; }
inline float __uint_as_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline unsigned int __float_as_uint(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }

// Atomics: the fibers run on one OS thread and switch only at barriers, so a plain
// read-modify-write is atomic here.
template <typename T> T atomicAdd(T* p, T v) { const T old = *p; *p = old + v; return old; }
template <typename T> T atomicMax(T* p, T v) { const T old = *p; *p = old > v ? old : v; return old; }
template <typename T> T atomicExch(T* p, T v) { const T old = *p; *p = v; return old; }

// CUDA's overloaded min / max for device code.
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
