// The logits processors of src/engine/processors.h on the device: repetition, presence and frequency
// penalties over the penalty window, then the no-repeat n-gram ban over the context. They run
// inside the decode step (and its CUDA graph) before argmax or sampling, reading the context's
// token ids from a ring the embedding kernels fill, so nothing but StepParams goes in per token.
//
// Kernels and thread layouts:
//   count_window_kernel: one block of 1024 threads. Brings counts (V) from the positions they
//                        held, [counted_begin, counted_end), to this step's penalty window. A
//                        decode step is incremental (thread 0 adds the newest position and drops
//                        those that left the window: O(1) per token); counted_end < 0 (after a
//                        prefill, a --no-cache step or a context shift) clears and recounts, all
//                        threads (atomic adds: an id may repeat).
//   penalize_kernel:     one thread per id: scores = penalize(logits, counts) (rule steps 1-2).
//   ngram_ban_kernel:    one block of 1024 threads striding over the context's n-grams; one that
//                        matches the last size-1 tokens sets its last id's score to -inf (rule
//                        step 3; threads banning the same id write the same value).
#include "device_common.cuh"
#include "engine/processors.h"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int kThreads = 1024;

// CUDA kernels -------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads)
    count_window_kernel(int* __restrict__ counts, int V, const int* __restrict__ context,
                        const StepParams* __restrict__ step) {
  pdl_wait();  // under PDL (GPT2_CUDA_VARIANTS=pdl) the previous kernel may still be running
  pdl_allow_dependents();
  const KvRing ring = step->ring;
  const int end = step->pos + 1;  // the context is positions [0, end)
  const int begin = penalty_window_begin(end, step->penalties.repeat_last_n);
  if (step->counted_end < 0) {  // block-uniform
    for (int i = threadIdx.x; i < V; i += kThreads) counts[i] = 0;
    __syncthreads();
    for (int p = begin + threadIdx.x; p < end; p += kThreads) atomicAdd(&counts[context[ring.slot(p)]], 1);
  } else if (threadIdx.x == 0) {
    for (int p = step->counted_end; p < end; ++p) ++counts[context[ring.slot(p)]];
    for (int p = step->counted_begin; p < begin; ++p) --counts[context[ring.slot(p)]];
  }
}

__global__ void penalize_kernel(const float* __restrict__ logits, float* __restrict__ scores, int V,
                                const int* __restrict__ counts, const StepParams* __restrict__ step) {
  pdl_wait();
  pdl_allow_dependents();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < V) scores[i] = penalize(logits[i], counts[i], step->penalties);
}

__global__ void __launch_bounds__(kThreads)
    ngram_ban_kernel(float* __restrict__ scores, const int* __restrict__ context,
                     const StepParams* __restrict__ step) {
  pdl_wait();
  pdl_allow_dependents();
  const int size = step->penalties.no_repeat_ngram_size, n = step->pos + 1;
  if (size <= 0 || n + 1 < size) return;  // as banned_ngram_ids(): nothing can be completed yet
  const KvRing ring = step->ring;
  const int tail = n - (size - 1);  // the last size - 1 tokens start here
  for (int i = threadIdx.x; i + size <= n; i += kThreads) {
    int k = 0;
    while (k < size - 1 && context[ring.slot(i + k)] == context[ring.slot(tail + k)]) ++k;
    if (k == size - 1) scores[context[ring.slot(i + size - 1)]] = -INFINITY;
  }
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

void process_logits(const float* logits, float* scores, int V, const int* context, int* counts,
                    const StepParams* step, cudaStream_t stream, bool pdl) {
  launch_kernel(pdl, count_window_kernel, dim3(1), dim3(kThreads), 0, stream, counts, V, context, step);
  CUDA_CHECK_LAUNCH();
  launch_kernel(pdl, penalize_kernel, dim3(ceil_div(V, 256)), dim3(256), 0, stream, logits, scores, V,
                static_cast<const int*>(counts), step);
  CUDA_CHECK_LAUNCH();
  launch_kernel(pdl, ngram_ban_kernel, dim3(1), dim3(kThreads), 0, stream, scores, context, step);
  CUDA_CHECK_LAUNCH();
}

}  // namespace gpt2::cuda
