// Choosing the next token on the device, so that a decode step copies back one int instead of
// V = 50,257 logits. The rule is sampler.h's, mirrored exactly:
//   greedy (temperature <= 0): argmax z, the lowest id among equal maxima;
//   else order ids by z descending (ties: lower id first), keep the first top_k (if > 0),
//   p_i = exp((z_i - z_max) / temperature), keep the shortest prefix whose mass before a token
//   stays below top_p * total and whose p_i stay >= min_p (the first is always kept), and
//   return the first id whose cumulative p exceeds u * (kept total); past the end, the last
//   kept id.
//
// Kernels and thread layouts:
//   argmax_kernel:        one block of 1024 threads striding over V; each thread keeps its first
//                         maximum, then (value, id) pairs are reduced by warp shuffles and shared
//                         memory with "larger value, else lower id" as the order.
//   prepare_keys_kernel:  one thread per logit: the sort keys, with -0 made +0 (the CPU compares
//                         -0 == +0 and orders them by id; a radix sort would put +0 first).
//   cub::DeviceRadixSort: stable descending sort of (key, id) pairs; ids start in increasing
//                         order, so equal logits stay in increasing id order.
//   sample_sorted_kernel: one block of 1024 threads; thread t owns a contiguous run of the
//                         sorted prefix, sums its p_i, and a block-wide exclusive scan gives each
//                         run its starting mass; the top-p / min-p cut and the inverse CDF are
//                         each the minimum index (block reduce) over the threads' first hits. Sums are
//                         fp32 like the CPU's, in a different order: the two can differ only when
//                         a cumulative sum lands within rounding of u * total or top_p * total.
#include <climits>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int kThreads = 1024;

struct MinInt {
  __device__ __forceinline__ int operator()(int a, int b) const { return a < b ? a : b; }
};

// CUDA kernels -------------------------------------------------------------------------------

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ logits, int V, int* __restrict__ out,
                                                          StepParams* __restrict__ advance) {
  pdl_wait();  // under PDL (GPT2_CUDA_VARIANTS=pdl) the LM head may still be running
  pdl_allow_dependents();
  float best = -INFINITY;
  int best_i = V;  // "none yet": like the CPU, nothing that is not > -inf replaces id 0
  for (int i = threadIdx.x; i < V; i += kThreads) {
    const float v = logits[i];
    if (v > best) {  // strict: a thread's first maximum (its lowest id) wins its ties
      best = v;
      best_i = i;
    }
  }
  auto reduce_warp = [](float& bv, int& bi) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
      const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
      if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
      }
    }
  };
  reduce_warp(best, best_i);
  __shared__ float warp_best[32];
  __shared__ int warp_idx[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) {
    warp_best[warp] = best;
    warp_idx[warp] = best_i;
  }
  __syncthreads();
  if (warp == 0) {
    best = warp_best[lane];  // kThreads / 32 == 32 warps: every lane has a partial
    best_i = warp_idx[lane];
    reduce_warp(best, best_i);
    if (lane == 0) write_step_token(best_i < V ? best_i : 0, out, advance);
  }
}

__global__ void prepare_keys_kernel(const float* __restrict__ logits, float* __restrict__ keys, int V) {
  pdl_wait();
  pdl_allow_dependents();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < V) {
    const float v = logits[i];
    keys[i] = v == 0.0f ? 0.0f : v;
  }
}

__global__ void iota_kernel(int* __restrict__ ids, int V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < V) ids[i] = i;
}

__global__ void __launch_bounds__(kThreads)
    sample_sorted_kernel(const float* __restrict__ z, const int* __restrict__ ids, int V, const StepParams* step,
                         int* __restrict__ out, StepParams* advance) {  // advance may be step: no __restrict__
  using Scan = cub::BlockScan<float, kThreads>;
  using ReduceInt = cub::BlockReduce<int, kThreads>;
  __shared__ union {
    typename Scan::TempStorage scan;
    typename ReduceInt::TempStorage reduce;
  } tmp;
  __shared__ int s_first;
  __shared__ float s_before;
  pdl_wait();  // after CUB's sort, which is never launched with PDL: returns at once
  pdl_allow_dependents();

  const float temperature = step->temperature;
  const int top_k = step->top_k;
  const float top_p = step->top_p;
  const float u = step->u;
  const float min_p = step->min_p;

  const int n = (top_k > 0 && top_k < V) ? top_k : V;  // candidates: z[0, n) (sorted)
  const float z_max = z[0];
  const int per = (n + kThreads - 1) / kThreads;
  const int begin = min(n, int(threadIdx.x) * per), end = min(n, begin + per);
  auto prob = [&](int i) { return expf((z[i] - z_max) / temperature); };

  float local = 0.0f;
  for (int i = begin; i < end; ++i) local += prob(i);
  float offset = 0.0f, total = 0.0f;  // mass before this thread's run; mass of all n
  Scan(tmp.scan).ExclusiveSum(local, offset, total);
  __syncthreads();

  // Nucleus and min-p: kept = the first i >= 1 whose mass before it reaches top_p * total or
  // whose p is below min_p (else n). Both conditions, once true, stay true along the order.
  int kept = n;
  float kept_total = total;
  if (top_p < 1.0f || min_p > 0.0f) {
    const float threshold = top_p * total;
    int cand = INT_MAX;
    float cand_before = 0.0f;
    float before = offset;
    for (int i = begin; i < end; ++i) {
      if (i >= 1 && ((top_p < 1.0f && before >= threshold) || prob(i) < min_p)) {
        cand = i;
        cand_before = before;
        break;
      }
      before += prob(i);
    }
    const int first = ReduceInt(tmp.reduce).Reduce(cand, MinInt());  // valid in thread 0
    if (threadIdx.x == 0) s_first = first;
    __syncthreads();
    const int f = s_first;  // block-uniform
    if (f != INT_MAX) {
      if (cand == f) s_before = cand_before;  // the one thread whose run holds index f
      __syncthreads();
      kept = f;
      kept_total = s_before;
    }
    __syncthreads();  // tmp is reused below
  }

  // Inverse CDF over the kept prefix.
  const float r = u * kept_total;
  int pick = INT_MAX;
  float run = offset;
  const int stop = min(end, kept);
  for (int i = begin; i < stop; ++i) {
    run += prob(i);
    if (run > r) {
      pick = i;
      break;
    }
  }
  const int chosen = ReduceInt(tmp.reduce).Reduce(pick, MinInt());
  // Every thread read *step before the reductions' barriers: advancing it now is safe.
  if (threadIdx.x == 0) write_step_token(ids[chosen == INT_MAX ? kept - 1 : chosen], out, advance);
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

bool kernels_loadable(std::string* why, KernelImage* image) {
  cudaFuncAttributes attr{};
  const cudaError_t e = cudaFuncGetAttributes(&attr, argmax_kernel);  // argmax_kernel calls pdl_wait()
  if (e == cudaSuccess) {
    if (image) *image = KernelImage{attr.binaryVersion, attr.ptxVersion};
    return true;
  }
  cudaGetLastError();  // clear the (non-sticky) error so later calls start clean
  if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  return false;
}

void argmax(const float* logits, int V, int* out, cudaStream_t stream, bool pdl, StepParams* advance) {
  launch_kernel(pdl, argmax_kernel, dim3(1), dim3(kThreads), 0, stream, logits, V, out, advance);
  CUDA_CHECK_LAUNCH();
}

size_t sampler_temp_bytes(int V) {
  size_t bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, static_cast<const float*>(nullptr),
                                                       static_cast<float*>(nullptr), static_cast<const int*>(nullptr),
                                                       static_cast<int*>(nullptr), V));
  return bytes;
}

void sampler_init(const SamplerWorkspace& ws, int V, cudaStream_t stream) {
  iota_kernel<<<ceil_div(V, 256), 256, 0, stream>>>(ws.ids_in, V);
  CUDA_CHECK_LAUNCH();
}

void sample_top_k_top_p(const float* logits, int V, const StepParams* step, const SamplerWorkspace& ws, int* out,
                        cudaStream_t stream, bool pdl, StepParams* advance) {
  launch_kernel(pdl, prepare_keys_kernel, dim3(ceil_div(V, 256)), dim3(256), 0, stream, logits, ws.keys_in, V);
  CUDA_CHECK_LAUNCH();
  size_t bytes = ws.temp_bytes;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairsDescending(ws.temp, bytes, ws.keys_in, ws.keys_out, ws.ids_in,
                                                       ws.ids_out, V, 0, int(sizeof(float) * 8), stream));
  launch_kernel(pdl, sample_sorted_kernel, dim3(1), dim3(kThreads), 0, stream, static_cast<const float*>(ws.keys_out),
                static_cast<const int*>(ws.ids_out), V, step, out, advance);
  CUDA_CHECK_LAUNCH();
}

}  // namespace gpt2::cuda
