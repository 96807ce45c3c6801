// The qkv bias and the K/V append into the per-layer ring (prefill / --no-cache path).
//
//   j <  C:  qkv[t, j] += bias[j]                               (the query, in place)
//   j < 2C:  k_ring[slot(pos + t), j - C]  = qkv[t, j] + bias[j]
//   j < 3C:  v_ring[slot(pos + t), j - 2C] = qkv[t, j] + bias[j]
//   qkv (n, 3C), rings (capacity, C), all in T; slot() is KvRing::slot, the index rule both
//   backends share (src/engine/kv_ring.h), so a context shift only moves ring.start.
//
// Thread layout: one block per token row, 256 threads striding over the 3C columns.
// (The decode step fuses this into the qkv matrix-vector kernel: gemv.cu, epilogue Qkv.)
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int kThreads = 256;

// CUDA kernels -------------------------------------------------------------------------------

template <typename T>
__global__ void qkv_bias_kv_append_kernel(T* __restrict__ qkv, const float* __restrict__ bias, T* __restrict__ k_ring,
                                          T* __restrict__ v_ring, int pos, KvRing ring, int C) {
  const int t = blockIdx.x;
  T* row = qkv + size_t(t) * 3 * C;                // (3C)
  const size_t slot = size_t(ring.slot(pos + t));  // ring row of this token
  for (int j = threadIdx.x; j < 3 * C; j += blockDim.x) {
    const float v = to_f32(row[j]) + (bias ? bias[j] : 0.0f);
    if (j < C) {
      if (bias) row[j] = from_f32<T>(v);
    } else if (j < 2 * C) {
      k_ring[slot * C + (j - C)] = from_f32<T>(v);
    } else {
      v_ring[slot * C + (j - 2 * C)] = from_f32<T>(v);
    }
  }
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void qkv_bias_kv_append(T* qkv, const float* bias, T* k_ring, T* v_ring, int n, int pos, const KvRing& ring, int C,
                        cudaStream_t stream) {
  qkv_bias_kv_append_kernel<T><<<n, kThreads, 0, stream>>>(qkv, bias, k_ring, v_ring, pos, ring, C);
  CUDA_CHECK_LAUNCH();
}

#define GPT2_INSTANTIATE(T) \
  template void qkv_bias_kv_append<T>(T*, const float*, T*, T*, int, int, const KvRing&, int, cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
