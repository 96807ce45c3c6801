// cuda-emu: the CUDA runtime API on the CPU: errors, the one emulated device (playing a T4, an
// A100, an H100 or a V100: their limits, DeviceSpec), memory, streams, stream capture into
// graphs, and kernel launches (checked, then run by emu_fibers.cpp). Modules load lazily, as
// CUDA's do by default: a kernel's first use takes memory, and its first launch while a host
// function is queued is refused (load_kernel).
//
// Asynchrony: work issued to a stream (launches, async copies and memsets, cuBLAS, CUB, graph
// launches) is queued and runs only when the host must wait for it: at a synchronisation of its
// stream or the device, or a call that CUDA makes synchronous (cudaMemcpy, a copy into pageable
// memory, cudaFree, cudaFreeHost). So the host reading a result before waiting for it, or
// rewriting a pinned buffer that a queued copy has not read yet, gives wrong results here as it
// can on a GPU. Ordering domains: the legacy stream and every blocking stream form one (the
// legacy stream waits for them and they for it); each non-blocking stream is its own, and
// nothing on the legacy stream waits for it. A copy from pageable memory reads its source
// when issued (CUDA stages it); one from pinned memory when it runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "emu_internal.h"

struct CUstream_st {
  unsigned flags = 0;
};

namespace emu {
namespace {

// The emulated device's memory size: GPT2_EMU_MEMORY_BYTES, else 16 GiB; set_memory_size().
size_t& memory_size() {
  static size_t total = [] {
    const char* v = std::getenv("GPT2_EMU_MEMORY_BYTES");
    return v && *v ? size_t(std::strtoull(v, nullptr, 10)) : size_t(16) << 30;
  }();
  return total;
}
size_t total_memory() { return memory_size(); }

// The GPUs it plays, with the limits their runtime reports (NVIDIA's published figures; the
// persisting L2 maximum is 75% of L2 from Ampere on, none before). Not measured here.
const DeviceSpec kDevices[] = {
    {"t4", "Tesla T4", 7, 5, 40, 64 << 10, 4 << 20, 0, 0},
    {"a100", "NVIDIA A100-SXM4-40GB", 8, 0, 108, 163 << 10, 40 << 20, (40 << 20) / 4 * 3, 134213632},
    {"h100", "NVIDIA H100 80GB HBM3", 9, 0, 132, 227 << 10, 50 << 20, (50 << 20) / 4 * 3, 134213632},
    {"v100", "Tesla V100-SXM2-16GB", 7, 0, 80, 96 << 10, 6 << 20, 0, 0},
};

// The played GPU: GPT2_EMU_DEVICE's (default h100) until select_device().
DeviceSpec& played() {
  static DeviceSpec spec = [] {
    const char* v = std::getenv("GPT2_EMU_DEVICE");
    const DeviceSpec* d = find_device(v && *v ? v : "h100");
    if (!d) {
      std::fprintf(stderr, "cuda-emu: GPT2_EMU_DEVICE=%s is not one of t4, a100, h100, v100\n", v);
      std::exit(2);
    }
    return *d;
  }();
  return spec;
}
int compute_capability() { return 10 * played().major + played().minor; }

// Device memory each kernel's module takes when it is first loaded (lazily, as CUDA loads
// modules by default): a nominal amount, so that memory loading takes shows in cudaMemGetInfo.
constexpr size_t kModuleBytes = 64 << 10;

}  // namespace
namespace {

// Work issued and not yet run, with the ordering domain it belongs to.
struct Pending {
  cudaStream_t domain;
  std::function<void()> op;
  const void* tag = nullptr;  // enqueue_tagged's: where synchronize_until() stops
};

struct State {
  cudaError_t last = cudaSuccess;
  cudaError_t sticky = cudaSuccess;
  std::map<const char*, size_t> device_allocations;  // begin -> bytes
  std::map<const char*, size_t> pinned_allocations;  // cudaHostAlloc: begin -> bytes
  std::vector<Pending> pending;                      // in issue order
  size_t allocated = 0;
  long allocation_calls = 0;  // cudaMalloc / cudaFree / cudaHostAlloc / cudaFreeHost
  std::map<const void*, int> max_dynamic_smem;  // per kernel, cudaFuncSetAttribute
  cudaStream_t capturing = nullptr;             // the stream being captured, if any
  std::vector<std::function<void()>> captured;  // its operations so far
  bool capture_invalidated = false;
  size_t persisting_l2 = 0;  // cudaLimitPersistingL2CacheSize
  LaunchCounts launches;
  std::set<const void*> loaded;     // kernels whose module is loaded
  long queued_host_functions = 0;  // cudaLaunchHostFunc work queued and not yet run
};
State& state() {
  static State s;
  return s;
}

// The ordering domain of a stream: itself when non-blocking, else the legacy stream's (nullptr).
cudaStream_t domain_of(cudaStream_t stream) {
  return stream != nullptr && (stream->flags & cudaStreamNonBlocking) ? stream : nullptr;
}

bool in_range(const std::map<const char*, size_t>& allocations, const void* p, size_t bytes) {
  const char* c = static_cast<const char*>(p);
  auto it = allocations.upper_bound(c);
  if (it == allocations.begin()) return false;
  --it;
  return c >= it->first && c + bytes <= it->first + it->second;
}

}  // namespace

void set_memory_size(size_t bytes) { memory_size() = bytes; }

const DeviceSpec* find_device(const char* key) {
  for (const DeviceSpec& d : kDevices)
    if (key && std::strcmp(key, d.key) == 0) return &d;
  return nullptr;
}
const DeviceSpec& current_device() { return played(); }

void select_device(const DeviceSpec& spec) {
  State& s = state();
  played() = spec;
  s.allocated -= s.loaded.size() * kModuleBytes;
  s.loaded.clear();
  s.max_dynamic_smem.clear();
  s.persisting_l2 = 0;
  s.launches = LaunchCounts{};
}
long allocation_calls() { return state().allocation_calls; }
LaunchCounts launch_counts() { return state().launches; }

void set_last_error(cudaError_t e) {
  if (e != cudaSuccess) state().last = e;
}
void set_sticky_error(cudaError_t e, const std::string& what) {
  std::fprintf(stderr, "cuda-emu: %s\n", what.c_str());
  if (state().sticky == cudaSuccess) state().sticky = e;
}

bool is_device_range(const void* p, size_t bytes) { return in_range(state().device_allocations, p, bytes); }
bool is_pinned_range(const void* p, size_t bytes) { return in_range(state().pinned_allocations, p, bytes); }

namespace {

// Takes out of the queue, in issue order, the work of `domain` (every domain when `all`) up to
// and including the operation tagged `until` (null: to the end), and runs it.
void run_queued(cudaStream_t domain, bool all, const void* until) {
  State& s = state();
  std::vector<Pending> run, keep;
  bool reached = false;
  for (Pending& p : s.pending) {
    const bool mine = !reached && (all || p.domain == domain);
    if (mine && until && p.tag == until) reached = true;
    (mine ? run : keep).push_back(std::move(p));
  }
  s.pending = std::move(keep);
  for (Pending& p : run) {
    if (s.sticky != cudaSuccess) break;  // after a fault the device runs nothing more
    p.op();
  }
}

}  // namespace

void synchronize(cudaStream_t stream, bool all) { run_queued(domain_of(stream), all, nullptr); }
void synchronize_until(cudaStream_t stream, const void* tag) { run_queued(domain_of(stream), false, tag); }

cudaError_t enqueue(cudaStream_t stream, std::function<void()> op) { return enqueue_tagged(stream, std::move(op), nullptr); }

cudaError_t enqueue_tagged(cudaStream_t stream, std::function<void()> op, const void* tag) {
  State& s = state();
  if (s.sticky != cudaSuccess) return s.sticky;
  if (s.capturing != nullptr) {
    if (stream == s.capturing) {
      s.captured.push_back(std::move(op));
      return cudaSuccess;
    }
    if (stream == nullptr) {  // the legacy stream synchronises with the one being captured
      s.capture_invalidated = true;
      return cudaErrorStreamCaptureImplicit;
    }
  }
  s.pending.push_back({domain_of(stream), std::move(op), tag});
  return s.sticky;
}

namespace {

// Loads a kernel's module on its first use (a launch, cudaFuncGetAttributes, cudaFuncSetAttribute).
// CUDA may synchronise the context to load one; a host function still queued may be waiting for
// the host (--profile's stream gate waits until the host has enqueued the whole step), and the
// host is waiting for the load: a deadlock on a GPU. So a first launch then is refused.
bool load_kernel(const void* key, bool launching) {
  State& s = state();
  if (s.loaded.count(key)) return true;
  if (launching && s.queued_host_functions > 0) {
    set_sticky_error(cudaErrorLaunchFailure,
                     "the first launch of a kernel while a host function is queued: its lazy loading may synchronise "
                     "the context, which waits for the host function (a deadlock if that waits for the host); load "
                     "every kernel before (launch it once, or cudaFuncGetAttributes)");
    return false;
  }
  s.loaded.insert(key);
  s.allocated += kModuleBytes;
  return true;
}

}  // namespace

void submit_kernel(const LaunchSpec& spec, std::function<void()> body) {
  State& s = state();
  if (!load_kernel(spec.key, true)) {
    set_last_error(cudaErrorLaunchFailure);
    return;
  }
  const unsigned long threads = (unsigned long)spec.block.x * spec.block.y * spec.block.z;
  auto limit = s.max_dynamic_smem.find(spec.key);
  const size_t smem_limit = limit == s.max_dynamic_smem.end() ? 48 * 1024 : size_t(limit->second);
  if (threads == 0 || threads > 1024 || spec.block.z > 64 || spec.grid.x == 0 || spec.grid.y == 0 ||
      spec.grid.z == 0 || spec.grid.x > 2147483647u || spec.grid.y > 65535 || spec.grid.z > 65535) {
    set_last_error(cudaErrorInvalidConfiguration);
    return;
  }
  if (spec.smem > smem_limit) {  // over 48 KB needs cudaFuncSetAttribute first
    set_last_error(cudaErrorInvalidValue);
    return;
  }
  s.launches.largest_smem = std::max(s.launches.largest_smem, spec.smem);
  const cudaError_t e = enqueue(spec.stream, [spec, body] {
    std::string error;
    if (!run_grid(spec, body, &error)) set_sticky_error(cudaErrorLaunchFailure, "kernel launch failed: " + error);
  });
  set_last_error(e);
}

cudaError_t check_launch_attributes(const cudaLaunchAttribute* attrs, unsigned int n) {
  LaunchCounts& counts = state().launches;
  for (unsigned int i = 0; i < n; ++i) {
    if (attrs[i].id == cudaLaunchAttributeProgrammaticStreamSerialization) {
      if (compute_capability() < 90) return cudaErrorInvalidValue;
      ++counts.pdl_launches;
      continue;
    }
    const cudaAccessPolicyWindow& w = attrs[i].val.accessPolicyWindow;
    if (w.num_bytes > size_t(played().max_window) || !(w.hitRatio >= 0.0f && w.hitRatio <= 1.0f) ||
        !is_device_range(w.base_ptr, w.num_bytes))
      return cudaErrorInvalidValue;
    ++counts.window_launches;
    counts.largest_window = std::max(counts.largest_window, w.num_bytes);
  }
  return cudaSuccess;
}

cudaError_t func_get_attributes(cudaFuncAttributes* attr, const void* key) {
  if (!attr || !key) return cudaErrorInvalidDeviceFunction;
  load_kernel(key, false);
  std::memset(attr, 0, sizeof(*attr));
  attr->maxThreadsPerBlock = 1024;
  auto it = state().max_dynamic_smem.find(key);
  attr->maxDynamicSharedSizeBytes = it == state().max_dynamic_smem.end() ? 48 * 1024 : it->second;
  attr->binaryVersion = compute_capability();
  attr->ptxVersion = played().ptx ? played().ptx : compute_capability();
  return cudaSuccess;
}

cudaError_t func_set_attribute(const void* key, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > played().smem_optin)
    return cudaErrorInvalidValue;
  load_kernel(key, false);
  state().max_dynamic_smem[key] = value;
  return cudaSuccess;
}

}  // namespace emu

using emu::state;

// ---- errors -------------------------------------------------------------------------------------
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorUnsupportedLimit: return "cudaErrorUnsupportedLimit";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (cuda-emu: see its message above)";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    default: return cudaGetErrorName(e);
  }
}
cudaError_t cudaGetLastError() {
  auto& s = state();
  if (s.sticky != cudaSuccess) return s.sticky;
  const cudaError_t e = s.last;
  s.last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return state().sticky != cudaSuccess ? state().sticky : state().last; }

// ---- devices ------------------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? state().sticky : cudaErrorInvalidDevice; }
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return state().sticky;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  std::memset(prop, 0, sizeof(*prop));
  const emu::DeviceSpec& spec = emu::played();
  std::snprintf(prop->name, sizeof(prop->name), "cuda-emu as %s", spec.name);
  prop->totalGlobalMem = emu::total_memory();
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = size_t(spec.smem_optin);
  prop->major = spec.major;
  prop->minor = spec.minor;
  prop->multiProcessorCount = spec.sms;
  prop->maxThreadsPerBlock = 1024;
  prop->warpSize = 32;
  prop->l2CacheSize = spec.l2_bytes;
  prop->persistingL2CacheMaxSize = spec.persisting_l2_max;
  prop->accessPolicyMaxWindowSize = spec.max_window;
  return cudaSuccess;
}
cudaError_t cudaDeviceSetLimit(cudaLimit limit, size_t value) {
  const emu::DeviceSpec& d = emu::played();
  if (limit != cudaLimitPersistingL2CacheSize) return cudaErrorInvalidValue;
  if (d.persisting_l2_max == 0 || d.refuses_set_aside) return cudaErrorUnsupportedLimit;
  if (value > size_t(d.persisting_l2_max)) return cudaErrorInvalidValue;
  state().persisting_l2 = value;
  return state().sticky;
}
cudaError_t cudaDeviceGetLimit(size_t* value, cudaLimit limit) {
  if (limit != cudaLimitPersistingL2CacheSize) return cudaErrorInvalidValue;
  *value = state().persisting_l2;
  return state().sticky;
}
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  const emu::DeviceSpec& d = emu::played();
  switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = d.sms; return cudaSuccess;
    case cudaDevAttrL2CacheSize: *value = d.l2_bytes; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = d.major; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = d.minor; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = d.smem_optin; return cudaSuccess;
    case cudaDevAttrMaxPersistingL2CacheSize: *value = d.persisting_l2_max; return cudaSuccess;
    case cudaDevAttrMaxAccessPolicyWindowSize: *value = d.max_window; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
cudaError_t cudaDeviceSynchronize() {
  if (state().capturing) return cudaErrorStreamCaptureUnsupported;
  emu::synchronize(nullptr, true);
  return state().sticky;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = emu::total_memory();
  *free_bytes = *total_bytes - std::min(*total_bytes, state().allocated);
  return state().sticky;
}

// ---- memory -------------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** p, size_t bytes) {
  auto& s = state();
  ++s.allocation_calls;
  if (s.sticky != cudaSuccess) return s.sticky;
  if (bytes > emu::total_memory() - std::min(emu::total_memory(), s.allocated)) {
    *p = nullptr;
    s.last = cudaErrorMemoryAllocation;
    return cudaErrorMemoryAllocation;
  }
  // Exactly `bytes` (under ASan, one byte past the end is caught), 256-byte aligned as cudaMalloc's.
  void* raw = nullptr;
  if (posix_memalign(&raw, 256, bytes == 0 ? 1 : bytes) != 0) return cudaErrorMemoryAllocation;
  char* m = static_cast<char*>(raw);
  // GPU memory starts with whatever was there: 0xFF bytes (NaN, and counters far from zero)
  // make a read of memory nothing has written show, as compute-sanitizer initcheck would.
  std::memset(m, 0xFF, bytes);
  s.device_allocations[m] = bytes;
  s.allocated += bytes;
  *p = m;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  auto& s = state();
  ++s.allocation_calls;
  if (p == nullptr) return s.sticky;
  auto it = s.device_allocations.find(static_cast<const char*>(p));
  if (it == s.device_allocations.end()) return cudaErrorInvalidDevicePointer;
  emu::synchronize(nullptr, true);  // cudaFree waits for the device: queued work may use p
  s.allocated -= it->second;
  s.device_allocations.erase(it);
  std::free(p);
  return s.sticky;
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int) {
  ++state().allocation_calls;
  *p = std::malloc(bytes == 0 ? 1 : bytes);
  if (!*p) return cudaErrorMemoryAllocation;
  state().pinned_allocations[static_cast<const char*>(*p)] = bytes;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void* p) {
  ++state().allocation_calls;
  if (p == nullptr) return cudaSuccess;
  auto& pinned = state().pinned_allocations;
  auto it = pinned.find(static_cast<const char*>(p));
  if (it == pinned.end()) return cudaErrorInvalidValue;
  emu::synchronize(nullptr, true);  // like cudaFree, it waits for the device
  pinned.erase(it);
  std::free(p);
  return cudaSuccess;
}

namespace {
// The device side of a copy must lie inside one allocation (the GPU would fault or corrupt).
cudaError_t check_copy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind > cudaMemcpyDefault) return cudaErrorInvalidMemcpyDirection;
  if ((dst_dev && !emu::is_device_range(dst, bytes)) || (src_dev && !emu::is_device_range(src, bytes))) {
    emu::set_sticky_error(cudaErrorIllegalAddress, "cudaMemcpy of " + std::to_string(bytes) +
                                                        " bytes reaches outside its device allocation");
    return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}

// Queues a copy on `stream` with CUDA's host-memory rules: a pageable source is read now (CUDA
// stages it before returning); a pageable destination makes the copy synchronous.
cudaError_t copy_on(cudaStream_t stream, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool src_pageable = kind == cudaMemcpyHostToDevice && !emu::is_pinned_range(src, bytes);
  const bool dst_pageable = kind == cudaMemcpyDeviceToHost && !emu::is_pinned_range(dst, bytes);
  cudaError_t e;
  const bool captured = stream != nullptr && state().capturing == stream;  // recorded: runs at each launch
  if (src_pageable && !captured) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    e = emu::enqueue(stream, [=] {
      if (bytes) std::memcpy(dst, staged->data(), bytes);
    });
  } else {
    e = emu::enqueue(stream, [=] {
      if (bytes) std::memmove(dst, src, bytes);
    });
  }
  if (e == cudaSuccess && dst_pageable && !captured) {
    emu::synchronize(stream, false);
    return state().sticky;
  }
  return e;
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (state().capturing) return cudaErrorStreamCaptureImplicit;
  if (const cudaError_t e = check_copy(dst, src, bytes, kind)) return e;
  emu::synchronize(nullptr, false);  // "a stream sync is performed before the copy"
  if (state().sticky) return state().sticky;
  const cudaError_t e = copy_on(nullptr, dst, src, bytes, kind);
  // From pinned memory, or device to device, cudaMemcpy returns when the copy is done.
  if (kind != cudaMemcpyHostToDevice || emu::is_pinned_range(src, bytes)) emu::synchronize(nullptr, false);
  return e != cudaSuccess ? e : state().sticky;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  if (const cudaError_t e = check_copy(dst, src, bytes, kind)) return e;
  return copy_on(s, dst, src, bytes, kind);
}
// cudaMemset on device memory is asynchronous to the host, on the legacy stream.
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (state().capturing) return cudaErrorStreamCaptureImplicit;
  return cudaMemsetAsync(p, value, bytes, nullptr);
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  if (!emu::is_device_range(p, bytes)) return cudaErrorInvalidValue;
  return emu::enqueue(s, [=] { std::memset(p, value, bytes); });
}

// ---- streams and graphs -------------------------------------------------------------------------
struct CUgraph_st {
  std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
  std::shared_ptr<const std::vector<std::function<void()>>> ops;
};

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  *s = new CUstream_st{flags};
  return state().sticky;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (state().capturing == s) return cudaErrorStreamCaptureUnsupported;
  if (s == nullptr) return cudaErrorInvalidResourceHandle;
  emu::synchronize(s, false);  // its queued work still runs (CUDA frees the stream after it)
  delete s;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  if (state().capturing && (s == state().capturing || s == nullptr)) return cudaErrorStreamCaptureUnsupported;
  emu::synchronize(s, false);
  return state().sticky;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  auto& st = state();
  if (s == nullptr) return cudaErrorStreamCaptureUnsupported;  // the legacy stream cannot be captured
  if (st.capturing) return cudaErrorStreamCaptureUnsupported;
  st.capturing = s;
  st.captured.clear();
  st.capture_invalidated = false;
  return st.sticky;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  auto& st = state();
  if (st.capturing != s) return cudaErrorInvalidValue;
  st.capturing = nullptr;
  if (st.capture_invalidated) {
    *graph = nullptr;
    st.captured.clear();
    return cudaErrorStreamCaptureInvalidated;
  }
  *graph = new CUgraph_st{std::move(st.captured)};
  st.captured.clear();
  return st.sticky;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!graph) return cudaErrorInvalidValue;
  *exec = new CUgraphExec_st{std::make_shared<const std::vector<std::function<void()>>>(graph->ops)};
  return state().sticky;
}
cudaError_t cudaGraphUpload(cudaGraphExec_t exec, cudaStream_t) { return exec ? state().sticky : cudaErrorInvalidValue; }
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return cudaErrorInvalidValue;
  if (state().capturing) return cudaErrorStreamCaptureUnsupported;
  ++state().launches.graph_launches;
  return emu::enqueue(s, [ops = exec->ops] {
    for (const auto& op : *ops) {
      if (state().sticky) break;
      op();
    }
  });
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}

// ---- events and host functions ------------------------------------------------------------------
// The event's state is shared with the operations that record it, so destroying an event whose
// record is still queued is safe (CUDA too releases it when the record has run).
struct CUevent_st {
  struct Mark {
    bool done = false;  // its last record has run
    std::chrono::steady_clock::time_point when;
  };
  std::shared_ptr<Mark> mark = std::make_shared<Mark>();
  cudaStream_t stream = nullptr;  // of its last record
  bool timing = true;             // cudaEventDisableTiming: cudaEventElapsedTime refuses it
};

cudaError_t cudaEventCreate(cudaEvent_t* e) {
  *e = new CUevent_st;
  return state().sticky;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags) {
  if (flags & ~unsigned(cudaEventDisableTiming)) return cudaErrorInvalidValue;  // gpt2-gen asks for no other
  *e = new CUevent_st;
  (*e)->timing = !(flags & cudaEventDisableTiming);
  return state().sticky;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  if (!e) return cudaErrorInvalidResourceHandle;
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  if (!e) return cudaErrorInvalidResourceHandle;
  if (state().capturing) return cudaErrorStreamCaptureUnsupported;  // gpt2-gen never records one in a graph
  e->mark = std::make_shared<CUevent_st::Mark>();
  e->stream = s;
  return emu::enqueue_tagged(
      s,
      [mark = e->mark] {
        mark->when = std::chrono::steady_clock::now();
        mark->done = true;
      },
      e->mark.get());
}
// Waits for the event's last record. A GPU may have run any amount of the work queued after it
// by then, so the emulator alternates the two extremes: odd calls run the stream only up to the
// record, even calls run everything queued on it (host code reading what a later operation
// overwrites, or relying on work after the event, fails one of the two).
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  if (!e) return cudaErrorInvalidResourceHandle;
  if (state().capturing) return cudaErrorStreamCaptureUnsupported;
  if (++state().launches.event_waits % 2 == 1)
    emu::synchronize_until(e->stream, e->mark.get());
  else
    emu::synchronize(e->stream, false);
  return state().sticky;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start || !end) return cudaErrorInvalidResourceHandle;
  if (!start->timing || !end->timing) return cudaErrorInvalidResourceHandle;
  if (!start->mark->done || !end->mark->done) return cudaErrorNotReady;
  *ms = std::chrono::duration<float, std::milli>(end->mark->when - start->mark->when).count();
  return state().sticky;
}
cudaError_t cudaLaunchHostFunc(cudaStream_t s, cudaHostFn_t fn, void* user_data) {
  if (!fn) return cudaErrorInvalidValue;
  if (s != nullptr && state().capturing == s)
    return emu::enqueue(s, [fn, user_data] { fn(user_data); });  // recorded: runs at each graph launch
  const cudaError_t e = emu::enqueue(s, [fn, user_data] {
    --state().queued_host_functions;
    fn(user_data);
  });
  if (e == cudaSuccess) ++state().queued_host_functions;
  return e;
}
