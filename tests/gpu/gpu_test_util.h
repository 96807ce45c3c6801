// Helpers for the `gpu` tests: skipping where no device exists, device buffers in the compute
// dtypes, host rounding to those dtypes, poisoning and the normalized MSE measure.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cuda/backend_cuda.h"
#include "cuda_check.h"
#include "kernels.h"
#include "test_support.h"

namespace gpt2::test {

// True when a usable CUDA device exists; the reason otherwise (cached).
inline bool have_gpu(std::string* why = nullptr) {
  static std::string reason;
  static const bool ok = cuda_device_usable(&reason);
  if (why) *why = reason;
  return ok;
}

#define GPT2_SKIP_WITHOUT_GPU()                                                       \
  do {                                                                                \
    std::string gpt2_why_;                                                            \
    if (!::gpt2::test::have_gpu(&gpt2_why_)) GTEST_SKIP() << "no usable CUDA device: " << gpt2_why_; \
  } while (0)

// quick() and quick_or(): test_support.h.

// ---- host rounding to a dtype ----------------------------------------------------------------
// By the CUDA headers' own host conversions (NVIDIA's, or on cuda-emu the compiler's _Float16 and
// tests/ieee_reference.h), not by src/base/half.h, the code under test.
template <typename T> inline float round_to(float v);
template <> inline float round_to<float>(float v) { return v; }
template <> inline float round_to<__half>(float v) { return __half2float(__float2half_rn(v)); }
template <> inline float round_to<__nv_bfloat16>(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

template <typename T> inline void host_store(float v, T* dst);
template <> inline void host_store<float>(float v, float* dst) { *dst = v; }
template <> inline void host_store<__half>(float v, __half* dst) { *dst = __float2half_rn(v); }
template <> inline void host_store<__nv_bfloat16>(float v, __nv_bfloat16* dst) { *dst = __float2bfloat16_rn(v); }
template <typename T> inline float host_load(const T& v);
template <> inline float host_load<float>(const float& v) { return v; }
template <> inline float host_load<__half>(const __half& v) { return __half2float(v); }
template <> inline float host_load<__nv_bfloat16>(const __nv_bfloat16& v) { return __bfloat162float(v); }

template <> inline float host_load<int>(const int& v) { return float(v); }  // token ids: exact below 2^24

template <typename T> const char* dtype_label() { return compute_dtype_name(cuda::ComputeType<T>::dtype); }

// The project's tolerances: normalized MSE <= 1e-10 in fp32, <= 5e-4 in fp16 / bf16.
template <typename T> inline double nmse_tolerance() { return sizeof(T) == 4 ? 1e-10 : 5e-4; }

// ---- device buffers ------------------------------------------------------------------------
template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) { CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), std::max<size_t>(n, 1) * sizeof(T))); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }

  // Uploads fp32 values rounded to T.
  void upload(const std::vector<float>& v) {
    std::vector<T> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) host_store<T>(v[i], &h[i]);
    CUDA_CHECK(cudaMemcpy(p_, h.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<float> download() const {
    std::vector<T> h(n_);
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> v(n_);
    for (size_t i = 0; i < n_; ++i) v[i] = host_load<T>(h[i]);
    return v;
  }
  // All bytes 0xFF: NaN in fp32, fp16 and bf16, so an unwritten element fails the comparison.
  void poison() { CUDA_CHECK(cudaMemset(p_, 0xFF, n_ * sizeof(T))); }

 private:
  T* p_ = nullptr;
  size_t n_;
};

// ---- random data ---------------------------------------------------------------------------
inline std::vector<float> random_vector(size_t n, std::mt19937& rng, float scale = 1.0f, float mean = 0.0f) {
  std::normal_distribution<float> d(mean, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}
// The values T can hold (so the CPU reference sees exactly what the GPU reads).
template <typename T>
inline std::vector<float> rounded(std::vector<float> v) {
  for (float& x : v) x = round_to<T>(x);
  return v;
}

// sum (a - b)^2 / sum b^2; infinite if `a` holds a NaN or Inf (an unwritten, poisoned element).
inline double nmse(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den > 0 ? num / den : num;
}
inline double nmse(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  return nmse(a.data(), b.data(), std::min(a.size(), b.size()));
}

}  // namespace gpt2::test
