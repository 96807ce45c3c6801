// What the CUDA backend does on the GPU it runs on, chosen from that device's compute capability
// and limits, never assumed: which GPUs and dtypes it refuses, the prefill attention's key tile,
// programmatic dependent launch and the l2 variant's persisting window. src/cuda/README.md
// ("What each GPU gets") has the resulting table for T4, A100 and H100.
#pragma once
#include <cstddef>
#include <string>

#include "cuda/cuda_variants.h"
#include "kernels.h"
#include "model/dtype.h"

namespace gpt2 {

// A device's compute capability and limits, as its attributes report them.
struct DeviceLimits {
  std::string name;              // "Tesla T4"
  int cc = 0;                    // compute capability, major * 10 + minor
  int sms = 0;                   // multiprocessors
  size_t smem_optin = 0;         // shared memory a block may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin)
  size_t l2_bytes = 0;           // the L2 cache
  size_t persisting_l2_max = 0;  // the largest persisting L2 set-aside (0: the device has none)
  size_t max_window = 0;         // the largest access-policy window (0: none)
};

// Device `device`'s limits (throws gpt2::Error, file:line, when the runtime cannot say).
DeviceLimits read_device_limits(int device);

// "" when gpt2-gen runs on the device; else why not, in one line ("this GPU (...) is compute
// capability 7.0; gpt2-gen needs 7.5 or newer").
std::string device_refusal(const DeviceLimits& d);

// "" when this build's kernels load on the device, and then `image` (if given) says from what
// code; else why not, in one line.
std::string kernels_refusal(const DeviceLimits& d, cuda::KernelImage* image);

// "" when the CUDA backend computes in `dtype` on the device; else why not and what to use
// instead (bf16 below compute capability 8.0).
std::string dtype_refusal(const DeviceLimits& d, ComputeDType dtype);
// ... and keeps its K/V rings in `kv_dtype` (bf16 below 8.0 as --dtype bf16: not checked there;
// every other (compute, K/V) pair runs everywhere: kernels/README.md "K/V formats").
std::string kv_dtype_refusal(const DeviceLimits& d, ComputeDType kv_dtype);

// The paths chosen for one device (and the variants asked for).
struct DevicePaths {
  int prefill_key_tile = 0;  // attention_prefill's key tile: 64 where its shared memory fits the opt-in, else 32
  bool pdl = false;          // decode kernels launched with programmatic dependent launch
  std::string pdl_off;       // why not, when not
  size_t l2_window = 0;      // bytes of the LM head in the persisting L2 window (0: no window)
  std::string l2_off;        // why none, when none
};

// PDL: asked for (GPT2_CUDA_VARIANTS=pdl), compute capability 9.0 or newer and kernels compiled
// from compute_90 PTX or newer (else pdl_wait() is empty and nothing orders the kernels). The l2
// window: asked for (l2), a device with persisting L2, sized to what it keeps (the LM head's
// first lm_head_bytes) within the set-aside and window limits and half the L2 (the other half
// stays for the layers' weights streaming through it and the l2 variant's prefetches).
DevicePaths choose_device_paths(const DeviceLimits& d, const cuda::KernelImage& image, const CudaVariants& v,
                                size_t lm_head_bytes);

// One line for the summary and --json: "compute capability 9.0, 132 SMs: prefill key tile 64,
// pdl on, l2 window 25.0 MiB, bf16 available".
std::string describe_device_paths(const DeviceLimits& d, const DevicePaths& p);

}  // namespace gpt2
