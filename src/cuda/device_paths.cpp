#include "cuda/device_paths.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>

#include "cuda_check.h"

namespace gpt2 {

namespace {

// The oldest GPU gpt2-gen runs on: Turing (T4), the oldest that the tests' emulated devices
// play; nothing older has been checked.
constexpr int kMinComputeCapability = 75;
// bf16: no bf16 arithmetic in hardware before Ampere, and neither cuBLAS's bf16 GemmEx nor the
// kernels' bf16 paths were checked there; fp16 is native there, and more precise.
constexpr int kBf16ComputeCapability = 80;
// griddepcontrol (programmatic dependent launch) exists from Hopper on.
constexpr int kPdlComputeCapability = 90;

std::string cc_text(int cc) { return std::to_string(cc / 10) + "." + std::to_string(cc % 10); }

std::string mib_text(size_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(1 << 20));
  return buf;
}

int attribute(cudaDeviceAttr attr, int device) {
  int v = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, device));
  return v;
}

}  // namespace

DeviceLimits read_device_limits(int device) {
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceLimits d;
  d.name = prop.name;
  d.cc = 10 * attribute(cudaDevAttrComputeCapabilityMajor, device) + attribute(cudaDevAttrComputeCapabilityMinor, device);
  d.sms = attribute(cudaDevAttrMultiProcessorCount, device);
  d.smem_optin = size_t(attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  d.l2_bytes = size_t(attribute(cudaDevAttrL2CacheSize, device));
  d.persisting_l2_max = size_t(attribute(cudaDevAttrMaxPersistingL2CacheSize, device));
  d.max_window = size_t(attribute(cudaDevAttrMaxAccessPolicyWindowSize, device));
  return d;
}

std::string device_refusal(const DeviceLimits& d) {
  if (d.cc >= kMinComputeCapability) return "";
  return "this GPU (" + d.name + ") is compute capability " + cc_text(d.cc) + "; gpt2-gen needs " +
         cc_text(kMinComputeCapability) + " or newer";
}

std::string kernels_refusal(const DeviceLimits& d, cuda::KernelImage* image) {
  std::string reason;
  if (cuda::kernels_loadable(&reason, image)) return "";
  return "this build's CUDA kernels cannot run on " + d.name + " (compute capability " + cc_text(d.cc) +
         "; rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(d.cc) + "): " + reason;
}

std::string dtype_refusal(const DeviceLimits& d, ComputeDType dtype) {
  if (dtype != ComputeDType::BF16 || d.cc >= kBf16ComputeCapability) return "";
  return "--dtype bf16 needs compute capability " + cc_text(kBf16ComputeCapability) + " or newer; this GPU (" +
         d.name + ") is " + cc_text(d.cc) + ": use --dtype fp16 or fp32";
}

std::string kv_dtype_refusal(const DeviceLimits& d, ComputeDType kv_dtype) {
  if (kv_dtype != ComputeDType::BF16 || d.cc >= kBf16ComputeCapability) return "";
  return "--kv-dtype bf16 needs compute capability " + cc_text(kBf16ComputeCapability) + " or newer; this GPU (" +
         d.name + ") is " + cc_text(d.cc) + ": use --kv-dtype fp16, int8 or fp32";
}

DevicePaths choose_device_paths(const DeviceLimits& d, const cuda::KernelImage& image, const CudaVariants& v,
                                size_t lm_head_bytes) {
  DevicePaths p;
  p.prefill_key_tile = cuda::attention_prefill_key_tile(d.smem_optin);

  if (d.cc < kPdlComputeCapability)
    p.pdl_off = "unavailable (needs compute capability " + cc_text(kPdlComputeCapability) + ")";
  else if (image.ptx < kPdlComputeCapability)
    p.pdl_off = "unavailable (the kernels run from compute_" + std::to_string(image.ptx) +
                " code, which has no griddepcontrol; build for " + std::to_string(kPdlComputeCapability) + ")";
  else if (!v.pdl)
    p.pdl_off = "off (GPT2_CUDA_VARIANTS=pdl)";
  p.pdl = p.pdl_off.empty();

  const size_t window = std::min({lm_head_bytes, d.persisting_l2_max, d.max_window, d.l2_bytes / 2});
  if (window == 0)
    p.l2_off = "unavailable (no persisting L2)";
  else if (!v.l2_window)
    p.l2_off = "off (GPT2_CUDA_VARIANTS=l2)";
  else
    p.l2_window = window;
  return p;
}

std::string describe_device_paths(const DeviceLimits& d, const DevicePaths& p) {
  const std::string bf16 = dtype_refusal(d, ComputeDType::BF16);
  return "compute capability " + cc_text(d.cc) + ", " + std::to_string(d.sms) + " SMs: prefill key tile " +
         std::to_string(p.prefill_key_tile) + ", pdl " + (p.pdl ? "on" : p.pdl_off) + ", l2 window " +
         (p.l2_window ? mib_text(p.l2_window) : p.l2_off) + ", bf16 " +
         (bf16.empty() ? "available" : "unavailable (needs compute capability " + cc_text(kBf16ComputeCapability) + ")");
}

}  // namespace gpt2
