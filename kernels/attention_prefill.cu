// Causal self-attention for a block of n tokens (prompt prefill, --no-cache steps, the
// re-run after a context shift), reading keys and values through the K/V ring in its own format
// (kernels.h KvRings: fp32, fp16, bf16 or int8 times its head scale), widened to fp32 as a tile is
// staged in shared memory. The format is switched at run time, per element of a tile load: this
// kernel is compute-bound on the 64 x 64 tiles, so the uniform branch costs little, and it keeps
// the instantiations at (compute dtype x key tile) instead of x 4 formats.
//
// For query t (position p = pos + t) and head h, with HS = 64 and s over positions [0, p]:
//   out[t, h] = sum_s softmax_s(q[t,h] . K[slot(s),h] / sqrt(HS)) V[slot(s),h]
// computed flash-attention style: the keys are visited in tiles of BC = 64 and each query row
// keeps a running max m, running sum l and unnormalised output o (online softmax):
//   m' = max(m, max_j S_j);  l' = l e^(m - m') + sum_j e^(S_j - m');  o' = o e^(m - m') + sum_j e^(S_j - m') V_j
// so no n x n matrix ever exists; out = o / l at the end.
//
// Thread layout: grid (ceil(n / 64), NH); one block of 256 threads per (64-query tile, head).
// Thread (ty = tid / 16, tx = tid % 16) owns query rows ty*4 + i (i < 4) and, in each tile,
// key columns tx + 16 j (j < 4) of S and output columns tx + 16 j of O: a 4x4 register tile
// for both products. Row statistics are reduced over the 16 lanes that share ty (xor
// shuffles 8, 4, 2, 1 stay inside each half-warp). Shared memory (fp32, dynamic):
//   Qs[d][r] (HS x 68), Ks[d][c] (HS x KT+1), Vs[c][d] (KT x 64), Ps[c][r] (KT x 68)
// where KT, the key sub-tile, is 64 (67,840 bytes: above the 48 KB every device gives without
// opting in) or 32 (42,752 bytes), chosen by the host from the device's opt-in limit
// (attention_prefill_key_tile). With KT = 32 a tile's keys, then its values and probabilities,
// pass through shared memory in two halves; every score, softmax statistic and product is the
// same operation in the same order as with KT = 64, so the two give bit-identical results.
// The padding keeps the transposed stores and the strided reads free of bank conflicts, and
// the rows of Qs and Ps 16-byte aligned for float4 reads.
#include "device_common.cuh"
#include "kernels.h"

namespace gpt2::cuda {
namespace {

constexpr int HS = kHeadDim;  // 64
constexpr int BR = 64;        // queries per block
constexpr int BC = 64;        // keys per softmax tile
constexpr int kThreads = 256;
constexpr int QS_STRIDE = BR + 4;
constexpr int PS_STRIDE = BR + 4;
constexpr int QS_FLOATS = HS * QS_STRIDE;
static_assert(HS == 64 && BR == 64 && BC == 64 && kThreads == 256, "the 16 x 16 thread grid covers 64 x 64 tiles");
static_assert(QS_STRIDE % 4 == 0 && PS_STRIDE % 4 == 0, "float4 reads of Qs and Ps rows");

// The shared arrays for key sub-tile KT (64 or 32: BC / KT sub-tiles per softmax tile).
template <int KT>
struct SubTile {
  static_assert(KT == 64 || KT == 32, "a thread's key columns tx + 16 j split evenly into sub-tiles");
  static constexpr int N = BC / KT;     // sub-tiles per softmax tile
  static constexpr int J = KT / 16;     // a thread's key columns per sub-tile
  static constexpr int KS_STRIDE = KT + 1;
  static constexpr int KS_FLOATS = HS * KS_STRIDE;
  static constexpr int VS_FLOATS = KT * HS;
  static constexpr int PS_FLOATS = KT * PS_STRIDE;
  static constexpr size_t kSmemBytes = size_t(QS_FLOATS + KS_FLOATS + VS_FLOATS + PS_FLOATS) * sizeof(float);
  static_assert(QS_FLOATS % 4 == 0 && (QS_FLOATS + KS_FLOATS) % 4 == 0 && (QS_FLOATS + KS_FLOATS + VS_FLOATS) % 4 == 0,
                "every shared array starts 16-byte aligned");
};
constexpr size_t kDefaultSmemLimit = 48 * 1024;  // what a block gets without opting in
static_assert(SubTile<32>::kSmemBytes <= kDefaultSmemLimit, "the 32-key sub-tile runs on every device");

// CUDA kernels -------------------------------------------------------------------------------

// acc[i][j0 + j] += a[i] * b[16 j] (j < J) for J columns of a thread's 4 x 4 register tile: a is
// 4 consecutive rows (16-byte aligned shared memory), b the thread's columns, 16 apart (S = Q K^T
// a sub-tile at a time, O += P V).
template <int J>
__device__ __forceinline__ void tile_fma(float (&acc)[4][4], int j0, const float* a, const float* b) {
  const float4 av = *reinterpret_cast<const float4*>(a);
  const float aa[4] = {av.x, av.y, av.z, av.w};
  float bb[J];
#pragma unroll
  for (int j = 0; j < J; ++j) bb[j] = b[16 * j];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < J; ++j) acc[i][j0 + j] += aa[i] * bb[j];
}

// The query tile of queries [q0, q0 + BR) of head h, transposed: Qs[d][r]; rows past n are zero
// (never written out).
template <typename T>
__device__ __forceinline__ void load_query_tile(float* Qs, const T* qkv, int q0, int n, int h, int C) {
  const size_t C3 = size_t(3) * C;
  for (int idx = threadIdx.x; idx < BR * HS; idx += kThreads) {
    const int r = idx / HS, d = idx % HS, t = q0 + r;
    Qs[d * QS_STRIDE + r] = t < n ? to_f32(qkv[size_t(t) * C3 + size_t(h) * HS + d]) : 0.0f;
  }
}

// The keys (KEYS: transposed, Ks[d][c]) and / or values (VALUES: Vs[c][d]) of positions
// [s0, s0 + KT) of head h, read through the ring in its format (widened to fp32 here, int8
// times its head's scale); positions from n_keys on are zero.
template <int KT, bool KEYS, bool VALUES>
__device__ __forceinline__ void load_sub_tile(float* Ks, float* Vs, const KvRings& kv, const KvRing& ring, int s0,
                                              int n_keys, int h) {
  const size_t row_bytes = kv.row_bytes();
  for (int idx = threadIdx.x; idx < KT * HS; idx += kThreads) {
    const int c = idx / HS, d = idx % HS, s = s0 + c;
    float kval = 0.0f, vv = 0.0f;
    if (s < n_keys) {
      const size_t row = size_t(ring.slot(s));
      const int j = h * HS + d;
      if (KEYS) kval = kv_load(kv_row(kv.k, row, row_bytes), kv.dtype, kv.n_embd, j);
      if (VALUES) vv = kv_load(kv_row(kv.v, row, row_bytes), kv.dtype, kv.n_embd, j);
    }
    if (KEYS) Ks[d * SubTile<KT>::KS_STRIDE + c] = kval;
    if (VALUES) Vs[c * HS + d] = vv;
  }
}

// One tile's online-softmax step for a thread's 4 rows (positions p0 + i) and its 4 key
// columns (positions s0 + 16 j): masks (s > p or s >= n_keys), scales, and turns the scores sc
// into the tile's unnormalised probabilities, updating the running max m, sum l and the
// output o. The row statistics are reduced over the 16 lanes of a half-warp that share the rows.
__device__ __forceinline__ void online_softmax_update(float (&sc)[4][4], float (&m)[4], float (&l)[4],
                                                      float (&o)[4][4], int p0, int s0, int n_keys, float scale) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int p = p0 + i;  // this row's position: it sees keys s <= p
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int s = s0 + 16 * j;
      const float v = (s <= p && s < n_keys) ? sc[i][j] * scale : -INFINITY;
      sc[i][j] = v;
      tile_max = fmaxf(tile_max, v);
    }
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, off));
    const float m_new = fmaxf(m[i], tile_max);
    const bool none = m_new == -INFINITY;  // no visible key yet (cannot happen; kept NaN-safe)
    const float alpha = none ? 1.0f : expf(m[i] - m_new);
    float row_sum = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const float pj = none ? 0.0f : expf(sc[i][j] - m_new);
      sc[i][j] = pj;
      row_sum += pj;
    }
#pragma unroll
    for (int off = 8; off > 0; off >>= 1) row_sum += __shfl_xor_sync(0xffffffffu, row_sum, off);
    l[i] = l[i] * alpha + row_sum;
    m[i] = m_new;
#pragma unroll
    for (int j = 0; j < 4; ++j) o[i][j] *= alpha;
  }
}

template <typename T, int KT>
__global__ void __launch_bounds__(kThreads)
    attention_prefill_kernel(T* __restrict__ out, const T* __restrict__ qkv, const KvRings kv, int n, int pos,
                             KvRing ring, float scale) {
  const int C = kv.n_embd;
  using Sub = SubTile<KT>;
  extern __shared__ float4 smem4[];
  float* Qs = reinterpret_cast<float*>(smem4);  // (HS, QS_STRIDE): Qs[d][r]
  float* Ks = Qs + QS_FLOATS;                    // (HS, KT + 1): Ks[d][c]
  float* Vs = Ks + Sub::KS_FLOATS;               // (KT, HS): Vs[c][d]
  float* Ps = Vs + Sub::VS_FLOATS;               // (KT, PS_STRIDE): Ps[c][r]

  const int q0 = blockIdx.x * BR;  // first query (token index) of this block
  const int h = blockIdx.y;
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;

  load_query_tile(Qs, qkv, q0, n, h, C);

  float o[4][4], m[4], l[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) o[i][j] = 0.0f;
  }

  // Keys [0, n_keys) are visible to at least one query row of this block. Every row sees key 0,
  // so after the first tile each row's running max is finite.
  const int n_keys = min(pos + q0 + BR, pos + n);
  for (int k0 = 0; k0 < n_keys; k0 += BC) {
    // S = Q K^T for this thread's 4 x 4 tile; sub-tile u holds its key columns j = u J + jj.
    float sc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) sc[i][j] = 0.0f;
#pragma unroll
    for (int u = 0; u < Sub::N; ++u) {
      __syncthreads();  // the previous readers of Ks / Vs / Ps are done (and Qs is stored)
      // One sub-tile: its values come along now, as one round of loads.
      load_sub_tile<KT, true, Sub::N == 1>(Ks, Vs, kv, ring, k0 + u * KT, n_keys, h);
      __syncthreads();
#pragma unroll 8
      for (int d = 0; d < HS; ++d)
        tile_fma<Sub::J>(sc, u * Sub::J, &Qs[d * QS_STRIDE + ty * 4], &Ks[d * Sub::KS_STRIDE + tx]);
    }

    // Mask, scale, online softmax update; sc becomes P.
    online_softmax_update(sc, m, l, o, pos + q0 + ty * 4, k0 + tx, n_keys, scale);

    // O += P V for this thread's rows and output columns tx + 16 j, KT keys at a time.
#pragma unroll
    for (int u = 0; u < Sub::N; ++u) {
      if (Sub::N > 1) {
        __syncthreads();  // the readers of Ks, or of the previous Vs / Ps, are done
        load_sub_tile<KT, false, true>(Ks, Vs, kv, ring, k0 + u * KT, n_keys, h);
      }
      // P to shared memory, transposed (Ps[c][r]) for float4 reads of 4 rows.
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int jj = 0; jj < Sub::J; ++jj) Ps[(tx + 16 * jj) * PS_STRIDE + ty * 4 + i] = sc[i][u * Sub::J + jj];
      __syncthreads();
#pragma unroll 8
      for (int c = 0; c < KT; ++c) tile_fma<4>(o, 0, &Ps[c * PS_STRIDE + ty * 4], &Vs[c * HS + tx]);
    }
  }

#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int t = q0 + ty * 4 + i;
    if (t < n) {
      const float inv = 1.0f / l[i];
      T* orow = out + size_t(t) * C + size_t(h) * HS;  // (HS)
#pragma unroll
      for (int j = 0; j < 4; ++j) orow[tx + 16 * j] = from_f32<T>(o[i][j] * inv);
    }
  }
}

}  // namespace

// kernel launchers ---------------------------------------------------------------------------

size_t attention_prefill_smem_bytes(int key_tile) {
  if (key_tile == 64) return SubTile<64>::kSmemBytes;
  if (key_tile == 32) return SubTile<32>::kSmemBytes;
  throw Error("attention_prefill: key tile " + std::to_string(key_tile) + " is not 64 or 32");
}

int attention_prefill_key_tile(size_t smem_optin) {
  return smem_optin >= SubTile<64>::kSmemBytes ? 64 : 32;
}

template <typename T>
void attention_prefill(T* out, const T* qkv, const KvRings& kv, int n, int pos, const KvRing& ring, int head_dim,
                       int key_tile, cudaStream_t stream) {
  const int n_head = kv.n_head;
  if (head_dim != HS)
    throw Error("attention_prefill: head_dim " + std::to_string(head_dim) + " is not supported (the CUDA kernels need 64)");
  if (n < 1 || pos < 0 || pos + n > ring.capacity)
    throw Error("attention_prefill: " + std::to_string(n) + " tokens at position " + std::to_string(pos) +
                " do not fit a ring of " + std::to_string(ring.capacity));
  const size_t smem = attention_prefill_smem_bytes(key_tile);
  const auto kernel = key_tile == 64 ? attention_prefill_kernel<T, 64> : attention_prefill_kernel<T, 32>;
  // Above 48 KB a block needs the opt-in; set on every launch (a host-side call), so it holds on
  // whichever device and context this launch runs, and fails here where the device has less.
  if (smem > kDefaultSmemLimit)
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(ceil_div(n, BR), n_head);
  if (kv.n_embd != n_head * HS || !kv.k || !kv.v) throw Error("attention_prefill: the K/V rings' shape is not n_head x 64");
  kernel<<<grid, kThreads, smem, stream>>>(out, qkv, kv, n, pos, ring, 1.0f / sqrtf(float(HS)));
  CUDA_CHECK_LAUNCH();
}

#define GPT2_INSTANTIATE(T)                                                                            \
  template void attention_prefill<T>(T*, const T*, const KvRings&, int, int, const KvRing&, int, int, cudaStream_t);
GPT2_FOR_EACH_COMPUTE_TYPE(GPT2_INSTANTIATE)
#undef GPT2_INSTANTIATE

}  // namespace gpt2::cuda
