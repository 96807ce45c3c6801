// LayerNorm with the pending residual bias fused in (the prefill / --no-cache path).
//
//   if resid_bias:  x[t] += resid_bias            (written back to the fp32 residual stream)
//   mean = sum_c x[t,c] / C,  var = sum_c (x[t,c] - mean)^2 / C    (fp32, two passes like cpu::)
//   out[t,c] = (x[t,c] - mean) / sqrt(var + eps) * w[c] + b[c]     (stored in T for cuBLAS)
//
// Why the bias lives here: the projections before a LayerNorm are cuBLAS products that
// accumulate straight into x (beta = 1), so their bias is added by the next LayerNorm, which
// reads x anyway: residual add + bias + LayerNorm in one pass.
//
// Thread layout: one warp per row (8 rows per 256-thread block); each lane strides over C
// and the row statistics are warp-shuffle sums. A lane re-reads only the elements it wrote.
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;

// CUDA kernels -------------------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(kThreads)
    layernorm_kernel(T* __restrict__ out, float* __restrict__ x, const float* __restrict__ resid_bias,
                     const float* __restrict__ w, const float* __restrict__ b, int n, int C, float eps) {
  const int row = blockIdx.x * kRowsPerBlock + int(threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (row >= n) return;  // whole warp: the shuffles below stay full-mask
  float* xr = x + size_t(row) * C;  // (C)
  float sum = 0.0f;
  for (int c = lane; c < C; c += 32) {
    float v = xr[c];
    if (resid_bias) {
      v += resid_bias[c];
      xr[c] = v;
    }
    sum += v;
  }
  const float mean = warp_sum(sum) / float(C);
  float sq = 0.0f;
  for (int c = lane; c < C; c += 32) {
    const float d = xr[c] - mean;
    sq += d * d;
  }
  const float var = warp_sum(sq) / float(C);
  const float rstd = 1.0f / sqrtf(var + eps);
  T* o = out + size_t(row) * C;  // (C)
  for (int c = lane; c < C; c += 32) o[c] = from_f32<T>((xr[c] - mean) * rstd * w[c] + b[c]);
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void layernorm(T* out, float* x, const float* resid_bias, const float* w, const float* b, int n, int C,
                       float eps, cudaStream_t stream) {
  layernorm_kernel<T><<<ceil_div(n, kRowsPerBlock), kThreads, 0, stream>>>(out, x, resid_bias, w, b, n, C, eps);
  CUDA_CHECK_LAUNCH();
}

#define GPT2_INSTANTIATE(T)                                                                          \
  template void layernorm<T>(T*, float*, const float*, const float*, const float*, int, int, float, \
                                     cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
