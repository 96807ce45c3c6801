// Fused bias + gelu_new after the MLP's first product (prefill / --no-cache path).
//
//   x[t, j] = gelu_new(x[t, j] + bias[j]),  gelu_new(v) = 0.5 v (1 + tanh(sqrt(2/pi)(v + 0.044715 v^3)))
//   x (n, H) in T, in place; bias (H) fp32 or null.
//
// Thread layout: a grid-stride loop over the n*H elements, 256 threads per block, at most 4096
// blocks (the loop covers the rest).
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int kThreads = 256;

// CUDA kernels -------------------------------------------------------------------------------

template <typename T>
__global__ void bias_gelu_kernel(T* __restrict__ x, const float* __restrict__ bias, long total, int H) {
  for (long i = long(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += long(gridDim.x) * blockDim.x) {
    const float v = to_f32(x[i]) + (bias ? bias[i % H] : 0.0f);
    x[i] = from_f32<T>(gelu_new(v));
  }
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void bias_gelu(T* x, const float* bias, int n, int H, cudaStream_t stream) {
  const long total = long(n) * H;
  const int blocks = ceil_div(total, kThreads) < 4096 ? ceil_div(total, kThreads) : 4096;
  bias_gelu_kernel<T><<<blocks, kThreads, 0, stream>>>(x, bias, total, H);
  CUDA_CHECK_LAUNCH();
}

#define GPT2_INSTANTIATE(T) template void bias_gelu<T>(T*, const float*, int, int, cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
