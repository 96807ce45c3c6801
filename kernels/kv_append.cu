// The qkv bias and the K/V append into the per-layer ring (prefill / --no-cache path).
//
//   j <  C:  qkv[t, j] += bias[j]                               (the query, in place)
//   j < 2C:  K ring row slot(pos + t), value j - C  = qkv[t, j] + bias[j]
//   j < 3C:  V ring row slot(pos + t), value j - 2C = qkv[t, j] + bias[j]
//   qkv (n, 3C) in T; the rings (capacity rows) in their own format (kernels.h KvRings,
//   engine/kv_format.h): fp32 / fp16 / bf16 converted, int8 quantised per head with the head's
//   max |x| / 127 as its scale. slot() is KvRing::slot, the index rule both backends share
//   (src/engine/kv_ring.h), so a context shift only moves ring.start.
//
// Thread layout: one block per token row, 256 threads: the queries strided over C, then one
// head (64 values: 2 per lane) per warp and turn, so int8's max |x| is one warp reduction.
// (The decode step fuses this into the qkv matrix-vector kernel: gemv.cu, epilogue Qkv; for
// int8 rings that epilogue stages the key and value in fp32 and kv_store_staged, one block of
// 2 NH warp-turns, quantises them: one extra launch per layer and 2C fp32 written and read.)
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

// Block t: token t. Its queries in place (all threads), then its keys and values, one head per
// warp and turn: unit u < 2 NH is the key (u < NH) or value of head u % NH.
template <typename T>
__global__ void qkv_bias_kv_append_kernel(T* __restrict__ qkv, const float* __restrict__ bias, KvRings kv, int pos,
                                          KvRing ring) {
  const int t = blockIdx.x, C = kv.n_embd, NH = kv.n_head;
  T* row = qkv + size_t(t) * 3 * C;                 // (3C)
  const size_t slot = size_t(ring.slot(pos + t));  // ring row of this token
  if (bias)
    for (int j = threadIdx.x; j < C; j += blockDim.x) row[j] = from_f32<T>(to_f32(row[j]) + bias[j]);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  for (int u = warp; u < 2 * NH; u += n_warps) {
    const int h = u % NH, j = (u < NH ? C : 2 * C) + h * kHeadDim + lane;  // this lane's column of qkv
    const float x0 = to_f32(row[j]) + (bias ? bias[j] : 0.0f);
    const float x1 = to_f32(row[j + 32]) + (bias ? bias[j + 32] : 0.0f);
    kv_store_head(kv_row(u < NH ? kv.k : kv.v, slot, kv.row_bytes()), kv.dtype, C, h, x0, x1);
  }
}

// Block b: row b of staged (2C) into its ring row, one head per warp and turn (as above).
__global__ void kv_store_staged_kernel(KvRings kv, const float* __restrict__ staged, const StepParams* step,
                                       const BatchRow* rows, int capacity) {
  const int b = blockIdx.x, C = kv.n_embd, NH = kv.n_head;
  const size_t slot = step ? size_t(step->ring.slot(step->pos))
                           : size_t(rows[b].seq) * capacity + size_t(rows[b].ring.slot(rows[b].pos));
  const float* x = staged + size_t(b) * 2 * C;  // (2C)
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  for (int u = warp; u < 2 * NH; u += n_warps) {
    const int h = u % NH, j = (u < NH ? 0 : C) + h * kHeadDim + lane;
    kv_store_head(kv_row(u < NH ? kv.k : kv.v, slot, kv.row_bytes()), kv.dtype, C, h, x[j], x[j + 32]);
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

void check_kv_rings(const KvRings& kv, const char* who) {
  if (!kv.k || !kv.v || kv.n_head < 1 || kv.n_embd != kv.n_head * kHeadDim)
    throw Error(std::string(who) + ": K/V rings of " + std::to_string(kv.n_embd) + " columns and " +
                std::to_string(kv.n_head) + " heads are not supported (the CUDA kernels need heads of 64)");
}

template <typename T>
void qkv_bias_kv_append(T* qkv, const float* bias, const KvRings& kv, int n, int pos, const KvRing& ring,
                        cudaStream_t stream) {
  check_kv_rings(kv, "qkv_bias_kv_append");
  qkv_bias_kv_append_kernel<T><<<n, kThreads, 0, stream>>>(qkv, bias, kv, pos, ring);
  CUDA_CHECK_LAUNCH();
}

void kv_store_staged(const KvRings& kv, const float* staged, int B, const StepParams* step, const BatchRow* rows,
                     int capacity, cudaStream_t stream) {
  check_kv_rings(kv, "kv_store_staged");
  if (B < 1 || (!step && !rows) || (step && B != 1)) throw Error("kv_store_staged: needs B = 1 with a step, or rows");
  kv_store_staged_kernel<<<B, kThreads, 0, stream>>>(kv, staged, step, rows, capacity);
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
  template void qkv_bias_kv_append<T>(T*, const float*, const KvRings&, int, int, const KvRing&, cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
