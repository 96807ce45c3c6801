// Token + position embedding: the first op of the forward pass.
//
//   x[t, c] = wte[id_t, c] + wpe[p_t, c]        x (n, C) fp32; wte (V, C), wpe (P, C) in T
//
// Thread layout: one block per token row, 256 threads striding over the C channels
// (coalesced reads of both table rows). For the decode step the token and its position come
// from the device-side StepParams, so the launch can be replayed from a CUDA graph. Thread 0
// of each row also records the token id in the context's token ring (for the penalties).
// The batched decode step (embedding_batch) takes each row's token, position and sequence from
// its BatchRow, one block per row, and also marks the position as the sequence's own in the
// history table.
// Under PDL (GPT2_CUDA_VARIANTS=pdl) it waits before anything else (a no-op after the step's
// copy, its usual predecessor), then lets the first matrix-vector kernel start its weight loads.
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

// CUDA kernels -------------------------------------------------------------------------------

template <typename T>
__global__ void embedding_kernel(float* __restrict__ x, const int* __restrict__ ids, int pos,
                                 const StepParams* __restrict__ step, const T* __restrict__ wte,
                                 const T* __restrict__ wpe, int C, int* __restrict__ context, KvRing ring) {
  pdl_wait();
  pdl_allow_dependents();  // the decode step's first matrix-vector kernel may start loading weights
  const int t = blockIdx.x;
  const int id = step ? step->token : ids[t];
  const int p = step ? step->pos : pos + t;
  if (context && threadIdx.x == 0) context[(step ? step->ring : ring).slot(p)] = id;
  const T* te = wte + size_t(id) * C;  // (C)
  const T* pe = wpe + size_t(p) * C;   // (C)
  float* xo = x + size_t(t) * C;       // (C)
  for (int c = threadIdx.x; c < C; c += blockDim.x) xo[c] = to_f32(te[c]) + to_f32(pe[c]);
}

// The batched decode step: block b is row b (same layout and sum as embedding_kernel).
template <typename T>
__global__ void embedding_batch_kernel(float* __restrict__ x, const BatchRow* __restrict__ rows,
                                       const T* __restrict__ wte, const T* __restrict__ wpe, int C,
                                       int* __restrict__ context, int* __restrict__ history, int capacity) {
  const BatchRow row = rows[blockIdx.x];
  const size_t base = size_t(row.seq) * capacity;  // the sequence's rows of context and history
  if (threadIdx.x == 0) {
    if (context) context[base + row.ring.slot(row.pos)] = row.token;
    history[base + row.pos] = row.seq;
  }
  const T* te = wte + size_t(row.token) * C;  // (C)
  const T* pe = wpe + size_t(row.pos) * C;    // (C)
  float* xo = x + size_t(blockIdx.x) * C;     // (C)
  for (int c = threadIdx.x; c < C; c += blockDim.x) xo[c] = to_f32(te[c]) + to_f32(pe[c]);
}

constexpr int kThreads = 256;

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void embedding_rows(float* x, const int* ids, int n, int pos, const T* wte, const T* wpe, int C,
                    int* context, const KvRing& ring, cudaStream_t stream) {
  embedding_kernel<T><<<n, kThreads, 0, stream>>>(x, ids, pos, nullptr, wte, wpe, C, context, ring);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void embedding_step(float* x, const StepParams* step, const T* wte, const T* wpe, int C, int* context,
                    cudaStream_t stream, bool pdl) {
  launch_kernel(pdl, embedding_kernel<T>, dim3(1), dim3(kThreads), 0, stream, x, static_cast<const int*>(nullptr), 0,
                step, wte, wpe, C, context, KvRing{});
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void embedding_batch(float* x, const BatchRow* rows, int B, const T* wte, const T* wpe, int C, int* context,
                     int* history, int capacity, cudaStream_t stream) {
  embedding_batch_kernel<T><<<B, kThreads, 0, stream>>>(x, rows, wte, wpe, C, context, history, capacity);
  CUDA_CHECK_LAUNCH();
}

#define GPT2_INSTANTIATE(T)                                                                                \
  template void embedding_rows<T>(float*, const int*, int, int, const T*, const T*, int, int*, const KvRing&,\
                                  cudaStream_t);                                                           \
  template void embedding_step<T>(float*, const StepParams*, const T*, const T*, int, int*, cudaStream_t, bool); \
  template void embedding_batch<T>(float*, const BatchRow*, int, const T*, const T*, int, int*, int*, int, cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
