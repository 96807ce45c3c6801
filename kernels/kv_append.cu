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
//
// Also the history table's bookkeeping (kernels.h, BatchRow): which sequence's ring holds each
// position of each sequence. history_fill points a range of one sequence's positions at itself;
// history_reorder (beam search) makes sequence i's row its parent's below pos, through a copy
// of the n rows first (a row may be another's parent and be rewritten in the same call).
// Thread layout: 256 threads striding over a row; history_reorder one block per sequence.
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

__global__ void history_fill_kernel(int* __restrict__ row, int seq, int begin, int end) {
  for (int p = begin + int(blockIdx.x * blockDim.x + threadIdx.x); p < end; p += int(gridDim.x * blockDim.x))
    row[p] = seq;
}

__global__ void copy_rows_kernel(int* __restrict__ dst, const int* __restrict__ src, int count) {
  for (int i = int(blockIdx.x * blockDim.x + threadIdx.x); i < count; i += int(gridDim.x * blockDim.x)) dst[i] = src[i];
}

// Block i: table row i from scratch row parent[i] below pos, i itself (self_after) from there.
__global__ void history_reorder_kernel(int* __restrict__ table, const int* __restrict__ scratch,
                                       const int* __restrict__ parent, int capacity, int pos, bool self_after) {
  const int i = blockIdx.x;
  const int* from = scratch + size_t(parent[i]) * capacity;  // (capacity)
  int* row = table + size_t(i) * capacity;                   // (capacity)
  for (int p = threadIdx.x; p < capacity; p += blockDim.x)
    if (p < pos)
      row[p] = from[p];
    else if (self_after)
      row[p] = i;
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void qkv_bias_kv_append(T* qkv, const float* bias, T* k_ring, T* v_ring, int n, int pos, const KvRing& ring, int C,
                        cudaStream_t stream) {
  qkv_bias_kv_append_kernel<T><<<n, kThreads, 0, stream>>>(qkv, bias, k_ring, v_ring, pos, ring, C);
  CUDA_CHECK_LAUNCH();
}

void history_fill(int* table, int seq, int capacity, int begin, int end, cudaStream_t stream) {
  if (end <= begin) return;
  history_fill_kernel<<<ceil_div(end - begin, kThreads), kThreads, 0, stream>>>(table + size_t(seq) * capacity, seq,
                                                                                begin, end);
  CUDA_CHECK_LAUNCH();
}

void history_reorder(int* table, int* scratch, const int* parent, int n, int capacity, int pos, bool self_after,
                     cudaStream_t stream) {
  const int count = n * capacity;
  copy_rows_kernel<<<ceil_div(count, kThreads), kThreads, 0, stream>>>(scratch, table, count);
  CUDA_CHECK_LAUNCH();
  history_reorder_kernel<<<n, kThreads, 0, stream>>>(table, scratch, parent, capacity, pos, self_after);
  CUDA_CHECK_LAUNCH();
}

#define GPT2_INSTANTIATE(T) \
  template void qkv_bias_kv_append<T>(T*, const float*, T*, T*, int, int, const KvRing&, int, cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
