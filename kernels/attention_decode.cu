// Attention of the decode step: one new query against the cached keys and values in the ring.
//
// For head h, with L = step->pos + 1 cached positions (the new token's K/V already appended):
//   out[h] = sum_{s<L} softmax_s(q[h] . K[slot(s),h] / sqrt(HS)) V[slot(s),h]
// Flash-decoding: the L keys are cut into chunks of 64 and each (head, chunk) block computes
//   m_j = max_s S_s,  l_j = sum_s e^(S_s - m_j),  o_j = sum_s e^(S_s - m_j) V_s
// over its chunk; the last block of a head to finish (an atomic arrival counter) combines them
// exactly:  M = max_j m_j,  out = sum_j e^(m_j - M) o_j / sum_j e^(m_j - M) l_j.
// The grid is sized for the ring's capacity so it can be captured once in the decode graph;
// chunks at or past L return at once. L, the position and the ring come from StepParams.
//
// Thread layout: grid (NH, ceil(capacity / 64)), 64 threads per block. Scores: thread t takes
// key split*64 + t and reads its HS = 64 values with 16-byte loads (q in shared memory). Output:
// thread d accumulates dimension d over the chunk (coalesced V rows). The combine reads the
// partials through L2 (__ldcg) after a __threadfence / atomicAdd handshake, and the last block
// resets the head's counter to zero for the next launch.
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int HS = kHeadDim;  // 64
constexpr int kChunk = 64;    // keys per block
constexpr int kThreads = 64;  // == HS == kChunk
constexpr int kPartial = HS + 2;  // o[HS], m, l
static_assert(kThreads == HS && kThreads == kChunk, "one thread per key and per output dimension");

int max_splits(int capacity) { return (capacity + kChunk - 1) / kChunk; }

// CUDA kernels -------------------------------------------------------------------------------

// q and the rings are not __restrict__: that would let nvcc read them through the non-coherent
// (read-only) cache, and under PDL this kernel is already running while the previous kernel
// writes q and the newest K/V slot (a ring slot also held older K/V in earlier steps).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(float* __restrict__ out, const float* q, const T* k_ring, const T* v_ring,
                            const StepParams* __restrict__ step,
                            float* __restrict__ partials, unsigned int* __restrict__ counters, int C, int n_splits_max,
                            float scale) {
  constexpr int VEC = Vec16<T>::N;
  __shared__ __align__(16) float qs[HS];
  __shared__ float ps[kChunk];
  __shared__ int is_last;

  const int h = blockIdx.x, split = blockIdx.y, tid = threadIdx.x;
  // The host keeps pos < capacity; the clamp only keeps a bad step from stranding the counters.
  const int L = min(step->pos + 1, n_splits_max * kChunk);
  const KvRing ring = step->ring;
  const int n_splits = (L + kChunk - 1) / kChunk;
  if (split >= n_splits) return;  // whole block; never touches the counter

  pdl_wait();  // q and the newest K/V slot come from the previous kernel
  pdl_allow_dependents();
  qs[tid] = q[size_t(h) * HS + tid];
  __syncthreads();

  // Scores of this chunk: one key per thread.
  const int s0 = split * kChunk;
  const int s = s0 + tid;
  float score = -INFINITY;
  if (s < L) {
    const T* k = k_ring + size_t(ring.slot(s)) * C + size_t(h) * HS;  // (HS), 16-byte aligned
    float acc = 0.0f;
#pragma unroll
    for (int c = 0; c < HS; c += VEC) {
      float f[VEC];
      unpack16(*reinterpret_cast<const uint4*>(k + c), f, T());
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc += qs[c + e] * f[e];
    }
    score = acc * scale;
  }
  const float m = block_max(score);  // finite: key s0 < L is in every live chunk
  const float p = s < L ? expf(score - m) : 0.0f;
  ps[tid] = p;
  const float l = block_sum(p);  // its barriers also publish ps[]

  // Unnormalised output of this chunk: thread tid is dimension tid.
  const int nk = min(kChunk, L - s0);
  float o = 0.0f;
#pragma unroll 8
  for (int c = 0; c < nk; ++c) o += ps[c] * to_f32(v_ring[size_t(ring.slot(s0 + c)) * C + size_t(h) * HS + tid]);

  float* part = partials + (size_t(h) * n_splits_max + split) * kPartial;  // (HS + 2)
  part[tid] = o;
  if (tid == 0) {
    part[HS] = m;
    part[HS + 1] = l;
  }
  // Publish the partials, then count this block in; the last of the head's blocks combines.
  __threadfence();
  __syncthreads();
  if (tid == 0) is_last = atomicAdd(&counters[h], 1u) == unsigned(n_splits - 1);
  __syncthreads();
  if (!is_last) return;
  __threadfence();

  const float* head = partials + size_t(h) * n_splits_max * kPartial;
  float M = -INFINITY;
  for (int j = 0; j < n_splits; ++j) M = fmaxf(M, __ldcg(head + j * kPartial + HS));
  float acc = 0.0f, total = 0.0f;
  for (int j = 0; j < n_splits; ++j) {
    const float w = expf(__ldcg(head + j * kPartial + HS) - M);
    total += __ldcg(head + j * kPartial + HS + 1) * w;
    acc += __ldcg(head + j * kPartial + tid) * w;
  }
  out[size_t(h) * HS + tid] = acc / total;
  if (tid == 0) counters[h] = 0u;  // every block of this head has arrived: ready for the next launch
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

size_t attention_decode_partials(int n_head, int capacity) {
  return size_t(n_head) * max_splits(capacity) * kPartial;
}

template <typename T>
void attention_decode(float* out, const float* q, const T* k_ring, const T* v_ring, const StepParams* step,
                      float* partials, unsigned int* counters, int n_head, int head_dim, int capacity,
                      cudaStream_t stream, bool pdl) {
  if (head_dim != HS)
    throw Error("attention_decode: head_dim " + std::to_string(head_dim) + " is not supported (the CUDA kernels need 64)");
  if ((size_t(n_head) * HS * sizeof(T)) % 16 != 0)
    throw Error("attention_decode: rows of " + std::to_string(n_head * HS) + " elements are not 16-byte aligned");
  const dim3 grid(n_head, max_splits(capacity));
  launch_kernel(pdl, attention_decode_kernel<T>, grid, dim3(kThreads), 0, stream, out, q, k_ring, v_ring, step, partials,
                counters, n_head * HS, max_splits(capacity), 1.0f / sqrtf(float(HS)));
}

#define GPT2_INSTANTIATE(T)                                                                              \
  template void attention_decode<T>(float*, const float*, const T*, const T*, const StepParams*, float*, \
                                    unsigned int*, int, int, int, cudaStream_t, bool);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
