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
//
// The batched step (attention_decode_batch, --parallel): grid (NH, ceil(capacity / 64), B), the
// same blocks per row, each row with its own L, partials and counters, and key position s of
// row b read from the ring of the sequence history[seq_b][s] names (beam search's reorder
// without a copy). The per-row arithmetic is this kernel's, shared code, so a row's output does
// not depend on B or on the other rows and equals the one-sequence kernel's bit for bit.
//
// The one-round variant (attention_decode_one_round, GPT2_CUDA_VARIANTS=attn1) computes the same
// formula with the latency taken out: every K and V load of a block is issued at once, as
// 16-byte vectors, and all but the newest slot before the PDL wait; chunks of 128 keys, so up
// to L = 128 one block per head finishes alone (no partials, fence or atomic), and past that
// the last block combines the partials in one round of loads instead of a loop over them.
//
// Thread layout (one round): grid (NH, ceil(capacity / 128)), 256 threads per block. Thread t
// owns the 8-dimension slice t % 8 of the keys (t / 8) + 32 i, i < 4, of its chunk: it loads
// their K and V slices (one 16-byte vector each in fp16/bf16, two in fp32), the 8 lanes of a key
// sum their partial dot products by shuffles (8-way reduction), and each thread accumulates its
// slice of the output over its 4 keys, reduced across keys by shuffles and shared memory. The
// combine: thread (g, d), g < 4, folds splits g, g + 4, ... of dimension d with the same rule,
// then the 4 groups are merged through shared memory.
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

// Writes a block's partial (part: o (HS; thread d < HS passes o[d]), m, l), then counts the
// block in with the head's arrival counter. True, in every thread, for the last block of the
// head to arrive: it then sees every block's partial (read them through L2, __ldcg).
__device__ __forceinline__ bool publish_partial(float* part, float o, float m, float l, unsigned int* counter,
                                                int n_splits) {
  __shared__ int is_last;
  if (threadIdx.x < HS) part[threadIdx.x] = o;
  if (threadIdx.x == 0) {
    part[HS] = m;
    part[HS + 1] = l;
  }
  __threadfence();  // the partial is visible before the block counts itself in
  __syncthreads();
  if (threadIdx.x == 0) is_last = atomicAdd(counter, 1u) == unsigned(n_splits - 1);
  __syncthreads();
  if (is_last) __threadfence();
  return is_last;
}

// CUDA kernels -------------------------------------------------------------------------------

// Where key position s of the row lives in the cache (its row index; times C for the offset).
// The one-sequence step: the ring's slot. A batched row: the slot in the ring of the sequence
// the history table names.
struct RingRows {
  KvRing ring;
  __device__ __forceinline__ size_t operator()(int s) const { return size_t(ring.slot(s)); }
};
struct HistoryRows {
  KvRing ring;
  const int* history;  // (capacity) this row's sequence's entries
  int capacity;
  __device__ __forceinline__ size_t operator()(int s) const {
    return size_t(history[s]) * size_t(capacity) + size_t(ring.slot(s));
  }
};

// Block (head h, chunk `split`) of one query: q (C) at position L - 1 over positions [0, L),
// key s in cache row row_of(s); partials (n_head, n_splits_max, kPartial) and counters
// (n_head) are the query's own; the last block of the head writes out (C)'s head h. The
// arithmetic of every row, batched or not (see the file's doc block).
// q and the rings are not __restrict__: that would let nvcc read them through the non-coherent
// (read-only) cache, and under PDL this kernel is already running while the previous kernel
// writes q and the newest K/V slot (a ring slot also held older K/V in earlier steps).
// KV: the rings' format (kernels.h KvRings); rows of row_bytes, int8's scales applied once per
// key (its score) and once per value (folded into its softmax weight in ps).
template <typename KV, typename RowOf>
__device__ __forceinline__ void attend_chunk(float* out, const float* q, const KvRings& kv, int L, RowOf row_of,
                                             float* partials, unsigned int* counters, int n_splits_max, float scale) {
  constexpr int VEC = Vec16<KV>::N;
  constexpr bool kScaled = KvType<KV>::dtype == ComputeDType::Int8;
  const int C = kv.n_embd;
  const size_t row_bytes = kv.row_bytes();
  __shared__ __align__(16) float qs[HS];
  __shared__ float ps[kChunk];

  const int h = blockIdx.x, split = blockIdx.y, tid = threadIdx.x;
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
  float v_scale = 1.0f;  // int8: the scale of value s's head
  if (s < L) {
    const char* k_row = kv_row(kv.k, row_of(s), row_bytes);
    const KV* k = reinterpret_cast<const KV*>(k_row) + size_t(h) * HS;  // (HS)
    float acc = 0.0f;
#pragma unroll
    for (int c = 0; c < HS; c += VEC) {
      float f[VEC];
      load_kv16(k + c, f);
#pragma unroll
      for (int e = 0; e < VEC; ++e) acc += qs[c + e] * f[e];
    }
    if constexpr (kScaled) {
      acc *= kv_head_scale<KV>(k_row, C, h);
      v_scale = kv_head_scale<KV>(kv_row(kv.v, row_of(s), row_bytes), C, h);
    }
    score = acc * scale;
  }
  const float m = block_max(score);  // finite: key s0 < L is in every live chunk
  const float p = s < L ? expf(score - m) : 0.0f;
  ps[tid] = kScaled ? p * v_scale : p;
  const float l = block_sum(p);  // its barriers also publish ps[]

  // Unnormalised output of this chunk: thread tid is dimension tid.
  const int nk = min(kChunk, L - s0);
  float o = 0.0f;
#pragma unroll 8
  for (int c = 0; c < nk; ++c)
    o += ps[c] * to_f32(reinterpret_cast<const KV*>(kv_row(kv.v, row_of(s0 + c), row_bytes))[size_t(h) * HS + tid]);

  // Publish the partials; the last of the head's blocks combines.
  float* part = partials + (size_t(h) * n_splits_max + split) * kPartial;  // (HS + 2)
  if (!publish_partial(part, o, m, l, &counters[h], n_splits)) return;

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

template <typename KV>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(float* __restrict__ out, const float* q, const KvRings kv,
                            const StepParams* __restrict__ step, float* __restrict__ partials,
                            unsigned int* __restrict__ counters, int n_splits_max, float scale) {
  // The host keeps pos < capacity; the clamp only keeps a bad step from stranding the counters.
  const int L = min(step->pos + 1, n_splits_max * kChunk);
  attend_chunk<KV>(out, q, kv, L, RingRows{step->ring}, partials, counters, n_splits_max, scale);
}

// Grid (n_head, n_splits_max, B): blockIdx.z is the row; each row has its own partials and
// counters, so rows of different lengths never wait for or touch each other's.
template <typename KV>
__global__ void __launch_bounds__(kThreads)
    attention_decode_batch_kernel(float* __restrict__ out, const float* q, const KvRings kv,
                                  const BatchRow* __restrict__ rows, const int* __restrict__ history,
                                  float* __restrict__ partials, unsigned int* __restrict__ counters,
                                  int n_splits_max, int capacity, float scale) {
  const int b = blockIdx.z, C = kv.n_embd, n_head = kv.n_head;
  const BatchRow row = rows[b];
  const int L = min(row.pos + 1, n_splits_max * kChunk);  // clamp: as attention_decode_kernel
  const HistoryRows row_of{row.ring, history + size_t(row.seq) * capacity, capacity};
  attend_chunk<KV>(out + size_t(b) * C, q + size_t(b) * C, kv, L, row_of,
                   partials + size_t(b) * n_head * n_splits_max * kPartial, counters + size_t(b) * n_head,
                   n_splits_max, scale);
}

// ---- the one-round variant ---------------------------------------------------------------------

namespace one_round {

constexpr int kThreads = 256;                            // 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kSlices = 8;                               // 8-dimension slices of a head
constexpr int kDims = HS / kSlices;                      // 8 dimensions per thread
constexpr int kKeysPerPass = kThreads / kSlices;         // 32
constexpr int kKeysPerThread = 4;
constexpr int kChunk = kKeysPerPass * kKeysPerThread;    // 128 keys per block
constexpr int kGroups = kThreads / HS;                   // 4 combine groups
static_assert(kThreads % HS == 0 && 32 % kSlices == 0, "a key's slices sit in one warp");

int max_splits(int capacity) { return (capacity + kChunk - 1) / kChunk; }

// 8 dimensions of one K or V row: one 16-byte vector in fp16 / bf16, two in fp32, two 4-byte
// words in int8 (its rows are only 4-byte aligned), with int8's head scale (1 otherwise).
template <typename KV>
struct Slice {
  static constexpr int kWords = kDims * int(sizeof(KV)) / 4;
  uint32_t w[kWords];
  float scale;
};

// Plain (coherent) loads: see attention_decode_kernel on why the rings are not __restrict__.
// row: the K or V row, col: this thread's first dimension in it (head h's slice).
template <typename KV>
__device__ __forceinline__ void load_slice(Slice<KV>& s, const char* row, size_t col, int C, int h) {
  const KV* p = reinterpret_cast<const KV*>(row) + col;
  if constexpr (KvType<KV>::dtype == ComputeDType::Int8) {
#pragma unroll
    for (int i = 0; i < Slice<KV>::kWords; ++i) s.w[i] = reinterpret_cast<const uint32_t*>(p)[i];
  } else {
#pragma unroll
    for (int i = 0; i < Slice<KV>::kWords / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(p)[i];
      s.w[4 * i] = v.x, s.w[4 * i + 1] = v.y, s.w[4 * i + 2] = v.z, s.w[4 * i + 3] = v.w;
    }
  }
  s.scale = kv_head_scale<KV>(row, C, h);
}

// The slice's values, unscaled.
template <typename KV>
__device__ __forceinline__ void unpack_slice(const Slice<KV>& s, float (&f)[kDims]) {
  if constexpr (KvType<KV>::dtype == ComputeDType::Int8) {
#pragma unroll
    for (int e = 0; e < kDims; ++e) f[e] = float(int8_t(uint8_t(s.w[e / 4] >> (8 * (e % 4)))));
  } else {
    constexpr int N = Vec16<KV>::N;
#pragma unroll
    for (int i = 0; i < Slice<KV>::kWords / 4; ++i) {
      float g[N];
      unpack16(make_uint4(s.w[4 * i], s.w[4 * i + 1], s.w[4 * i + 2], s.w[4 * i + 3]), g, KV());
#pragma unroll
      for (int e = 0; e < N; ++e) f[i * N + e] = g[e];
    }
  }
}

// The last block of a head: out (HS) = sum_j e^(m_j - M) o_j / sum_j e^(m_j - M) l_j over the
// head's partials (n_splits of (o[HS], m, l)). Thread (g, d) folds splits g, g + kGroups, ... of
// dimension d by the online rule (its loads are independent: one round for <= 8 splits), then the
// kGroups folds are merged by the same rule through shared memory.
__device__ __forceinline__ void combine_splits(float* out, const float* head, int n_splits) {
  __shared__ float acc_g[kGroups][HS];
  __shared__ float m_g[kGroups], l_g[kGroups];
  const int d = threadIdx.x % HS, g = threadIdx.x / HS;
  float M = -INFINITY, acc = 0.0f, total = 0.0f;
#pragma unroll 2
  for (int j = g; j < n_splits; j += kGroups) {
    const float* part = head + size_t(j) * kPartial;
    const float mj = __ldcg(part + HS), lj = __ldcg(part + HS + 1), oj = __ldcg(part + d);
    const float M1 = fmaxf(M, mj), a = expf(M - M1), b = expf(mj - M1);  // M = -inf at first: a = 0
    acc = acc * a + oj * b;
    total = total * a + lj * b;
    M = M1;
  }
  acc_g[g][d] = acc;
  if (d == 0) {
    m_g[g] = M;  // -inf for a group without splits: its weight below is 0
    l_g[g] = total;
  }
  __syncthreads();
  if (g != 0) return;
  float Mall = -INFINITY;
#pragma unroll
  for (int k = 0; k < kGroups; ++k) Mall = fmaxf(Mall, m_g[k]);
  float num = 0.0f, den = 0.0f;
#pragma unroll
  for (int k = 0; k < kGroups; ++k) {
    const float w = expf(m_g[k] - Mall);
    num += acc_g[k][d] * w;
    den += l_g[k] * w;
  }
  out[d] = num / den;
}

// Sums each slice's kDims outputs over the block's keys: shuffles across the 4 keys of a warp
// that share a slice, then shared memory across the warps. Valid in threads tid < HS (dimension tid).
__device__ __forceinline__ float reduce_output(float (&o)[kDims]) {
  __shared__ float per_warp[kWarps][HS];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int e = 0; e < kDims; ++e)
#pragma unroll
    for (int off = kSlices; off < 32; off <<= 1) o[e] += __shfl_xor_sync(0xffffffffu, o[e], off);
  if (lane < kSlices)
#pragma unroll
    for (int e = 0; e < kDims; ++e) per_warp[warp][lane * kDims + e] = o[e];
  __syncthreads();
  float sum = 0.0f;
  if (threadIdx.x < HS)
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += per_warp[w][threadIdx.x];
  return sum;
}

// The chunk's scores, softmax statistics and unnormalised output (see the file's doc block).
template <typename KV>
__global__ void __launch_bounds__(kThreads)
    attention_decode_one_round_kernel(float* __restrict__ out, const float* q, const KvRings kv,
                                      const StepParams* __restrict__ step, float* __restrict__ partials,
                                      unsigned int* __restrict__ counters, int n_splits_max, float scale) {
  constexpr bool kScaled = KvType<KV>::dtype == ComputeDType::Int8;
  const int C = kv.n_embd;
  const size_t row_bytes = kv.row_bytes();
  const int h = blockIdx.x, split = blockIdx.y, tid = threadIdx.x;
  const int slice = tid % kSlices, row = tid / kSlices;  // row: this thread's first key in the chunk
  const int L = min(step->pos + 1, n_splits_max * kChunk);  // clamp: as attention_decode_kernel
  const KvRing ring = step->ring;
  const int n_splits = (L + kChunk - 1) / kChunk;
  if (split >= n_splits) return;  // whole block; never touches the counter
  const int s0 = split * kChunk;
  const size_t col = size_t(h) * HS + size_t(slice) * kDims;  // this thread's dimensions in a row

  // 1. Keys and values (kKeysPerThread x (K, V) slices): all but the newest position now; earlier
  //    steps wrote them. The newest slot (and q) come from the previous kernel: after the wait.
  Slice<KV> k[kKeysPerThread], v[kKeysPerThread];
#pragma unroll
  for (int i = 0; i < kKeysPerThread; ++i) {
    const int s = s0 + row + i * kKeysPerPass;
    k[i] = v[i] = Slice<KV>{};
    if (s < L - 1) {
      const size_t at = size_t(ring.slot(s));
      load_slice(k[i], kv_row(kv.k, at, row_bytes), col, C, h);
      load_slice(v[i], kv_row(kv.v, at, row_bytes), col, C, h);
    }
  }
  pdl_wait();
  pdl_allow_dependents();
#pragma unroll
  for (int i = 0; i < kKeysPerThread; ++i) {
    const int s = s0 + row + i * kKeysPerPass;
    if (s == L - 1) {
      const size_t at = size_t(ring.slot(s));
      load_slice(k[i], kv_row(kv.k, at, row_bytes), col, C, h);
      load_slice(v[i], kv_row(kv.v, at, row_bytes), col, C, h);
    }
  }
  float qf[kDims];  // q (fp32, kDims): two 16-byte loads
  *reinterpret_cast<float4*>(qf) = *reinterpret_cast<const float4*>(q + col);
  *reinterpret_cast<float4*>(qf + 4) = *reinterpret_cast<const float4*>(q + col + 4);

  // 2. Scores: each lane's partial dot product, summed over the key's kSlices lanes.
  float score[kKeysPerThread], m_local = -INFINITY;
#pragma unroll
  for (int i = 0; i < kKeysPerThread; ++i) {
    float f[kDims];
    unpack_slice(k[i], f);
    float acc = 0.0f;
#pragma unroll
    for (int e = 0; e < kDims; ++e) acc += qf[e] * f[e];
#pragma unroll
    for (int off = kSlices / 2; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if constexpr (kScaled) acc *= k[i].scale;
    score[i] = s0 + row + i * kKeysPerPass < L ? acc * scale : -INFINITY;
    m_local = fmaxf(m_local, score[i]);
  }
  const float m = block_max(m_local);  // finite: key s0 < L is in every live chunk

  // 3. Softmax weights and this thread's slice of the unnormalised output.
  float o[kDims] = {}, l_local = 0.0f;
#pragma unroll
  for (int i = 0; i < kKeysPerThread; ++i) {
    const float p = expf(score[i] - m);  // 0 for keys past L (score -inf)
    l_local += p;
    const float pv = kScaled ? p * v[i].scale : p;  // int8: the value's head scale, once per key
    float f[kDims];
    unpack_slice(v[i], f);
#pragma unroll
    for (int e = 0; e < kDims; ++e) o[e] += pv * f[e];
  }
  const float l = block_sum(slice == 0 ? l_local : 0.0f);  // each key once
  const float od = reduce_output(o);                       // dimension tid, for tid < HS

  if (n_splits == 1) {  // one block per head: no partials, no combine
    if (tid < HS) out[size_t(h) * HS + tid] = od / l;
    return;
  }
  float* part = partials + (size_t(h) * n_splits_max + split) * kPartial;  // (HS + 2)
  if (!publish_partial(part, od, m, l, &counters[h], n_splits)) return;
  combine_splits(out + size_t(h) * HS, partials + size_t(h) * n_splits_max * kPartial, n_splits);
  if (tid == 0) counters[h] = 0u;  // every block of this head has arrived: ready for the next launch
}

}  // namespace one_round

void check_decode_shape(const KvRings& kv, int head_dim) {
  if (head_dim != HS)
    throw Error("attention_decode: head_dim " + std::to_string(head_dim) + " is not supported (the CUDA kernels need 64)");
  if (kv.n_embd != kv.n_head * HS || !kv.k || !kv.v)
    throw Error("attention_decode: K/V rings of " + std::to_string(kv.n_embd) + " columns are not n_head x 64");
}

// Calls f(KV()) with the rings' storage type (the decode kernels are compiled per format).
template <typename F>
void with_kv_type(ComputeDType d, F&& f) {
  switch (d) {
    case ComputeDType::F32: f(float()); break;
    case ComputeDType::F16: f(__half()); break;
    case ComputeDType::BF16: f(__nv_bfloat16()); break;
    case ComputeDType::Int8: f(int8_t()); break;
  }
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

size_t attention_decode_partials(int n_head, int capacity) {
  static_assert(one_round::kChunk >= kChunk, "the one-round variant's partials fit the same buffer");
  return size_t(n_head) * max_splits(capacity) * kPartial;
}

void attention_decode(float* out, const float* q, const KvRings& kv, const StepParams* step, float* partials,
                      unsigned int* counters, int head_dim, int capacity, cudaStream_t stream, bool pdl) {
  check_decode_shape(kv, head_dim);
  const dim3 grid(kv.n_head, max_splits(capacity));
  with_kv_type(kv.dtype, [&](auto kv_type) {
    launch_kernel(pdl, attention_decode_kernel<decltype(kv_type)>, grid, dim3(kThreads), 0, stream, out, q, kv, step,
                  partials, counters, max_splits(capacity), 1.0f / sqrtf(float(HS)));
  });
}

void attention_decode_one_round(float* out, const float* q, const KvRings& kv, const StepParams* step,
                                float* partials, unsigned int* counters, int head_dim, int capacity,
                                cudaStream_t stream, bool pdl) {
  check_decode_shape(kv, head_dim);
  const int splits = one_round::max_splits(capacity);
  with_kv_type(kv.dtype, [&](auto kv_type) {
    launch_kernel(pdl, one_round::attention_decode_one_round_kernel<decltype(kv_type)>, dim3(kv.n_head, splits),
                  dim3(one_round::kThreads), 0, stream, out, q, kv, step, partials, counters, splits,
                  1.0f / sqrtf(float(HS)));
  });
}

void attention_decode_batch(float* out, const float* q, const KvRings& kv, const BatchRow* rows, int B,
                            const int* history, float* partials, unsigned int* counters, int head_dim, int capacity,
                            cudaStream_t stream) {
  check_decode_shape(kv, head_dim);
  const dim3 grid(kv.n_head, max_splits(capacity), B);
  with_kv_type(kv.dtype, [&](auto kv_type) {
    launch_kernel(false, attention_decode_batch_kernel<decltype(kv_type)>, grid, dim3(kThreads), 0, stream, out, q,
                  kv, rows, history, partials, counters, max_splits(capacity), capacity, 1.0f / sqrtf(float(HS)));
  });
}

}  // namespace gpt2::cuda
