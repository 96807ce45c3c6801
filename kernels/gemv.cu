// The decode step's matrix-vector products, with everything around them fused in.
//
//   a = in                                  or  a = LayerNorm(in + ln_pre_bias; ln_w, ln_b)
//   y[o] = sum_i W[o, i] a[i]               W (OC, IC) in T, a and y fp32
//   Store:    out[o]  = y[o] + bias[o]
//   Residual: out[o] += y[o] + bias[o]     (x += proj(att) + b: residual add fused)
//   Gelu:     out[o]  = gelu_new(y[o] + bias[o])
//   Qkv:      v = y[o] + bias[o]; the query (o < C) to out, the key and value straight into the
//             K/V ring at slot step->ring.slot(step->pos)   (K/V append fused), converted to
//             the ring's format (switched at run time: one uniform branch per output); an int8
//             ring's key and value go to fp32 staging instead, and kv_store_staged quantises
//             them (a head's scale needs its 64 values, which span this kernel's blocks)
//
// One token reads every weight once, so the step is bound by memory bandwidth: the kernel
// streams W with 16-byte loads and keeps several of them in flight per lane, and the weights
// of a warp's first rows are requested before the input is staged (they do not depend on the
// previous kernel), hiding the LayerNorm's latency behind the first loads.
//
// Thread layout: 128 threads (4 warps) per block; each warp owns R = 2 rows at a time, its 32
// lanes striding over the row in 16-byte chunks, then a warp-shuffle sum; the grid (at most
// 4 resident blocks per multiprocessor) strides over the rows. The input vector (IC fp32) is staged in
// shared memory once per block; with LayerNorm the block computes the row's fp32 mean and
// variance itself (two passes, like cpu::layernorm), so no separate LayerNorm kernel runs.
//
// Variants (GPT2_CUDA_VARIANTS, src/cuda/cuda_variants.h), chosen per launch by GemvParams:
//   prologue  gemv_kernel<..., PRO = true>: the bias of the warp's first rows, the K/V slot and
//             LayerNorm's w, b (and pending bias, copied to shared memory with cp.async) are
//             loaded BEFORE griddepcontrol.wait; after it the input is staged with 16-byte
//             cp.async copies all in flight at once (one DRAM/L2 round trip instead of one per
//             128 elements and parameter), and the LayerNorm passes run on shared memory only.
//   splitk    gemv_splitk_kernel (inputs without LayerNorm: the two projections back to C rows):
//             a block owns RS = 2 rows and its 4 warps split K; each lane holds up to KPL = 4
//             16-byte chunks per row, all requested before the wait, so a 3072 -> 768
//             projection has its whole 4.7 MB in flight at once (384 blocks); the lanes read
//             their own input slice straight from L2 (no shared-memory staging) and the warps'
//             sums meet in shared memory in a fixed order (deterministic).
//   l2        at its end the kernel prefetches the next kernel's matrix into L2
//             (prefetch.global.L2), and the launch may carry a persisting access-policy window
//             over the first bytes of W (the LM head).
#include <type_traits>

#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int R = 2;   // rows per warp at a time
constexpr int PF = 4;  // 16-byte chunks per lane and row requested before the input is staged
constexpr int kBlocksPerSm = 4;  // resident blocks per multiprocessor at <= 128 registers
constexpr int RS = 2;   // split-K: rows per block
constexpr int KPL = 4;  // split-K: 16-byte chunks per lane and row in one round

__device__ __forceinline__ uint4 load_weights(const void* p) { return __ldg(reinterpret_cast<const uint4*>(p)); }

// sum_e w[e] * a[e] over one 16-byte chunk of W; a is 16-byte aligned shared memory.
template <typename T>
__device__ __forceinline__ float dot_chunk(const uint4& wv, const float* a) {
  constexpr int N = Vec16<T>::N;
  float w[N];
  unpack16(wv, w, T());
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < N; e += 4) {
    const float4 av = *reinterpret_cast<const float4*>(a + e);
    s += w[e] * av.x;
    s += w[e + 1] * av.y;
    s += w[e + 2] * av.z;
    s += w[e + 3] * av.w;
  }
  return s;
}

// The same over a chunk of the input held in registers (split-K).
template <typename T>
__device__ __forceinline__ float dot_chunk_regs(const uint4& wv, const float (&a)[Vec16<T>::N]) {
  constexpr int N = Vec16<T>::N;
  float w[N];
  unpack16(wv, w, T());
  float s = 0.0f;
#pragma unroll
  for (int e = 0; e < N; ++e) s += w[e] * a[e];
  return s;
}

// The K/V ring slot of the decode step (Qkv epilogue; StepParams comes from a copy before the
// step, never from a kernel of the step, so the prologue variant may read it before the wait).
template <typename T>
__device__ __forceinline__ size_t qkv_slot(const GemvParams<T>& p) {
  return size_t(p.step->ring.slot(p.step->pos));
}

// Row o's result v = y + bias[o] to its destination; slot: qkv_slot(p) for Qkv.
template <typename T, GemvEpilogue EPI>
__device__ __forceinline__ void epilogue(const GemvParams<T>& p, int o, float v, size_t slot) {
  if constexpr (EPI == GemvEpilogue::Store) {
    p.out[o] = v;
  } else if constexpr (EPI == GemvEpilogue::Residual) {
    p.out[o] += v;
  } else if constexpr (EPI == GemvEpilogue::Gelu) {
    p.out[o] = gelu_new(v);
  } else {  // Qkv
    if (o < p.C) {
      p.out[o] = v;
    } else if (p.kv.dtype == ComputeDType::Int8) {
      p.kv_staged[o - p.C] = v;  // kv_store_staged quantises each head (its scale needs all 64)
    } else {
      const bool key = o < 2 * p.C;
      kv_store(kv_row(key ? p.kv.k : p.kv.v, slot, p.kv.row_bytes()), p.kv.dtype, o - (key ? p.C : 2 * p.C), v);
    }
  }
}

// pre[r][q] = chunk lane + 32 q of row o + r (zero past the matrix): the first PF chunks of
// each of a warp's R rows, in flight until the caller consumes them.
template <typename T>
__device__ __forceinline__ void request_chunks(const GemvParams<T>& p, int o, int lane, uint4 (&pre)[R][PF]) {
  constexpr int VEC = Vec16<T>::N;
  const int n_chunks = p.IC / VEC;
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int q = 0; q < PF; ++q) {
      const int k = lane + q * 32;
      pre[r][q] = (o + r < p.OC && k < n_chunks) ? load_weights(p.w + size_t(o + r) * p.IC + size_t(k) * VEC)
                                                 : make_uint4(0u, 0u, 0u, 0u);
    }
}

// a (IC, shared memory) = LayerNorm(in + pre; w, b) with fp32 statistics in two passes (like
// cpu::layernorm); pre may be null, `in` may be a itself. Each thread touches only its own
// elements; the caller synchronizes before reading a.
__device__ __forceinline__ void layernorm_into(float* a, const float* in, const float* pre, const float* w,
                                               const float* b, int IC, float eps) {
  float sum = 0.0f;
  for (int i = threadIdx.x; i < IC; i += kThreads) {
    const float v = in[i] + (pre ? pre[i] : 0.0f);
    a[i] = v;
    sum += v;
  }
  const float mean = block_sum(sum) / float(IC);
  float sq = 0.0f;
  for (int i = threadIdx.x; i < IC; i += kThreads) {  // each thread re-reads its own a[i]
    const float d = a[i] - mean;
    sq += d * d;
  }
  const float rstd = 1.0f / sqrtf(block_sum(sq) / float(IC) + eps);
  for (int i = threadIdx.x; i < IC; i += kThreads) a[i] = (a[i] - mean) * rstd * w[i] + b[i];
}

// a (IC, shared memory) = p.in, or LayerNorm(p.in + p.ln_pre_bias; p.ln_w, p.ln_b). The caller
// synchronizes before reading a.
template <typename T, bool LN>
__device__ __forceinline__ void stage_input(const GemvParams<T>& p, float* a) {
  if constexpr (LN)
    layernorm_into(a, p.in, p.ln_pre_bias, p.ln_w, p.ln_b, p.IC, p.eps);
  else
    for (int i = threadIdx.x; i < p.IC; i += kThreads) a[i] = p.in[i];
}

// Prologue variant, before the wait: LayerNorm's w, b and the pending bias (IC each, when set)
// copied to `params` (shared memory behind the input: w, b, pending bias) with 16-byte
// asynchronous copies; none of them depends on the previous kernel.
template <typename T>
__device__ __forceinline__ void stage_ln_params_async(const GemvParams<T>& p, float* params) {
  const int IC = p.IC;
  for (int i = 4 * threadIdx.x; i < IC; i += 4 * kThreads) {
    async_copy16(params + i, p.ln_w + i);
    async_copy16(params + IC + i, p.ln_b + i);
    if (p.ln_pre_bias) async_copy16(params + 2 * IC + i, p.ln_pre_bias + i);
  }
}

// Prologue variant, after the wait: a (IC) = p.in by 16-byte asynchronous copies, all in flight
// at once; with LayerNorm, then a = LayerNorm(a + pending bias) from shared memory only (the
// same two-pass fp32 statistics as stage_input). Each thread's passes touch only its own
// elements; the caller synchronizes before reading a.
template <typename T, bool LN>
__device__ __forceinline__ void stage_input_async(const GemvParams<T>& p, float* a) {
  const int IC = p.IC;
  for (int i = 4 * threadIdx.x; i < IC; i += 4 * kThreads) async_copy16(a + i, p.in + i);
  async_copy_wait_all();  // this thread's copies, the parameters' included
  if constexpr (LN) {
    __syncthreads();  // the parameters were copied by other threads
    layernorm_into(a, a, p.ln_pre_bias ? a + 3 * IC : nullptr, a + IC, a + 2 * IC, IC, p.eps);
  }
}

// Split-K: one round's weights of rows o, o + 1 (RS rows), chunks k0, k0 + 32, ... below k_end
// (KPL per lane; zero past the end).
template <typename T>
__device__ __forceinline__ void load_split_round(const GemvParams<T>& p, int o, int k0, int k_end,
                                                 uint4 (&wv)[RS][KPL]) {
  constexpr int VEC = Vec16<T>::N;
#pragma unroll
  for (int r = 0; r < RS; ++r)
#pragma unroll
    for (int j = 0; j < KPL; ++j) {
      const int k = k0 + 32 * j;
      wv[r][j] = (o + r < p.OC && k < k_end) ? load_weights(p.w + size_t(o + r) * p.IC + size_t(k) * VEC)
                                             : make_uint4(0u, 0u, 0u, 0u);
    }
}

// Split-K: acc[r] += this round's chunks of rows o + r against the input, which each lane reads
// for its own chunks (16-byte loads from L2: the previous kernel wrote it).
template <typename T>
__device__ __forceinline__ void dot_split_round(const GemvParams<T>& p, int k0, int k_end, const uint4 (&wv)[RS][KPL],
                                                float (&acc)[RS]) {
  constexpr int VEC = Vec16<T>::N;
  float a[KPL][VEC];
#pragma unroll
  for (int j = 0; j < KPL; ++j) {
    const int k = k0 + 32 * j;
#pragma unroll
    for (int e = 0; e < VEC; e += 4) {
      const float4 v = k < k_end ? *reinterpret_cast<const float4*>(p.in + size_t(k) * VEC + e)
                                 : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      a[j][e] = v.x;
      a[j][e + 1] = v.y;
      a[j][e + 2] = v.z;
      a[j][e + 3] = v.w;
    }
  }
#pragma unroll
  for (int r = 0; r < RS; ++r)
#pragma unroll
    for (int j = 0; j < KPL; ++j) acc[r] += dot_chunk_regs<T>(wv[r][j], a[j]);
}

// CUDA kernels -------------------------------------------------------------------------------

// y = W.a with the epilogue, rows across warps (today's kernel; PRO: the prologue variant).
// Longer than most functions here: the prefetch, the wait, the staging and the row loop share
// the registers that carry the first rows' weights across the wait.
template <typename T, bool LN, GemvEpilogue EPI, bool PRO>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) gemv_kernel(const GemvParams<T> p) {
  constexpr int VEC = Vec16<T>::N;
  extern __shared__ float4 smem4[];
  float* a = reinterpret_cast<float*>(smem4);  // (IC) the input vector, fp32 [PRO && LN: + w, b, pending bias]

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int IC = p.IC, OC = p.OC;
  const int n_chunks = IC / VEC;
  const int o_first = (blockIdx.x * kWarps + warp) * R;  // this warp's first row group
  const int o_stride = gridDim.x * kWarps * R;

  // 1. Request the first row group's first chunks now: weights do not depend on the input.
  uint4 pre[R][PF];
  request_chunks(p, o_first, lane, pre);
  // PRO: the rest of what does not depend on the previous kernel (lane r: row o_first + r's bias).
  float bias_first = 0.0f;
  size_t slot = 0;
  if constexpr (PRO) {
    if (lane < R && o_first + lane < OC && p.bias) bias_first = p.bias[o_first + lane];
    if constexpr (EPI == GemvEpilogue::Qkv) slot = qkv_slot(p);
    if constexpr (LN) stage_ln_params_async(p, a + IC);
  }

  // With programmatic dependent launch this kernel may start while the previous one runs: the
  // loads above are independent of it; everything below reads or writes its results.
  // Once the previous kernel is complete, let the next one start its own weight loads.
  pdl_wait();
  pdl_allow_dependents();

  // 2. Stage the input (LayerNorm'd if asked) in shared memory.
  if constexpr (PRO)
    stage_input_async<T, LN>(p, a);
  else
    stage_input<T, LN>(p, a);
  __syncthreads();

  // 3. Rows: o_first, o_first + o_stride, ... (warp-uniform loop: full-mask shuffles are safe).
  for (int o = o_first; o < OC; o += o_stride) {
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;
    int k = lane;
    if (o == o_first) {
#pragma unroll
      for (int q = 0; q < PF; ++q) {
        const int kk = lane + q * 32;
        if (kk < n_chunks)
#pragma unroll
          for (int r = 0; r < R; ++r) acc[r] += dot_chunk<T>(pre[r][q], a + size_t(kk) * VEC);
      }
      k = lane + PF * 32;
    }
#pragma unroll 2
    for (; k < n_chunks; k += 32) {
      uint4 wv[R];
#pragma unroll
      for (int r = 0; r < R; ++r)
        wv[r] = (o + r < OC) ? load_weights(p.w + size_t(o + r) * IC + size_t(k) * VEC) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] += dot_chunk<T>(wv[r], a + size_t(k) * VEC);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float y = warp_sum(acc[r]);
      if (lane == r && o + r < OC) {
        const float b = PRO && o == o_first ? bias_first : p.bias ? p.bias[o + r] : 0.0f;
        epilogue<T, EPI>(p, o + r, y + b, EPI == GemvEpilogue::Qkv && !PRO ? qkv_slot(p) : slot);
      }
    }
  }
  if (p.prefetch) prefetch_l2_range(p.prefetch, p.prefetch_bytes);  // l2: the next kernel's matrix
}

// y = W.a with the epilogue, K split across the block's warps (the splitk variant; input
// without LayerNorm). Block b owns rows b*RS + [0, RS), then + gridDim.x*RS, ...; warp w the
// chunks [w, w + 1) * ceil(IC / VEC / 4), its lanes KPL chunks 32 apart per round.
template <typename T, GemvEpilogue EPI>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) gemv_splitk_kernel(const GemvParams<T> p) {
  constexpr int VEC = Vec16<T>::N;
  __shared__ float partial[kWarps][RS];  // each warp's sum of each row
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n_chunks = p.IC / VEC;
  const int per_warp = (n_chunks + kWarps - 1) / kWarps;
  const int k_begin = warp * per_warp, k_end = min(n_chunks, k_begin + per_warp);
  const int o_first = blockIdx.x * RS, o_stride = gridDim.x * RS;

  // Before the wait: the first round of weights, the first rows' bias, the K/V slot.
  uint4 wv[RS][KPL];
  load_split_round(p, o_first, k_begin + lane, k_end, wv);
  const bool writer = warp == 0 && lane < RS;  // lane r of warp 0 finishes row o + r
  const float bias_first = writer && o_first + lane < p.OC && p.bias ? p.bias[o_first + lane] : 0.0f;
  const size_t slot = EPI == GemvEpilogue::Qkv ? qkv_slot(p) : 0;
  pdl_wait();
  pdl_allow_dependents();

  for (int o = o_first; o < p.OC; o += o_stride) {  // block-uniform
    float acc[RS] = {};
    bool loaded = o == o_first;
    for (int k0 = k_begin; k0 < k_end; k0 += 32 * KPL) {  // warp-uniform
      if (!loaded) load_split_round(p, o, k0 + lane, k_end, wv);
      loaded = false;
      dot_split_round(p, k0 + lane, k_end, wv, acc);
    }
#pragma unroll
    for (int r = 0; r < RS; ++r) {
      const float y = warp_sum(acc[r]);
      if (lane == 0) partial[warp][r] = y;
    }
    __syncthreads();
    if (writer && o + lane < p.OC) {
      float y = 0.0f;
#pragma unroll
      for (int w = 0; w < kWarps; ++w) y += partial[w][lane];
      const float b = o == o_first ? bias_first : p.bias ? p.bias[o + lane] : 0.0f;
      epilogue<T, EPI>(p, o + lane, y + b, slot);
    }
    __syncthreads();  // partial[] is reused by the next rows
  }
  if (p.prefetch) prefetch_l2_range(p.prefetch, p.prefetch_bytes);
}

// ---- the LM head with the argmax fused in (GPT2_CUDA_VARIANTS=lmhead) ----------------------------
//
//   out[o] = y[o] + bias[o] with a = LayerNorm(in + ln_pre_bias) (gemv<LN, Store>), and
//   *token = argmax_o out[o], the lowest o among equal maxima (sampler.h's greedy rule)
//
// Same thread layout as gemv_kernel. Software-pipelined: a warp requests its next row group's
// first PF chunks (for IC <= PF * 32 * VEC, 768 in fp16 / bf16, the whole rows) before it
// reduces the current group, so its loads stay in flight through the shuffles and the store.
// The argmax: each warp keeps the largest argmax_key() of its rows (every lane holds every sum
// after the butterfly), thread 0 takes the block's largest into one 64-bit atomicMax, and the
// last block to arrive (an arrival counter) writes the token and leaves the state zero again.

// (logit, row) packed so that the larger key is the larger logit, then the lower row: the float's
// bits made order-preserving, the row inverted. A NaN gets 0 and is never chosen (the CPU's `>`
// never picks one either). No -0 reaches it: sums that start from +0 never round to -0.
__device__ __forceinline__ unsigned long long argmax_key(float v, int o) {
  if (v != v) return 0ull;
  const unsigned int b = __float_as_uint(v);
  const unsigned int ordered = (b & 0x80000000u) ? ~b : (b | 0x80000000u);
  return (static_cast<unsigned long long>(ordered) << 32) | (0xFFFFFFFFu - unsigned(o));
}
__device__ __forceinline__ int argmax_key_row(unsigned long long key) {
  return key == 0ull ? 0 : int(0xFFFFFFFFu - unsigned(key & 0xFFFFFFFFull));  // all NaN: row 0, as the CPU
}

// This block's largest key into state->best; the last block to arrive writes the token (and,
// with `advance`, the next step's input: write_step_token).
__device__ __forceinline__ void argmax_arrive(unsigned long long warp_key, int* token, ArgmaxState* state,
                                              StepParams* advance) {
  __shared__ unsigned long long warp_best[kWarps];
  if ((threadIdx.x & 31) == 0) warp_best[threadIdx.x >> 5] = warp_key;
  __syncthreads();
  if (threadIdx.x != 0) return;
  unsigned long long best = 0ull;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) best = best > warp_best[w] ? best : warp_best[w];
  atomicMax(&state->best, best);
  __threadfence();  // the max is in before this block counts itself in
  if (atomicAdd(&state->arrived, 1u) != gridDim.x - 1) return;
  __threadfence();
  write_step_token(argmax_key_row(atomicExch(&state->best, 0ull)), token, advance);  // read, reset for the next launch
  state->arrived = 0u;
}

template <typename T>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    gemv_argmax_kernel(const GemvParams<T> p, int* __restrict__ token, ArgmaxState* __restrict__ state,
                       StepParams* __restrict__ advance) {
  constexpr int VEC = Vec16<T>::N;
  extern __shared__ float4 smem4[];
  float* a = reinterpret_cast<float*>(smem4);  // (IC) the LayerNorm'd input, fp32

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n_chunks = p.IC / VEC;
  const int o_first = (blockIdx.x * kWarps + warp) * R, o_stride = gridDim.x * kWarps * R;
  uint4 pre[R][PF];  // the current row group's first chunks, then the next group's
  request_chunks(p, o_first, lane, pre);
  pdl_wait();
  pdl_allow_dependents();
  stage_input<T, true>(p, a);
  __syncthreads();

  unsigned long long best = 0ull;  // this warp's largest argmax_key (the same in every lane)
  for (int o = o_first; o < p.OC; o += o_stride) {  // warp-uniform
    float acc[R] = {};
#pragma unroll
    for (int q = 0; q < PF; ++q)
      if (lane + q * 32 < n_chunks)
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] += dot_chunk<T>(pre[r][q], a + size_t(lane + q * 32) * VEC);
    for (int k = lane + PF * 32; k < n_chunks; k += 32)  // rows longer than the prefetch
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (o + r < p.OC)
          acc[r] += dot_chunk<T>(load_weights(p.w + size_t(o + r) * p.IC + size_t(k) * VEC), a + size_t(k) * VEC);
    request_chunks(p, o + o_stride, lane, pre);  // in flight during the reduction below
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const float v = warp_sum(acc[r]) + (p.bias && o + r < p.OC ? p.bias[o + r] : 0.0f);
      if (o + r < p.OC) {
        if (lane == r) p.out[o + r] = v;
        const unsigned long long key = argmax_key(v, o + r);
        best = key > best ? key : best;  // rows ascend: an equal key is never a lower row
      }
    }
  }
  if (p.prefetch) prefetch_l2_range(p.prefetch, p.prefetch_bytes);  // l2: the next kernel's matrix
  argmax_arrive(best, token, state, advance);
}

// ---- the batched decode step (gemv_batch, --parallel) ----------------------------------------
//
// Row b's output o is gemv_kernel's sum exactly: lane l adds dot_chunk(chunk k) for k = l,
// l + 32, ... in turn into its accumulator, then warp_sum; dot_chunk and the epilogue are the
// same functions. Only the layout around that differs: a warp's R rows are computed for all
// nb <= kBatchTile batch rows at once (each 16-byte weight chunk loaded once, used nb times),
// the input read from the (B, IC) buffer through L2 instead of shared memory (nb inputs of up
// to 3072 floats do not fit 48 KB), and a LayerNorm'd input staged first by
// layernorm_rows_kernel, which runs gemv's own layernorm_into with the same 128 threads.

// staged[b] = LayerNorm(in[b] + pre; w, b_ln): block b is batch row b.
__global__ void __launch_bounds__(kThreads) layernorm_rows_kernel(float* __restrict__ staged, const float* in,
                                                                  const float* pre, const float* w,
                                                                  const float* b_ln, int IC, float eps) {
  const size_t row = size_t(blockIdx.x) * IC;
  layernorm_into(staged + row, in + row, pre, w, b_ln, IC, eps);
}

// Row b's result v = y + bias[o] to its destination (gemv's epilogue on row b's vectors).
template <typename T, GemvEpilogue EPI>
__device__ __forceinline__ void batch_epilogue(const GemvBatchParams<T>& p, int b, int o, float v) {
  const BatchRow& row = p.rows[b];
  if constexpr (EPI == GemvEpilogue::Store) {
    p.out[size_t(p.out_by_seq ? row.seq : b) * p.OC + o] = v;
  } else if constexpr (EPI == GemvEpilogue::Residual) {
    p.out[size_t(b) * p.OC + o] += v;
  } else if constexpr (EPI == GemvEpilogue::Gelu) {
    p.out[size_t(b) * p.OC + o] = gelu_new(v);
  } else {  // Qkv
    const int C = p.C;
    const size_t slot = size_t(row.seq) * p.capacity + size_t(row.ring.slot(row.pos));  // cache row
    if (o < C) {
      p.out[size_t(b) * C + o] = v;
    } else if (p.kv.dtype == ComputeDType::Int8) {
      p.kv_staged[size_t(b) * 2 * C + (o - C)] = v;  // for kv_store_staged, as gemv's
    } else {
      const bool key = o < 2 * C;
      kv_store(kv_row(key ? p.kv.k : p.kv.v, slot, p.kv.row_bytes()), p.kv.dtype, o - (key ? C : 2 * C), v);
    }
  }
}

// Rows o_first, o_first + o_stride, ... of W for the batch rows [0, nb) (nb = p.B <= kBatchTile);
// a = the input rows (B, IC): p.in, or p.staged after LayerNorm.
template <typename T, GemvEpilogue EPI>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) gemv_batch_kernel(const GemvBatchParams<T> p,
                                                                            const float* a) {
  constexpr int VEC = Vec16<T>::N;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int IC = p.IC, OC = p.OC, nb = p.B;
  const int n_chunks = IC / VEC;
  const int o_first = (blockIdx.x * kWarps + warp) * R, o_stride = gridDim.x * kWarps * R;
  for (int o = o_first; o < OC; o += o_stride) {  // warp-uniform
    float acc[kBatchTile][R];
#pragma unroll
    for (int b = 0; b < kBatchTile; ++b)
#pragma unroll
      for (int r = 0; r < R; ++r) acc[b][r] = 0.0f;
    for (int k = lane; k < n_chunks; k += 32) {
      uint4 wv[R];
#pragma unroll
      for (int r = 0; r < R; ++r)
        wv[r] = (o + r < OC) ? load_weights(p.w + size_t(o + r) * IC + size_t(k) * VEC) : make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
      for (int b = 0; b < kBatchTile; ++b)
        if (b < nb)
#pragma unroll
          for (int r = 0; r < R; ++r) acc[b][r] += dot_chunk<T>(wv[r], a + size_t(b) * IC + size_t(k) * VEC);
    }
#pragma unroll
    for (int b = 0; b < kBatchTile; ++b) {
      if (b >= nb) break;  // warp-uniform
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float y = warp_sum(acc[b][r]);
        if (lane == r && o + r < OC) batch_epilogue<T, EPI>(p, b, o + r, y + (p.bias ? p.bias[o + r] : 0.0f));
      }
    }
  }
}

int sm_count() {
  static int n = 0;
  if (n == 0) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  }
  return n;
}

// Calls f(std::integral_constant<GemvEpilogue, e>) for the run-time epilogue e.
template <typename F>
void with_epilogue(GemvEpilogue e, F&& f) {
  switch (e) {
    case GemvEpilogue::Store: f(std::integral_constant<GemvEpilogue, GemvEpilogue::Store>()); break;
    case GemvEpilogue::Residual: f(std::integral_constant<GemvEpilogue, GemvEpilogue::Residual>()); break;
    case GemvEpilogue::Gelu: f(std::integral_constant<GemvEpilogue, GemvEpilogue::Gelu>()); break;
    case GemvEpilogue::Qkv: f(std::integral_constant<GemvEpilogue, GemvEpilogue::Qkv>()); break;
  }
}

bool aligned16(const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; }

// The prologue variant's shared memory (the input, and with LayerNorm w, b and the pending
// bias), or 0 when it cannot run: more than 48 KB, or a vector cp.async cannot copy.
template <typename T>
size_t prologue_smem(const GemvParams<T>& p) {
  if (!aligned16(p.in) || (p.ln_w && (!aligned16(p.ln_w) || !aligned16(p.ln_b))) ||
      (p.ln_pre_bias && !aligned16(p.ln_pre_bias)))
    return 0;
  const size_t vectors = p.ln_w ? (p.ln_pre_bias ? 4 : 3) : 1;
  const size_t bytes = vectors * size_t(p.IC) * sizeof(float);
  return bytes <= size_t(kGemvMaxIC) * sizeof(float) ? bytes : 0;
}

template <typename T, bool LN, bool PRO>
void launch_rows(const GemvParams<T>& p, const LaunchOptions& options, int blocks, size_t smem, cudaStream_t stream) {
  with_epilogue(p.epilogue, [&](auto epi) {
    launch_kernel(options, gemv_kernel<T, LN, decltype(epi)::value, PRO>, dim3(blocks), dim3(kThreads), smem, stream, p);
  });
}

template <typename T>
void launch_split_k(const GemvParams<T>& p, const LaunchOptions& options, cudaStream_t stream) {
  if (p.ln_w) throw Error("gemv: split_k takes an input without LayerNorm");
  if (!aligned16(p.in)) throw Error("gemv: split_k needs a 16-byte aligned input");
  const int row_groups = ceil_div(p.OC, RS), max_blocks = sm_count() * kBlocksPerSm;
  const int blocks = row_groups < max_blocks ? row_groups : max_blocks;
  with_epilogue(p.epilogue, [&](auto epi) {
    launch_kernel(options, gemv_splitk_kernel<T, decltype(epi)::value>, dim3(blocks), dim3(kThreads), 0, stream, p);
  });
}

template <typename T>
void check_shape(const GemvParams<T>& p) {
  constexpr int VEC = Vec16<T>::N;
  if (p.IC <= 0 || p.OC <= 0 || p.IC % VEC != 0 || p.IC > kGemvMaxIC)
    throw Error("gemv: IC " + std::to_string(p.IC) + " must be a positive multiple of " + std::to_string(VEC) +
                " and at most " + std::to_string(kGemvMaxIC));
  if (p.persist_bytes > size_t(p.OC) * p.IC * sizeof(T)) throw Error("gemv: the L2 window is larger than W");
}

// PDL and the l2 variant's persisting window over the first persist_bytes of W.
template <typename T>
LaunchOptions launch_options(const GemvParams<T>& p) {
  LaunchOptions options;
  options.pdl = p.pdl;
  options.persist = p.persist_bytes ? p.w : nullptr;
  options.persist_bytes = p.persist_bytes;
  return options;
}

// One tile of at most kBatchTile rows (p.B): stage its LayerNorm'd input, then the product.
template <typename T>
void launch_batch_tile(const GemvBatchParams<T>& p, cudaStream_t stream) {
  const float* a = p.in;
  if (p.ln_w) {
    layernorm_rows_kernel<<<p.B, kThreads, 0, stream>>>(p.staged, p.in, p.ln_pre_bias, p.ln_w, p.ln_b, p.IC, p.eps);
    CUDA_CHECK_LAUNCH();
    a = p.staged;
  }
  const int row_groups = ceil_div(p.OC, kWarps * R), max_blocks = sm_count() * kBlocksPerSm;
  const int blocks = row_groups < max_blocks ? row_groups : max_blocks;
  with_epilogue(p.epilogue, [&](auto epi) {
    launch_kernel(false, gemv_batch_kernel<T, decltype(epi)::value>, dim3(blocks), dim3(kThreads), 0, stream, p, a);
  });
  CUDA_CHECK_LAUNCH();
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void gemv(const GemvParams<T>& p, cudaStream_t stream) {
  check_shape(p);
  if (p.epilogue == GemvEpilogue::Qkv && (p.OC != 3 * p.C || !p.kv.k || !p.kv.v || p.kv.n_embd != p.C || !p.step ||
                                          (p.kv.dtype == ComputeDType::Int8 && !p.kv_staged)))
    throw Error("gemv: the Qkv epilogue needs OC == 3C, both rings (int8: and kv_staged) and the step");
  if (p.ln_w && !p.ln_b) throw Error("gemv: LayerNorm input needs ln_w and ln_b");
  const LaunchOptions options = launch_options(p);
  if (p.split_k) {
    launch_split_k(p, options, stream);
    CUDA_CHECK_LAUNCH();
    return;
  }
  const int row_groups = ceil_div(p.OC, kWarps * R);
  const int max_blocks = sm_count() * kBlocksPerSm;
  const int blocks = row_groups < max_blocks ? row_groups : max_blocks;
  const size_t pro_smem = p.prologue ? prologue_smem(p) : 0;
  const size_t smem = size_t(p.IC) * sizeof(float);  // + static < 48 KB: no attribute needed
  if (pro_smem && p.ln_w)
    launch_rows<T, true, true>(p, options, blocks, pro_smem, stream);
  else if (pro_smem)
    launch_rows<T, false, true>(p, options, blocks, pro_smem, stream);
  else if (p.ln_w)
    launch_rows<T, true, false>(p, options, blocks, smem, stream);
  else
    launch_rows<T, false, false>(p, options, blocks, smem, stream);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void gemv_argmax(const GemvParams<T>& p, int* token, ArgmaxState* state, cudaStream_t stream, StepParams* advance) {
  if (p.epilogue != GemvEpilogue::Store || !p.ln_w || !p.ln_b || !token || !state)
    throw Error("gemv_argmax: needs the Store epilogue, a LayerNorm input, the token and the state");
  check_shape(p);
  const int row_groups = ceil_div(p.OC, kWarps * R), max_blocks = sm_count() * kBlocksPerSm;
  const int blocks = row_groups < max_blocks ? row_groups : max_blocks;
  launch_kernel(launch_options(p), gemv_argmax_kernel<T>, dim3(blocks), dim3(kThreads), size_t(p.IC) * sizeof(float),
                stream, p, token, state, advance);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void gemv_batch(const GemvBatchParams<T>& p, cudaStream_t stream) {
  constexpr int VEC = Vec16<T>::N;
  if (p.IC <= 0 || p.OC <= 0 || p.IC % VEC != 0 || p.B < 1 || !p.rows || !p.in || !p.out)
    throw Error("gemv_batch: IC " + std::to_string(p.IC) + " must be a positive multiple of " + std::to_string(VEC) +
                ", with rows, input and output");
  if (p.ln_w && (!p.ln_b || !p.staged)) throw Error("gemv_batch: LayerNorm input needs ln_w, ln_b and staged");
  if (p.epilogue == GemvEpilogue::Qkv && (p.OC != 3 * p.C || !p.kv.k || !p.kv.v || p.kv.n_embd != p.C ||
                                          p.capacity < 1 || (p.kv.dtype == ComputeDType::Int8 && !p.kv_staged)))
    throw Error("gemv_batch: the Qkv epilogue needs OC == 3C, both caches (int8: and kv_staged) and the capacity");
  const int out_width = p.epilogue == GemvEpilogue::Qkv ? p.C : p.OC;  // the queries: (B, C)
  for (int b0 = 0; b0 < p.B; b0 += kBatchTile) {  // tiles of kBatchTile rows: W read once per tile
    GemvBatchParams<T> tile = p;
    tile.B = p.B - b0 < kBatchTile ? p.B - b0 : kBatchTile;
    tile.in = p.in + size_t(b0) * p.IC;
    if (p.staged) tile.staged = p.staged + size_t(b0) * p.IC;
    tile.rows = p.rows + b0;
    if (p.kv_staged) tile.kv_staged = p.kv_staged + size_t(b0) * 2 * p.C;
    if (!p.out_by_seq) tile.out = p.out + size_t(b0) * out_width;
    launch_batch_tile(tile, stream);
  }
}

#define GPT2_INSTANTIATE(T)                                       \
  template void gemv_batch<T>(const GemvBatchParams<T>&, cudaStream_t); \
  template void gemv<T>(const GemvParams<T>&, cudaStream_t); \
  template void gemv_argmax<T>(const GemvParams<T>&, int*, ArgmaxState*, cudaStream_t, StepParams*);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
