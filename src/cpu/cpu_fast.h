// The fast CPU path: the operations of cpu_ops.h that dominate the time, multithreaded
// (OpenMP, every thread on every matrix) over weights kept in their stored precision
// (simd::WType) and widened in registers. cpu_ops stays the readable reference; each function
// here is tested against it by normalized MSE (tests/test_cpu_fast.cpp). Nothing here
// allocates: callers pass preallocated scratch.
//
// Two paths share the weights, as on CUDA:
//   decode (one token): gemv / gemv_argmax, matrix-vector products fused with their epilogue
//   and, where a LayerNorm comes first, with the norm (layernorm_gemv / layernorm_gemv_argmax);
//   rows (prefill, --no-cache, context shift): matmul, a GEMM library call (oneDNN) when the
//   build found one, else the matrix-vector kernel row by row.
#pragma once
#include <cstdint>
#include <vector>

#include "cpu/cpu_simd.h"
#include "engine/kv_ring.h"

namespace gpt2::fast {

using simd::WeightView;

// What a matrix-vector product does with its result y = W x + bias:
//   Store: out = y;  Gelu: out = gelu_new(y);  AddTo: out += y (the residual stream).
enum class Epilogue { Store, Gelu, AddTo };

// out (OC) per `e` from y = W x + bias; x (IC); bias (OC) or null.
void gemv(float* out, const float* x, const WeightView& w, const float* bias, Epilogue e);

// A LayerNorm's parameters: weight and bias (C), epsilon.
struct LayerNormParams {
  const float* weight;
  const float* bias;
  float eps;
};

// gemv of layernorm(x) for one row x (IC), in one parallel region: one thread normalises x into
// ln (IC floats of scratch) while the others, already started, wait at the barrier, then all
// multiply; the norm runs inside the product's region rather than alone between two regions.
// out must not alias x.
void layernorm_gemv(float* out, float* ln, const float* x, const LayerNormParams& norm, const WeightView& w,
                    const float* bias, Epilogue e);

// logits (OC) = W x, and returns argmax logits (the lowest id among equal maxima, as
// sampler.h's greedy rule): the LM head and the greedy choice in one pass over W.
int gemv_argmax(float* logits, const float* x, const WeightView& w);

// gemv_argmax of layernorm(x): the final LayerNorm, the LM head and the greedy choice in one
// parallel region (as layernorm_gemv).
int layernorm_gemv_argmax(float* logits, float* ln, const float* x, const LayerNormParams& norm, const WeightView& w);

// The decode step of B sequences at once (--parallel): gemv, layernorm_gemv and
// layernorm_gemv_argmax for B rows x (B, IC) into out (B, OC), ln (B, IC) and argmax (B). Row
// b's results are bitwise those of the one-row function on row b alone, whatever B is (batch
// invariance: every row is summed in the same order), while W streams from memory once for all
// B rows.
void gemv_batch(float* out, const float* x, int B, const WeightView& w, const float* bias, Epilogue e);
void layernorm_gemv_batch(float* out, float* ln, const float* x, int B, const LayerNormParams& norm,
                          const WeightView& w, const float* bias, Epilogue e);
void layernorm_gemv_argmax_batch(float* logits, float* ln, const float* x, int B, const LayerNormParams& norm,
                                 const WeightView& w, int* argmax);

// out (T, C) = layernorm(x) row by row, the rows shared among the threads.
void layernorm(float* out, const float* x, const LayerNormParams& norm, int T, int C);

// out (T, OC) per `e` from y = x (T, IC) W^T + bias: AddTo goes into the GEMM (beta = 1); bias
// and GELU follow in one pass over out. `scratch` holds matmul_scratch_floats(w, T) floats (the
// weights widened for the GEMM library, and for Q8 the inputs as the Q8 rule rounds them).
void matmul(float* out, const float* x, const WeightView& w, const float* bias, int T, Epilogue e, float* scratch);
size_t matmul_scratch_floats(const WeightView& w, int T);

// cpu::attention, blocked (a tile of queries against a tile of keys, online softmax; no n x n
// matrix), with each thread's scratch at scratch + thread * scratch_stride (scratch_stride >=
// attention_scratch_floats(head_dim)). Every (query, head) folds its key tiles' partial softmax
// results in position order, whatever T: the decode step and the rows path compute token t's
// output alike. A decode step (T = 1) is attention_rows() of one row: the threads share its key
// tiles and keep their partials in `partials` (attention_partial_floats(1, pos + 1, ...) floats;
// unused when T > 1). The K/V rings hold rows in the format kv_type (engine/kv_format.h;
// kv_row_bytes(kv_type, C, n_head) bytes a slot), read as stored by kv_simd.h's loops.
//
// `history` says where a sequence's earlier positions live when beams share them
// (Backend::reorder): position p's keys and values are in the ring of sequence owner[p], which
// starts (owner[p] - self) * seq_stride bytes from k_ring / v_ring. Without an owner table every
// position is in k_ring / v_ring (the one-sequence path, unchanged).
struct KvHistory {
  const int* owner = nullptr;  // (positions) the sequence holding each position, or null
  int self = 0;                // the sequence whose rings k_ring / v_ring are
  long seq_stride = 0;         // bytes from one sequence's ring to the next
};
void attention(float* out, const float* qkv, const uint8_t* k_ring, const uint8_t* v_ring, int T, int pos,
               const KvRing& ring, int n_head, int head_dim, ComputeDType kv_type, float* scratch,
               long scratch_stride, float* partials, const KvHistory& history = {});
long attention_scratch_floats(int head_dim);
// Floats of attention_rows()' partials for B rows that see at most `positions` positions each.
long attention_partial_floats(int B, int positions, int n_head, int head_dim);

// One row of attention_rows(): a decode step's query at position `pos` of its own sequence,
// whose rings are k_ring / v_ring and whose earlier positions `history` places (as attention()).
struct AttentionRow {
  const uint8_t* k_ring = nullptr;
  const uint8_t* v_ring = nullptr;
  int pos = 0;
  KvRing ring;
  KvHistory history;
};

// attention() of B one-token rows of distinct sequences (decode_batch), in one parallel region:
// out (B, C) from qkv (B, 3C). Each row is computed exactly as attention() computes it alone
// (bitwise). The threads share the key tiles: each computes the partials of its tiles for all
// heads of a row group (reading the tiles' K/V rows whole, in position order; heads are cut only
// when there are fewer tiles than threads), into partials (attention_partial_floats(B, 1 + the
// largest pos, n_head, head_dim) floats); then each (row, head) folds its tiles' partials in
// order. The rows of a group take a tile in turn, so a tile that several rows share (beams with
// a common history) is read from memory once for all.
void attention_rows(float* out, const float* qkv, int B, const AttentionRow* rows, int n_head, int head_dim,
                    ComputeDType kv_type, float* scratch, long scratch_stride, float* partials);

// Quantises w (rows, cols) to Q8 row by row by the rule of q8_rule.h: per block of
// simd::kQ8Block inputs of a row, scale = max |w| / 127 and q = round(w / scale). q is
// (rows, cols), scales (rows, q8_blocks(cols)).
void quantize_q8(const float* w, int rows, int cols, int8_t* q, float* scales);

// The software prefetch distance (simd::set_prefetch_distance) this machine streams weights
// fastest with, chosen at start-up rather than tuned for one CPU: trial passes of decode's
// matrix-vector products over the model's own matrices, each candidate distance (2, 4, 8, 16 KB)
// timed three times, interleaved, each trial on weights the previous ones did not touch (so they
// come from memory), the best time of each compared. Where the weights nearly fit in the last-level cache (`cache_bytes`) there is
// nothing to stream and the default stays. Sets the distance and says what it chose.
struct PrefetchTuning {
  size_t bytes = simd::kDefaultPrefetchBytes;  // the distance in use
  double probe_ms = 0;                         // the probe's time; 0 when it did not run
  bool probed = false;
};
PrefetchTuning tune_prefetch(const std::vector<WeightView>& matrices, size_t cache_bytes);

// "oneDNN 2.6" or "none (plain loops)": what matmul() runs on.
const char* gemm_library();

}  // namespace gpt2::fast
