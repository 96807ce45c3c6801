#include "cpu/cpu_fast.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <iterator>
#include <cmath>
#include <string>

#include "base/error.h"
#include "cpu/cpu_ops.h"
#include "cpu/kv_simd.h"
#include "cpu/row_shares.h"
#include "engine/kv_format.h"
#ifdef GPT2_HAVE_DNNL
#include <dnnl.h>
#endif

namespace gpt2::fast {
namespace {

constexpr int kChunk = 64;  // rows per dot_rows call: their results fit on the stack

// The calling thread's share [r0, r1) of n rows, cut at multiples of 4 (dot_rows' unit).
void thread_range(int n, int* r0, int* r1) {
  const long nt = omp_get_num_threads(), id = omp_get_thread_num(), units = (n + 3) / 4;
  *r0 = int(std::min<long>(n, units * id / nt * 4));
  *r1 = int(std::min<long>(n, units * (id + 1) / nt * 4));
}

// Inputs per dot_rows_batch call: their results for kChunk rows fit on the stack.
constexpr int kBatchTile = 16;

// Row o's columns [c0, c1) from y[r - c0] = (W x)[r]: + bias, then the epilogue e.
void apply_epilogue(float* o, const float* y, const float* bias, Epilogue e, int c0, int c1) {
  for (int r = c0; r < c1; ++r) {
    const float v = y[r - c0] + (bias ? bias[r] : 0.0f);
    if (e == Epilogue::AddTo) o[r] += v;
    else o[r] = v;
  }
  if (e == Epilogue::Gelu) simd::gelu(o + c0, c1 - c0);
}

// Up to kBatchTile inputs quantised by the Q8 rule, by one thread for its own use (a row of IC
// values against all the rows of weights it takes).
struct QuantisedInputs {
  int8_t q[kBatchTile][simd::kQ8MaxCols];
  float s[kBatchTile][simd::kQ8MaxCols / simd::kQ8Block];

  void quantise(const float* x, int nb, int cols) {
    for (int b = 0; b < nb; ++b) simd::quantize_q8_row(x + long(b) * cols, cols, q[b], s[b]);
  }
};

// Rows [r0, r1) of nb <= kBatchTile inputs' products with a Q8 matrix, the inputs quantised.
void gemv_rows_q8(float* out, const QuantisedInputs& in, int nb, const WeightView& w, const float* bias, Epilogue e,
                  int r0, int r1) {
  float y[kChunk];
  for (int c0 = r0; c0 < r1; c0 += kChunk) {
    const int c1 = std::min(r1, c0 + kChunk);
    for (int b = 0; b < nb; ++b) {
      simd::dot_rows_q8(w, in.q[b], in.s[b], c0, c1, y);
      apply_epilogue(out + long(b) * w.rows, y, bias, e, c0, c1);
    }
  }
}

// gemv_range for Q8 weights: each tile of inputs quantised once, then its rows.
void gemv_range_q8(float* out, const float* x, int B, const WeightView& w, const float* bias, Epilogue e, int r0,
                   int r1) {
  QuantisedInputs in;
  for (int b0 = 0; b0 < B; b0 += kBatchTile) {
    const int nb = std::min(B - b0, kBatchTile);
    in.quantise(x + long(b0) * w.cols, nb, w.cols);
    gemv_rows_q8(out + long(b0) * w.rows, in, nb, w, bias, e, r0, r1);
  }
}

// Rows [r0, r1) of the matrix-vector products of B inputs x (B, IC) with their epilogue (see
// Epilogue), out (B, OC). Each input's results are those of B = 1 (dot_rows_batch).
void gemv_range(float* out, const float* x, int B, const WeightView& w, const float* bias, Epilogue e, int r0,
                int r1) {
  if (w.type == simd::WType::Q8) return gemv_range_q8(out, x, B, w, bias, e, r0, r1);
  float y[kBatchTile * kChunk];
  for (int c0 = r0; c0 < r1; c0 += kChunk) {
    const int c1 = std::min(r1, c0 + kChunk);
    for (int b0 = 0; b0 < B; b0 += kBatchTile) {
      const int nb = std::min(B - b0, kBatchTile);
      simd::dot_rows_batch(w, x + long(b0) * w.cols, w.cols, nb, c0, c1, y, kChunk);
      for (int b = 0; b < nb; ++b) apply_epilogue(out + long(b0 + b) * w.rows, y + b * kChunk, bias, e, c0, c1);
    }
  }
}

// Attention is blocked: a tile of kQueryTile queries of one head runs over the keys kKeyTile at
// a time, so each K/V tile (2 x 64 x head_dim floats) is read once per query tile and reused
// from L1/L2 by its queries. Key tiles start at multiples of kKeyTile from position 0. Every
// (query, head) is computed alone by one rule, whatever T, the queries or heads beside it, or
// the thread: each key tile's partial softmax (its max score m_t, l_t = sum exp(s - m_t), o_t =
// sum exp(s - m_t) v) by the loops of kv_simd.h, then the partials folded in position order
// (fold_tile). No score matrix: one row of kKeyTile scores per head per thread. The rows path
// folds each tile's partial as soon as it has it; a decode step spreads its key tiles over the
// threads, each reading whole K/V rows in position order (two threads each reading half of
// every row stream at half the rate, measured on the AMD EPYC), keeps the partials, then folds.
constexpr int kQueryTile = 16, kKeyTile = 64;
// attention_rows() takes its rows this many at a time (a multiple of kQueryTile): the partials
// of that many rows' key tiles are kept at once (3.2 MB for GPT-2 124M at context 1024).
constexpr int kPartialRows = 64;

// One thread's attention scratch, carved from attention_scratch_floats(head_dim) floats.
struct AttentionScratch {
  float* score;  // (kMaxKvHeads, kKeyTile) one key tile's scores, then weights, per head
  float* m;      // (kQueryTile) the rows path's running max per query
  float* l;      // (kQueryTile) the rows path's running sum per query
  float* acc;    // (kMaxKvHeads, head_dim) kv_weighted_sum's chains
  float* part;   // (head_dim + 2) the rows path's partial of one key tile, one head: o, m, l

  AttentionScratch(float* p, int head_dim)
      : score(p), m(score + simd::kMaxKvHeads * kKeyTile), l(m + kQueryTile), acc(l + kQueryTile),
        part(acc + long(simd::kMaxKvHeads) * head_dim) {}
};

// Where a key tile's partial for the heads of one query lives: o (heads, head_dim), m and l
// (heads). In the rows path, AttentionScratch::part; in a decode step, one block of the partials
// buffer per (row, tile), heads [0, n_head), offset to the first head of the call.
struct TilePartial {
  float* o;
  float* m;
  float* l;
};

struct AttentionShape {
  const KvRing& ring;
  int pos;          // position of query 0
  int C, head_dim;  // the K/V ring's row width; one head's
  ComputeDType kv_type;
  size_t row_bytes;  // kv_row_bytes(kv_type, C, n_head): one slot
  float scale;       // 1 / sqrt(head_dim)
  const KvHistory& history;

  // Offset in bytes of position s's K/V row from k_ring / v_ring: its slot, in its owner's ring.
  long row_offset(int s) const {
    const long own = long(ring.slot(s)) * long(row_bytes);
    return history.owner ? own + (history.owner[s] - history.self) * history.seq_stride : own;
  }
  simd::KvHead heads(int h0, int h1) const { return {kv_type, C, h0, head_dim, h1 - h0}; }
};

AttentionShape make_shape(const KvRing& ring, int pos, int n_head, int head_dim, ComputeDType kv_type,
                          const KvHistory& history) {
  const int C = n_head * head_dim;
  return {ring, pos, C, head_dim, kv_type, kv_row_bytes(kv_type, C, n_head), 1.0f / std::sqrt(float(head_dim)),
          history};
}

// One key tile's partial softmax for one query and the heads kh (their rows k[j], v[j] in the
// rings, n of them): per head g, p.m[g] = the tile's max score, p.l[g] = sum_j exp(score_j -
// p.m[g]) and p.o + g * head_dim = sum_j exp(score_j - p.m[g]) v_j; q holds the query's heads.
void tile_partial(const float* q, const uint8_t* const* k, const uint8_t* const* v, int n, const simd::KvHead& kh,
                  float scale, const AttentionScratch& s, const TilePartial& p) {
  simd::kv_dots(q, k, n, kh, scale, s.score);  // (heads, n)
  for (int g = 0; g < kh.heads; ++g) {
    float* score = s.score + g * n;
    float tile_max = -INFINITY;
    for (int j = 0; j < n; ++j) tile_max = std::max(tile_max, score[j]);
    p.m[g] = tile_max;
    p.l[g] = simd::exp_shifted(score, n);  // score[j] = exp(score[j] - tile_max)
  }
  std::fill_n(p.o, long(kh.heads) * kh.head_dim, 0.0f);
  simd::kv_weighted_sum(p.o, s.score, v, n, kh, s.acc);
}

// Folds the next key tile's partial (mt, lt, ot) of one (query, head) into its running state (m,
// l, o) over the tiles before it; the first tile (m = -inf) is taken as it is. Every path folds
// with this, in position order.
void fold_tile(float* m, float* l, float* o, float mt, float lt, const float* ot, int head_dim) {
  if (*m == -INFINITY) {
    *m = mt;
    *l = lt;
    std::copy_n(ot, head_dim, o);
    return;
  }
  const float new_max = std::max(*m, mt), a = std::exp(*m - new_max), b = std::exp(mt - new_max);
  *l = *l * a + lt * b;
  if (a != 1.0f) simd::scale(o, a, head_dim);
  simd::axpy(o, b, ot, head_dim);
  *m = new_max;
}

// The rows of positions [s0, s1) (at most kKeyTile): k[s - s0], v[s - s0].
void tile_rows(const uint8_t* k_ring, const uint8_t* v_ring, const AttentionShape& a, int s0, int s1,
               const uint8_t** k, const uint8_t** v) {
  for (int s = s0; s < s1; ++s) {
    const long row = a.row_offset(s);
    k[s - s0] = k_ring + row;
    v[s - s0] = v_ring + row;
  }
}

// Head h's output for queries [t0, t1): out rows t0..t1-1, columns h * head_dim...
void attend_query_tile(float* out, const float* qkv, const uint8_t* k_ring, const uint8_t* v_ring,
                       const AttentionShape& a, int h, int t0, int t1, const AttentionScratch& s) {
  const int C = a.C, hd = a.head_dim, last = a.pos + t1 - 1;  // the last position any query here sees
  std::fill_n(s.m, t1 - t0, -INFINITY);
  std::fill_n(s.l, t1 - t0, 0.0f);
  const TilePartial p{s.part, s.part + hd, s.part + hd + 1};  // one head's
  const uint8_t* k[kKeyTile];  // the tile's rows (first byte), in position order
  const uint8_t* v[kKeyTile];
  for (int s0 = 0; s0 <= last; s0 += kKeyTile) {
    const int s1 = std::min(last + 1, s0 + kKeyTile);
    tile_rows(k_ring, v_ring, a, s0, s1, k, v);
    for (int t = t0; t < t1; ++t) {
      const int n = std::min(s1, a.pos + t + 1) - s0;  // causal: this tile's keys query t sees
      if (n <= 0) continue;
      tile_partial(qkv + long(t) * 3 * C + h * hd, k, v, n, a.heads(h, h + 1), a.scale, s, p);
      fold_tile(&s.m[t - t0], &s.l[t - t0], out + long(t) * C + h * hd, *p.m, *p.l, p.o, hd);
    }
  }
  for (int t = t0; t < t1; ++t) simd::scale(out + long(t) * C + h * hd, 1.0f / s.l[t - t0], hd);
}

// A decode step's partials: per (row, key tile) a block of o (C), m (n_head), l (n_head), rows
// of `tiles` blocks. The block of row b's tile t, from head h0 on.
TilePartial partial_block(float* partials, int b, int t, int tiles, int n_head, int hd, int h0) {
  const int C = n_head * hd;
  float* p = partials + (long(b) * tiles + t) * (C + 2 * n_head);
  return {p + h0 * hd, p + C + h0, p + C + n_head + h0};
}

long partial_block_floats(int n_head, int hd) { return long(n_head) * (hd + 2); }

// Key tile t's partials of heads [h0, h1) (at most kMaxKvHeads) for the rows [b0, b1) of
// attention_rows() that see it, into their blocks: the rows take the tile in turn (rows that
// share a history read a shared tile from cache).
void tile_partials_of_rows(float* partials, int tiles, const float* qkv, const AttentionRow* rows, int b0, int b1,
                           int t, int h0, int h1, int n_head, int hd, ComputeDType kv_type, const AttentionScratch& s) {
  const int C = n_head * hd, s0 = t * kKeyTile;
  const uint8_t* k[kKeyTile];
  const uint8_t* v[kKeyTile];
  for (int b = b0; b < b1; ++b) {
    const AttentionRow& r = rows[b];
    if (r.pos < s0) continue;
    const AttentionShape a = make_shape(r.ring, r.pos, n_head, hd, kv_type, r.history);
    const int s1 = std::min(r.pos + 1, s0 + kKeyTile);
    tile_rows(r.k_ring, r.v_ring, a, s0, s1, k, v);
    tile_partial(qkv + long(b) * 3 * C + h0 * hd, k, v, s1 - s0, a.heads(h0, h1), a.scale, s,
                 partial_block(partials, b, t, tiles, n_head, hd, h0));
  }
}

// Row b's head h (out (B, C)): the partials of the key tiles it sees folded in position order,
// then normalised.
void fold_row_head(float* out, float* partials, int tiles, int b, int pos, int h, int n_head, int hd) {
  float m = -INFINITY, l = 0.0f;
  float* o = out + long(b) * n_head * hd + h * hd;
  for (int t = 0; t * kKeyTile <= pos; ++t) {
    const TilePartial p = partial_block(partials, b, t, tiles, n_head, hd, h);
    fold_tile(&m, &l, o, *p.m, *p.l, p.o, hd);
  }
  simd::scale(o, 1.0f / l, hd);
}

// Called by every thread of a parallel region: the product's input, x (B, C) itself or, with a
// norm, layernorm(x) written into ln row by row by the threads (the loop's barrier makes it
// visible to all). Each row is normalised alone, so the result does not depend on B.
const float* product_input(const float* x, float* ln, int B, const LayerNormParams* norm, int C) {
  if (!norm) return x;
#pragma omp for schedule(static)
  for (int b = 0; b < B; ++b) cpu::layernorm(ln + long(b) * C, x + long(b) * C, norm->weight, norm->bias, 1, C, norm->eps);
  return ln;
}

// Rows per chunk that a thread takes from a product's RowShares: small enough that the threads
// end close together (a chunk of fp16 124M weights is 48 kB, 192 kB in the 3072-wide matrix: a
// few µs), large enough that taking one (an atomic compare-exchange) costs next to nothing;
// chunks of 16 and 64 rows measured alike on the AMD EPYC.
constexpr int kShareRows = 32;

// The rows of a product with B <= kBatchTile inputs, taken chunk by chunk from shares (for Q8
// weights the inputs quantised once, by each thread for itself); on_chunk(r0, r1) after each.
template <class OnChunk>
void gemv_shared_rows(float* out, const float* in, int B, const WeightView& w, const float* bias, Epilogue e,
                      RowShares& shares, OnChunk on_chunk) {
  const bool q8 = w.type == simd::WType::Q8;
  QuantisedInputs q;  // Q8 only; untouched otherwise
  if (q8) q.quantise(in, B, w.cols);
  int r0, r1;
  while (shares.take(omp_get_thread_num(), &r0, &r1)) {
    if (q8) gemv_rows_q8(out, q, B, w, bias, e, r0, r1);
    else gemv_range(out, in, B, w, bias, e, r0, r1);
    on_chunk(r0, r1);
  }
}

// One product in a parallel region: up to kBatchTile inputs share its rows by RowShares; more
// (a batched decode of many sequences) keep a fixed share per thread, since each tile of their
// Q8 inputs would be quantised again for every chunk taken.
void gemv_region(float* out, const float* x, float* ln, int B, const LayerNormParams* norm, const WeightView& w,
                 const float* bias, Epilogue e) {
  RowShares shares(w.rows, kShareRows, omp_get_max_threads());
#pragma omp parallel
  {
    const float* in = product_input(x, ln, B, norm, w.cols);
    if (B <= kBatchTile) {
      gemv_shared_rows(out, in, B, w, bias, e, shares, [](int, int) {});
    } else {
      int r0, r1;
      thread_range(w.rows, &r0, &r1);
      gemv_range(out, in, B, w, bias, e, r0, r1);
    }
  }
}

// The lowest id among equal maxima (sampler.h's greedy rule), whichever thread scanned which rows.
void keep_best(float v, int id, float* best, int* best_id) {
  if (v > *best || (v == *best && id < *best_id)) *best = v, *best_id = id;
}

int gemv_argmax_region(float* logits, const float* x, float* ln, const LayerNormParams* norm, const WeightView& w) {
  float best = -INFINITY;
  int best_id = 0;
  RowShares shares(w.rows, kShareRows, omp_get_max_threads());
#pragma omp parallel
  {
    const float* in = product_input(x, ln, 1, norm, w.cols);
    float my_best = -INFINITY;
    int my_id = w.rows;
    gemv_shared_rows(logits, in, 1, w, nullptr, Epilogue::Store, shares, [&](int r0, int r1) {
      for (int r = r0; r < r1; ++r) keep_best(logits[r], r, &my_best, &my_id);
    });
#pragma omp critical(gpt2_gemv_argmax)
    keep_best(my_best, my_id, &best, &best_id);
  }
  return best_id;
}

// out (T, IC) = x (T, IC) with each row quantised by the Q8 rule and widened back: the GEMM
// then multiplies what a Q8 matrix-vector product multiplies, so prefill and decode agree.
void dequantise_q8_inputs(const float* x, int T, int IC, float* out) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < T; ++t) {
    int8_t q[simd::kQ8MaxCols];
    float s[simd::kQ8MaxCols / simd::kQ8Block];
    simd::quantize_q8_row(x + long(t) * IC, IC, q, s);
    for (int i = 0; i < IC; ++i) out[long(t) * IC + i] = float(q[i]) * s[i / simd::kQ8Block];
  }
}

// Rows [t0, t1) of out (T, OC) after the GEMM: + bias, then GELU for that epilogue.
void rows_epilogue(float* out, const float* bias, Epilogue e, int OC, int t0, int t1) {
  for (int t = t0; t < t1; ++t) {
    float* row = out + long(t) * OC;
    if (bias)
      for (int o = 0; o < OC; ++o) row[o] += bias[o];
    if (e == Epilogue::Gelu) simd::gelu(row, OC);
  }
}

}  // namespace

void gemv(float* out, const float* x, const WeightView& w, const float* bias, Epilogue e) {
  gemv_region(out, x, nullptr, 1, nullptr, w, bias, e);
}

void layernorm_gemv(float* out, float* ln, const float* x, const LayerNormParams& norm, const WeightView& w,
                    const float* bias, Epilogue e) {
  gemv_region(out, x, ln, 1, &norm, w, bias, e);
}

int gemv_argmax(float* logits, const float* x, const WeightView& w) {
  return gemv_argmax_region(logits, x, nullptr, nullptr, w);
}

int layernorm_gemv_argmax(float* logits, float* ln, const float* x, const LayerNormParams& norm, const WeightView& w) {
  return gemv_argmax_region(logits, x, ln, &norm, w);
}

void gemv_batch(float* out, const float* x, int B, const WeightView& w, const float* bias, Epilogue e) {
  gemv_region(out, x, nullptr, B, nullptr, w, bias, e);
}

void layernorm_gemv_batch(float* out, float* ln, const float* x, int B, const LayerNormParams& norm,
                          const WeightView& w, const float* bias, Epilogue e) {
  gemv_region(out, x, ln, B, &norm, w, bias, e);
}

void layernorm_gemv_argmax_batch(float* logits, float* ln, const float* x, int B, const LayerNormParams& norm,
                                 const WeightView& w, int* argmax) {
  if (B == 1) {
    argmax[0] = layernorm_gemv_argmax(logits, ln, x, norm, w);
    return;
  }
  gemv_region(logits, x, ln, B, &norm, w, nullptr, Epilogue::Store);
  // The lowest id among equal maxima, as gemv_argmax: a maximum is exact, so a row's scan in
  // order finds what the threads' merge finds.
#pragma omp parallel for schedule(static)
  for (int b = 0; b < B; ++b) {
    const float* row = logits + long(b) * w.rows;
    int best = 0;
    for (int r = 1; r < w.rows; ++r)
      if (row[r] > row[best]) best = r;
    argmax[b] = best;
  }
}

void layernorm(float* out, const float* x, const LayerNormParams& norm, int T, int C) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < T; ++t)
    cpu::layernorm(out + long(t) * C, x + long(t) * C, norm.weight, norm.bias, 1, C, norm.eps);
}

void matmul(float* out, const float* x, const WeightView& w, const float* bias, int T, Epilogue e, float* scratch) {
  const int IC = w.cols, OC = w.rows;
#ifdef GPT2_HAVE_DNNL
  const float* wf = static_cast<const float*>(w.data);
  const float* in = x;
  if (w.type != simd::WType::F32) {
#pragma omp parallel
    {
      int r0, r1;
      thread_range(OC, &r0, &r1);
      if (r0 < r1) simd::widen_rows(w, r0, r1, scratch + size_t(r0) * IC);
    }
    wf = scratch;
  }
  if (w.type == simd::WType::Q8) {  // the input as the decode step's product sees it
    float* dequantised = scratch + size_t(OC) * IC;
    dequantise_q8_inputs(x, T, IC, dequantised);
    in = dequantised;
  }
  // Row-major: out (T, OC) = in (T, IC) * wf^T, wf being (OC, IC).
  if (dnnl_sgemm('N', 'T', T, OC, IC, 1.0f, in, IC, wf, IC, e == Epilogue::AddTo ? 1.0f : 0.0f, out, OC) != dnnl_success)
    throw Error("internal: oneDNN sgemm failed for a (" + std::to_string(T) + ", " + std::to_string(IC) +
                ") x (" + std::to_string(IC) + ", " + std::to_string(OC) + ") product");
  if (bias || e == Epilogue::Gelu) {
#pragma omp parallel
    {
      int t0, t1;
      thread_range(T, &t0, &t1);
      rows_epilogue(out, bias, e, OC, t0, t1);
    }
  }
#else
  (void)scratch;
  // No GEMM library: each thread streams its rows of w once per token, from cache after the first.
#pragma omp parallel
  {
    int r0, r1;
    thread_range(OC, &r0, &r1);
    for (int t = 0; t < T; ++t)
      gemv_range(out + long(t) * OC, x + long(t) * IC, 1, w, bias, e, r0, r1);
  }
#endif
}

size_t matmul_scratch_floats(const WeightView& w, int T) {
  const size_t widened = w.type == simd::WType::F32 ? 0 : size_t(w.rows) * w.cols;
  return widened + (w.type == simd::WType::Q8 ? size_t(T) * w.cols : 0);
}

long attention_scratch_floats(int head_dim) {
  return simd::kMaxKvHeads * kKeyTile + 2 * kQueryTile + long(simd::kMaxKvHeads) * head_dim + head_dim + 2;
}

long attention_partial_floats(int B, int positions, int n_head, int head_dim) {
  return long(std::min(B, kPartialRows)) * ((positions + kKeyTile - 1) / kKeyTile) *
         partial_block_floats(n_head, head_dim);
}

void attention(float* out, const float* qkv, const uint8_t* k_ring, const uint8_t* v_ring, int T, int pos,
               const KvRing& ring, int n_head, int head_dim, ComputeDType kv_type, float* scratch,
               long scratch_stride, float* partials, const KvHistory& history) {
  if (T == 1) {  // a decode step: its key tiles spread over the threads
    const AttentionRow row{k_ring, v_ring, pos, ring, history};
    return attention_rows(out, qkv, 1, &row, n_head, head_dim, kv_type, scratch, scratch_stride, partials);
  }
  const AttentionShape a = make_shape(ring, pos, n_head, head_dim, kv_type, history);
  const int tiles = (T + kQueryTile - 1) / kQueryTile, items = tiles * n_head;
#pragma omp parallel
  {
    const AttentionScratch my_scratch(scratch + omp_get_thread_num() * scratch_stride, head_dim);
    // Later query tiles see more keys: they go first, and threads take the next item when free.
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < items; ++item) {
      const int tile = tiles - 1 - item / n_head, h = item % n_head;
      const int t0 = tile * kQueryTile, t1 = std::min(T, t0 + kQueryTile);
      attend_query_tile(out, qkv, k_ring, v_ring, a, h, t0, t1, my_scratch);
    }
  }
}

// attention_rows() of at most kPartialRows rows.
static void attention_row_pass(float* out, const float* qkv, int B, const AttentionRow* rows, int n_head,
                               int head_dim, ComputeDType kv_type, float* scratch, long scratch_stride,
                               float* partials) {
  int last = 0;  // the last position any row sees
  for (int b = 0; b < B; ++b) last = std::max(last, rows[b].pos);
  const int groups = (B + kQueryTile - 1) / kQueryTile, tiles = last / kKeyTile + 1;
#pragma omp parallel
  {
    const AttentionScratch my_scratch(scratch + omp_get_thread_num() * scratch_stride, head_dim);
    // Work items (row group, key tile, head cut), taken in order by whichever thread is free
    // (a busy host stalls one vCPU now and then): a tile's K/V rows are read whole, in
    // position order. Heads are cut only where there are fewer tiles than threads, or more
    // heads than kMaxKvHeads.
    const int nt = omp_get_num_threads(), min_cuts = (n_head + simd::kMaxKvHeads - 1) / simd::kMaxKvHeads;
    const int cuts = std::min(n_head, std::max(min_cuts, (nt + groups * tiles - 1) / (groups * tiles)));
    const int items = groups * tiles * cuts;
#pragma omp for schedule(dynamic, 1)
    for (int item = 0; item < items; ++item) {
      const int g = item / (tiles * cuts), t = item / cuts % tiles, c = item % cuts;
      tile_partials_of_rows(partials, tiles, qkv, rows, g * kQueryTile, std::min(B, (g + 1) * kQueryTile), t,
                            n_head * c / cuts, n_head * (c + 1) / cuts, n_head, head_dim, kv_type, my_scratch);
    }
#pragma omp for schedule(static) nowait  // the region's end waits for all
    for (int item = 0; item < B * n_head; ++item) {
      const int b = item / n_head;
      fold_row_head(out, partials, tiles, b, rows[b].pos, item % n_head, n_head, head_dim);
    }
  }
}

void attention_rows(float* out, const float* qkv, int B, const AttentionRow* rows, int n_head, int head_dim,
                    ComputeDType kv_type, float* scratch, long scratch_stride, float* partials) {
  const int C = n_head * head_dim;
  for (int b0 = 0; b0 < B; b0 += kPartialRows)
    attention_row_pass(out + long(b0) * C, qkv + long(b0) * 3 * C, std::min(kPartialRows, B - b0), rows + b0, n_head,
                       head_dim, kv_type, scratch, scratch_stride, partials);
}

void quantize_q8(const float* w, int rows, int cols, int8_t* q, float* scales) {
  const int nb = simd::q8_blocks(cols);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    simd::quantize_q8_row(w + long(r) * cols, cols, q + long(r) * cols, scales + long(r) * nb);
}

PrefetchTuning tune_prefetch(const std::vector<WeightView>& matrices, size_t cache_bytes) {
  constexpr size_t kCandidates[] = {2048, 4096, 8192, 16384};
  PrefetchTuning t;
  // Trials of 16 MB (under 1 ms at 20 GB/s), three rounds: 12 trials, ~10 ms at 20 GB/s. Each
  // starts where the last stopped, so a weight comes back only after the whole model has been
  // read: from memory if the model is twice the cache.
  constexpr size_t trial = size_t(16) << 20;
  constexpr int kRounds = 3;
  size_t total = 0, rows = 0, cols = 0;
  for (const WeightView& w : matrices) {
    total += w.bytes();
    rows = std::max(rows, size_t(w.rows));
    cols = std::max(cols, size_t(w.cols));
  }
  if (total < 2 * std::max(cache_bytes, trial)) return t;
  std::vector<float> x(cols, 1.0f), y(rows);
  double best[std::size(kCandidates)];
  std::fill(std::begin(best), std::end(best), INFINITY);
  const auto start = std::chrono::steady_clock::now();
  size_t next = 0;  // the matrix the next trial starts at: each trial reads weights the last did not
  for (int round = 0; round < kRounds; ++round)
    for (size_t c = 0; c < std::size(kCandidates); ++c) {
      simd::set_prefetch_distance(kCandidates[c]);
      const auto t0 = std::chrono::steady_clock::now();
      size_t read = 0;
      while (read < trial) {
        const WeightView& w = matrices[next++ % matrices.size()];
        gemv(y.data(), x.data(), w, nullptr, Epilogue::Store);
        read += w.bytes();
      }
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best[c] = std::min(best[c], s / double(read));
    }
  t.bytes = kCandidates[std::min_element(std::begin(best), std::end(best)) - std::begin(best)];
  t.probe_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  t.probed = true;
  simd::set_prefetch_distance(t.bytes);
  return t;
}

const char* gemm_library() {
#ifdef GPT2_HAVE_DNNL
  static const std::string name = [] {
    const dnnl_version_t* v = dnnl_version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }();
  return name.c_str();
#else
  return "none (plain loops)";
#endif
}

}  // namespace gpt2::fast

namespace gpt2::simd {
const char* wtype_name(WType t) {
  switch (t) {
    case WType::F32: return "fp32";
    case WType::F16: return "fp16";
    case WType::BF16: return "bf16";
    case WType::Q8: return "int8";
  }
  return "?";
}
}  // namespace gpt2::simd
