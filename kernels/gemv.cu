// The decode step's matrix-vector products, with everything around them fused in.
//
//   a = in                                  or  a = LayerNorm(in + ln_pre_bias; ln_w, ln_b)
//   y[o] = sum_i W[o, i] a[i]               W (OC, IC) in T, a and y fp32
//   Store:    out[o]  = y[o] + bias[o]
//   Residual: out[o] += y[o] + bias[o]     (x += proj(att) + b: residual add fused)
//   Gelu:     out[o]  = gelu_new(y[o] + bias[o])
//   Qkv:      v = y[o] + bias[o]; the query (o < C) to out, the key and value straight into the
//             K/V ring at slot step->ring.slot(step->pos)   (K/V append fused)
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
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int R = 2;   // rows per warp at a time
constexpr int PF = 4;  // 16-byte chunks per lane and row requested before the input is staged
constexpr int kBlocksPerSm = 4;  // resident blocks per multiprocessor at <= 128 registers

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

template <typename T, GemvEpilogue EPI>
__device__ __forceinline__ void epilogue(const GemvParams<T>& p, int o, float y) {
  const float v = y + (p.bias ? p.bias[o] : 0.0f);
  if constexpr (EPI == GemvEpilogue::Store) {
    p.out[o] = v;
  } else if constexpr (EPI == GemvEpilogue::Residual) {
    p.out[o] += v;
  } else if constexpr (EPI == GemvEpilogue::Gelu) {
    p.out[o] = gelu_new(v);
  } else {  // Qkv
    if (o < p.C) {
      p.out[o] = v;
    } else {
      const size_t slot = size_t(p.step->ring.slot(p.step->pos));
      if (o < 2 * p.C)
        p.k_ring[slot * p.C + (o - p.C)] = from_f32<T>(v);
      else
        p.v_ring[slot * p.C + (o - 2 * p.C)] = from_f32<T>(v);
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

// a (IC, shared memory) = p.in, or LayerNorm(p.in + p.ln_pre_bias; p.ln_w, p.ln_b) with fp32
// statistics in two passes (like cpu::layernorm). The caller synchronizes before reading a.
template <typename T, bool LN>
__device__ __forceinline__ void stage_input(const GemvParams<T>& p, float* a) {
  const int IC = p.IC;
  if constexpr (LN) {
    float sum = 0.0f;
    for (int i = threadIdx.x; i < IC; i += kThreads) {
      const float v = p.in[i] + (p.ln_pre_bias ? p.ln_pre_bias[i] : 0.0f);
      a[i] = v;
      sum += v;
    }
    const float mean = block_sum(sum) / float(IC);
    float sq = 0.0f;
    for (int i = threadIdx.x; i < IC; i += kThreads) {  // each thread re-reads its own a[i]
      const float d = a[i] - mean;
      sq += d * d;
    }
    const float var = block_sum(sq) / float(IC);
    const float rstd = 1.0f / sqrtf(var + p.eps);
    for (int i = threadIdx.x; i < IC; i += kThreads) a[i] = (a[i] - mean) * rstd * p.ln_w[i] + p.ln_b[i];
  } else {
    for (int i = threadIdx.x; i < IC; i += kThreads) a[i] = p.in[i];
  }
}

// CUDA kernels -------------------------------------------------------------------------------

template <typename T, bool LN, GemvEpilogue EPI>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm) gemv_kernel(const GemvParams<T> p) {
  constexpr int VEC = Vec16<T>::N;
  extern __shared__ float4 smem4[];
  float* a = reinterpret_cast<float*>(smem4);  // (IC) the input vector, fp32

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int IC = p.IC, OC = p.OC;
  const int n_chunks = IC / VEC;
  const int o_first = (blockIdx.x * kWarps + warp) * R;  // this warp's first row group
  const int o_stride = gridDim.x * kWarps * R;

  // 1. Request the first row group's first chunks now: weights do not depend on the input.
  uint4 pre[R][PF];
  request_chunks(p, o_first, lane, pre);

  // With programmatic dependent launch this kernel may start while the previous one runs: the
  // weight loads above are independent of it; everything below reads or writes its results.
  // Once the previous kernel is complete, let the next one start its own weight loads.
  pdl_wait();
  pdl_allow_dependents();

  // 2. Stage the input (LayerNorm'd if asked) in shared memory.
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
      if (lane == r && o + r < OC) epilogue<T, EPI>(p, o + r, y);
    }
  }
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

// This block's largest key into state->best; the last block to arrive writes the token.
__device__ __forceinline__ void argmax_arrive(unsigned long long warp_key, int* token, ArgmaxState* state) {
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
  *token = argmax_key_row(atomicExch(&state->best, 0ull));  // read and reset for the next launch
  state->arrived = 0u;
}

template <typename T>
__global__ void __launch_bounds__(kThreads, kBlocksPerSm)
    gemv_argmax_kernel(const GemvParams<T> p, int* __restrict__ token, ArgmaxState* __restrict__ state) {
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
  argmax_arrive(best, token, state);
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

template <typename T, bool LN>
void launch(const GemvParams<T>& p, int blocks, size_t smem, cudaStream_t stream) {
  const dim3 grid(blocks), block(kThreads);
  switch (p.epilogue) {
    case GemvEpilogue::Store: launch_kernel(p.pdl, gemv_kernel<T, LN, GemvEpilogue::Store>, grid, block, smem, stream, p); break;
    case GemvEpilogue::Residual:
      launch_kernel(p.pdl, gemv_kernel<T, LN, GemvEpilogue::Residual>, grid, block, smem, stream, p);
      break;
    case GemvEpilogue::Gelu: launch_kernel(p.pdl, gemv_kernel<T, LN, GemvEpilogue::Gelu>, grid, block, smem, stream, p); break;
    case GemvEpilogue::Qkv: launch_kernel(p.pdl, gemv_kernel<T, LN, GemvEpilogue::Qkv>, grid, block, smem, stream, p); break;
  }
}

template <typename T>
void check_shape(const GemvParams<T>& p) {
  constexpr int VEC = Vec16<T>::N;
  if (p.IC <= 0 || p.OC <= 0 || p.IC % VEC != 0 || p.IC > kGemvMaxIC)
    throw Error("gemv: IC " + std::to_string(p.IC) + " must be a positive multiple of " + std::to_string(VEC) +
                " and at most " + std::to_string(kGemvMaxIC));
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

template <typename T>
void gemv(const GemvParams<T>& p, cudaStream_t stream) {
  check_shape(p);
  if (p.epilogue == GemvEpilogue::Qkv && (p.OC != 3 * p.C || !p.k_ring || !p.v_ring || !p.step))
    throw Error("gemv: the Qkv epilogue needs OC == 3C, both rings and the step");
  if (p.ln_w && !p.ln_b) throw Error("gemv: LayerNorm input needs ln_w and ln_b");
  const int row_groups = ceil_div(p.OC, kWarps * R);
  const int max_blocks = sm_count() * kBlocksPerSm;
  const int blocks = row_groups < max_blocks ? row_groups : max_blocks;
  const size_t smem = size_t(p.IC) * sizeof(float);  // + static < 48 KB: no attribute needed
  if (p.ln_w)
    launch<T, true>(p, blocks, smem, stream);
  else
    launch<T, false>(p, blocks, smem, stream);
  CUDA_CHECK_LAUNCH();
}

template <typename T>
void gemv_argmax(const GemvParams<T>& p, int* token, ArgmaxState* state, cudaStream_t stream) {
  if (p.epilogue != GemvEpilogue::Store || !p.ln_w || !p.ln_b || !token || !state)
    throw Error("gemv_argmax: needs the Store epilogue, a LayerNorm input, the token and the state");
  check_shape(p);
  const int row_groups = ceil_div(p.OC, kWarps * R), max_blocks = sm_count() * kBlocksPerSm;
  const int blocks = row_groups < max_blocks ? row_groups : max_blocks;
  launch_kernel(p.pdl, gemv_argmax_kernel<T>, dim3(blocks), dim3(kThreads), size_t(p.IC) * sizeof(float), stream, p,
                token, state);
  CUDA_CHECK_LAUNCH();
}

#define GPT2_INSTANTIATE(T)                                       \
  template void gemv<T>(const GemvParams<T>&, cudaStream_t); \
  template void gemv_argmax<T>(const GemvParams<T>&, int*, ArgmaxState*, cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
