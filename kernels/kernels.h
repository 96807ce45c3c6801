// Host launchers of gpt2-gen's CUDA kernels (one .cu file per operation in kernels/; the
// __global__ kernels are private to their file). Every launcher enqueues on `stream`, checks
// the launch (file:line in the error) and never synchronizes, so a sequence of launches can be
// captured in a CUDA graph.
//
// Shapes: n tokens (rows), C = n_embd, H = n_inner, NH heads of HS = C / NH, V vocabulary.
// T is the compute dtype: float, __half or __nv_bfloat16 (weights and the activations that
// feed cuBLAS). The K/V rings have their own format (KvRings below, engine/kv_format.h). The residual stream x, LayerNorm parameters, biases, logits
// and every statistic or accumulator are fp32.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "engine/kv_format.h"
#include "engine/kv_ring.h"
#include "engine/processors.h"
#include "model/dtype.h"

namespace gpt2::cuda {

// What one decode step (and the sampler) read from device memory, so that a captured graph
// can be replayed for every token: the host updates it with one copy before each replay.
struct StepParams {
  int token = 0;          // the decode step's input token id
  int pos = 0;            // its context position: it attends over positions [0, pos]
  KvRing ring;            // where context positions live in the K/V rings
  float temperature = 0;  // sampling (sampler.h's rule); <= 0 is greedy
  int top_k = 0;
  float top_p = 1;
  float u = 0;            // the uniform draw, as float (sample_token uses float(u))
  float min_p = 0;
  PenaltyParams penalties;  // the logits processors (processors.h), run when active()
  // The context positions whose ids `counts` holds before this step (process_logits):
  // [counted_begin, counted_end); counted_end < 0: count the window afresh.
  int counted_begin = 0;
  int counted_end = -1;
};

// Largest IC the fused matrix-vector kernel stages in shared memory: IC fp32 values plus the
// kernel's static shared memory (block_reduce's 32 partials) must fit the 48 KB a block gets
// without opting in, so 256 bytes are kept back.
constexpr int kGemvMaxIC = (48 * 1024 - 256) / 4;  // 12224
// The only head size the attention kernels are built for (every GPT-2 size has 64).
constexpr int kHeadDim = 64;

// The compute types T, each mapped once to its names: --dtype's (ComputeDType), the weight
// file's dtype of the same bits (DType) and cuBLAS's (cudaDataType_t).
template <typename T> struct ComputeType;
template <> struct ComputeType<float> {
  static constexpr ComputeDType dtype = ComputeDType::F32;
  static constexpr DType stored = DType::F32;
  static constexpr cudaDataType_t cublas = CUDA_R_32F;
};
template <> struct ComputeType<__half> {
  static constexpr ComputeDType dtype = ComputeDType::F16;
  static constexpr DType stored = DType::F16;
  static constexpr cudaDataType_t cublas = CUDA_R_16F;
};
template <> struct ComputeType<__nv_bfloat16> {
  static constexpr ComputeDType dtype = ComputeDType::BF16;
  static constexpr DType stored = DType::BF16;
  static constexpr cudaDataType_t cublas = CUDA_R_16BF;
};

// The code the current device runs this build's kernels from, by cudaFuncGetAttributes of one
// of them (every kernel file is compiled for the same architectures), as major * 10 + minor:
// binary, the machine code's architecture; ptx, the virtual architecture it was compiled from
// (__CUDA_ARCH__ / 10; code JIT-compiled from older PTX has ptx < binary). Below ptx 90 the
// kernels hold no griddepcontrol instructions: pdl_wait() is empty, so PDL must stay off.
struct KernelImage {
  int binary = 0;
  int ptx = 0;
};
// True when this build's kernels can run on the current device (and `image`, if given, says
// from what code); else `why` says why.
bool kernels_loadable(std::string* why, KernelImage* image = nullptr);

// One layer's K and V rings as stored (--kv-dtype; the layout is engine/kv_format.h's): rows of
// row_bytes() bytes, (rows, row_bytes()) each, rows = capacity (one sequence) or n_seqs *
// capacity (the batched caches, sequence s's ring at row s * capacity). Every kernel that writes
// or reads K/V takes this; the decode attention is compiled per format, the others switch on
// dtype at run time (kernels/README.md, "K/V formats").
struct KvRings {
  void* k = nullptr;
  void* v = nullptr;
  ComputeDType dtype = ComputeDType::F32;
  int n_embd = 0, n_head = 0;
  GPT2_HOST_DEVICE size_t row_bytes() const { return kv_row_bytes(dtype, n_embd, n_head); }
};

// One row of a batched decode step (--parallel; decode_batch): token `token` at position `pos`
// of sequence `seq`, whose K/V rings are the slots [seq * capacity, (seq + 1) * capacity) of
// each layer's cache (n_seqs * capacity, C). The host copies B of them to the device per step.
struct BatchRow {
  int seq = 0;
  int token = 0;
  int pos = 0;
  KvRing ring;
};
// The history table (beam search's K/V reorder, Backend::reorder): history (n_seqs, capacity)
// ints, history[seq * capacity + p] = the sequence whose ring holds sequence seq's position p
// (seq itself until a reorder). The batched decode's attention reads keys and values through it.

// ---- embedding.cu ------------------------------------------------------------------------
// x (n, C) = wte[ids[t]] + wpe[pos + t]; ids (n) in device memory. Also records the ids in
// `context` (capacity ints, or null: not recorded), the context's token ring that the logits
// processors read: context[ring.slot(pos + t)] = ids[t], slots as in the K/V rings.
template <typename T>
void embedding_rows(float* x, const int* ids, int n, int pos, const T* wte, const T* wpe, int C,
                    int* context, const KvRing& ring, cudaStream_t stream);
// x (C) = wte[step->token] + wpe[step->pos] (the decode step; reads the step from the device);
// context[step->ring.slot(step->pos)] = step->token when context is not null. pdl: launched
// with programmatic dependent launch (GPT2_CUDA_VARIANTS=pdl), as the sampler's launchers below.
template <typename T>
void embedding_step(float* x, const StepParams* step, const T* wte, const T* wpe, int C, int* context,
                    cudaStream_t stream, bool pdl = false);

// The batched decode step's embedding: x (B, C), row b = wte[rows[b].token] + wpe[rows[b].pos]
// (the same sum as embedding_step); also context[seq * capacity + ring.slot(pos)] = token
// (context: (n_seqs, capacity), or null) and history[seq * capacity + pos] = seq (the new
// position is the sequence's own).
template <typename T>
void embedding_batch(float* x, const BatchRow* rows, int B, const T* wte, const T* wpe, int C, int* context,
                     int* history, int capacity, cudaStream_t stream);

// ---- layernorm.cu ------------------------------------------------------------------------
// For each row t of x (n, C): if resid_bias, x[t] += resid_bias (written back: the pending bias
// of the previous projection, whose product cuBLAS accumulated into x); then
// out[t] = (x[t] - mean) / sqrt(var + eps) * w + b with fp32 statistics.
template <typename T>
void layernorm(T* out, float* x, const float* resid_bias, const float* w, const float* b, int n, int C,
                       float eps, cudaStream_t stream);

// ---- gelu.cu -----------------------------------------------------------------------------
// x (n, H) = gelu_new(x + bias); bias (H) or null.
template <typename T>
void bias_gelu(T* x, const float* bias, int n, int H, cudaStream_t stream);

// ---- kv_append.cu ------------------------------------------------------------------------
// qkv (n, 3C) += bias (3C, or null: no bias) for the queries (in place), and the keys and
// values (+ bias) of token t are written to the rings kv (capacity rows, C = kv.n_embd) at
// ring.slot(pos + t), in kv's format (int8: each head quantised with its own scale).
template <typename T>
void qkv_bias_kv_append(T* qkv, const float* bias, const KvRings& kv, int n, int pos, const KvRing& ring,
                        cudaStream_t stream);
// The int8 decode steps' second half (the Qkv epilogues of gemv / gemv_batch leave an int8
// ring's new key and value in fp32 in staged, as a head's scale needs all of its 64 values):
// row b of staged (B, 2C: the key, then the value) quantised into the rings, at the decode
// step's slot step->ring.slot(step->pos) (step set, B = 1) or at row b's cache row
// rows[b].seq * capacity + rows[b].ring.slot(rows[b].pos).
void kv_store_staged(const KvRings& kv, const float* staged, int B, const StepParams* step, const BatchRow* rows,
                     int capacity, cudaStream_t stream);

// The history table's bookkeeping (see BatchRow): table (n_seqs, capacity) ints.
// history_fill: table[seq * capacity + p] = seq for p in [begin, end) (a forward() of seq).
void history_fill(int* table, int seq, int capacity, int begin, int end, cudaStream_t stream);
// history_reorder: for i < n, row i becomes row parent[i] (parent: n ints in device memory) at
// p < pos, and (self_after) i at p >= pos; scratch: n * capacity ints. Applied to the history
// table (self_after) and to the logits processors' token rings (beams' rings start at 0, so
// slot p is position p).
void history_reorder(int* table, int* scratch, const int* parent, int n, int capacity, int pos, bool self_after,
                     cudaStream_t stream);

// ---- attention_prefill.cu ----------------------------------------------------------------
// Causal attention of n queries at positions [pos, pos + n) over the keys/values of positions
// [0, pos + n) in the rings (already appended). qkv (n, 3C) supplies the queries; out (n, C).
// Flash-attention style: tiles of 64 queries x 64 keys, online softmax, no n x n matrix. The
// keys pass through shared memory key_tile at a time: 64 or 32, bit-identical results;
// attention_prefill_smem_bytes(key_tile) per block (64: 67,840 bytes, which needs the device's
// opt-in above 48 KB; 32: 42,752, which every device has).
size_t attention_prefill_smem_bytes(int key_tile);
// The larger key tile whose shared memory fits a block's opt-in limit `smem_optin`
// (cudaDevAttrMaxSharedMemoryPerBlockOptin): 64 from 67,840 bytes on, else 32.
int attention_prefill_key_tile(size_t smem_optin);
// The rings are read in their own format (kv.dtype, switched at run time: the tile loads convert
// to fp32 in shared memory anyway); n_head = kv.n_head.
template <typename T>
void attention_prefill(T* out, const T* qkv, const KvRings& kv, int n, int pos, const KvRing& ring, int head_dim,
                       int key_tile, cudaStream_t stream);

// ---- attention_decode.cu -----------------------------------------------------------------
// One query q (C, fp32) at position step->pos over positions [0, step->pos] of the rings,
// split into chunks of 64 keys across blocks (flash-decoding) and combined exactly with the
// log-sum-exp rule by the last block of each head. out (C, fp32).
// partials: attention_decode_partials(n_head, capacity) floats; counters: n_head unsigned ints,
// zero before the first launch (each launch leaves them zero again).
// The rings kv (capacity rows) are read in their format: one kernel per format (fp32, fp16,
// bf16, int8), chosen by kv.dtype; int8 applies each key's and value's head scale once.
size_t attention_decode_partials(int n_head, int capacity);
void attention_decode(float* out, const float* q, const KvRings& kv, const StepParams* step, float* partials,
                      unsigned int* counters, int head_dim, int capacity, cudaStream_t stream, bool pdl = false);
// The same result in one round of loads (GPT2_CUDA_VARIANTS=attn1): 16-byte K/V loads, all but
// the newest slot issued before the PDL wait, 128-key chunks (one block per head up to L = 128),
// a combine without a loop over the partials. Same partials and counters.
void attention_decode_one_round(float* out, const float* q, const KvRings& kv, const StepParams* step,
                                float* partials, unsigned int* counters, int head_dim, int capacity,
                                cudaStream_t stream, bool pdl = false);

// The batched decode step's attention: one launch over every (row, head, chunk) of B rows of
// different lengths, row b's query q[b] (C) at rows[b].pos against its own sequence's positions
// [0, pos], each key and value read from the ring history names (the sequence's own until a
// reorder) in the cache (n_seqs * capacity, C). Each (row, head) runs attention_decode's
// arithmetic unchanged (the same chunks of 64 and the same combine, whatever B or the other
// rows), so a row's output is bit-identical to the one-sequence kernel's. out (B, C).
// partials: B * attention_decode_partials(n_head, capacity) floats; counters: B * n_head, zero
// before the first launch (each launch leaves them zero again).
void attention_decode_batch(float* out, const float* q, const KvRings& kv, const BatchRow* rows, int B,
                            const int* history, float* partials, unsigned int* counters, int head_dim, int capacity,
                            cudaStream_t stream);

// ---- gemv.cu: the decode step's fused matrix-vector products --------------------------------
// y (OC) = W (OC, IC) . a (IC) with a = `in` (fp32) or a = LayerNorm(in + ln_pre_bias) when
// ln_w is set, then one epilogue:
//   Store:    out[o] = y + bias[o]
//   Residual: out[o] += y + bias[o]                (the residual stream)
//   Gelu:     out[o] = gelu_new(y + bias[o])
//   Qkv:      v = y + bias[o]; o < C: out[o] = v (the query); else the key / value goes to
//             the rings kv at slot step->ring.slot(step->pos) in kv's format, or, for int8
//             rings, to kv_staged (2C) for kv_store_staged (the caller launches it next)
// (bias may be null). Requires IC a multiple of 16 / sizeof(T) and IC <= kGemvMaxIC.
enum class GemvEpilogue { Store, Residual, Gelu, Qkv };

template <typename T>
struct GemvParams {
  const T* w = nullptr;  // (OC, IC)
  int IC = 0, OC = 0;
  const float* in = nullptr;  // (IC)
  const float* ln_w = nullptr, *ln_b = nullptr, *ln_pre_bias = nullptr;  // (IC) each
  float eps = 1e-5f;
  const float* bias = nullptr;  // (OC)
  float* out = nullptr;         // (OC), or the query (C) for Qkv
  GemvEpilogue epilogue = GemvEpilogue::Store;
  KvRings kv;                   // Qkv: capacity rows each
  float* kv_staged = nullptr;   // Qkv into int8 rings: (2C) the key and value in fp32
  const StepParams* step = nullptr;
  int C = 0;
  bool pdl = false;  // launch with programmatic dependent launch (decode graph, GPT2_CUDA_VARIANTS=pdl)
  // Variants (src/cuda/cuda_variants.h), each next to today's kernel until a GPU measurement chooses:
  bool prologue = false;  // prologue: parameters before the PDL wait, input staged in one round
                          // (needs 16-byte aligned vectors and the staging within 48 KB, else today's)
  bool split_k = false;   // splitk: K split across the block's warps; input without LayerNorm only
  const void* prefetch = nullptr;  // l2: prefetched into L2 at the end (the next kernel's matrix)
  size_t prefetch_bytes = 0;
  size_t persist_bytes = 0;  // l2: the first persist_bytes of w in a persisting L2 access-policy window
};
template <typename T>
void gemv(const GemvParams<T>& p, cudaStream_t stream);

// The LM head with the greedy choice fused in (GPT2_CUDA_VARIANTS=lmhead): gemv<LN, Store> as
// above (p needs ln_w, ln_b and the Store epilogue), software-pipelined, and also
// *token = argmax out (V = p.OC), the lowest id among equal maxima (sampler.h's greedy rule).
// state: zero before the first launch; each launch leaves it zero again. advance: as argmax's.
struct ArgmaxState {
  unsigned long long best = 0;  // the largest packed (logit, inverted id) key so far
  unsigned int arrived = 0;     // blocks done
};
template <typename T>
void gemv_argmax(const GemvParams<T>& p, int* token, ArgmaxState* state, cudaStream_t stream,
                 StepParams* advance = nullptr);

// The batched decode step's matrix-vector product: B rows at once, every weight read once per
// kBatchTile rows. Row b: a = in[b] (IC) or LayerNorm(in[b] + ln_pre_bias) (staged into
// staged[b] by a kernel with gemv's own LayerNorm code), y = W . a, then gemv's epilogue on
// row b: out[b] (B, OC) for Store, Residual and Gelu (Store with out_by_seq: out[rows[b].seq],
// the sequence's logits), and for Qkv the query to out[b] (B, C) and the key and value into
// the cache (n_seqs * capacity, C) at sequence rows[b].seq's slot ring.slot(pos). Each output
// sum runs in gemv_kernel's order (lane l: chunks l, l + 32, ... in turn; then the warp's
// butterfly), whatever B: a row's result is bit-identical to gemv()'s (batch invariance).
constexpr int kBatchTile = 8;
template <typename T>
struct GemvBatchParams {
  const T* w = nullptr;  // (OC, IC)
  int IC = 0, OC = 0, B = 0;
  const float* in = nullptr;  // (B, IC)
  const float* ln_w = nullptr, *ln_b = nullptr, *ln_pre_bias = nullptr;  // (IC) each
  float* staged = nullptr;    // (B, IC) the LayerNorm'd input, when ln_w is set
  float eps = 1e-5f;
  const float* bias = nullptr;  // (OC)
  float* out = nullptr;         // (B, OC), (n_seqs, OC) with out_by_seq, or the queries (B, C) for Qkv
  bool out_by_seq = false;
  GemvEpilogue epilogue = GemvEpilogue::Store;
  KvRings kv;            // Qkv: n_seqs * capacity rows each
  float* kv_staged = nullptr;  // Qkv into int8 rings: (B, 2C), for kv_store_staged
  const BatchRow* rows = nullptr;  // (B) in device memory
  int capacity = 0, C = 0;
};
template <typename T>
void gemv_batch(const GemvBatchParams<T>& p, cudaStream_t stream);

// ---- matmul.cu: cuBLAS, fp32 accumulation ---------------------------------------------------
// out (n, OC) = x (n, IC) . w^T, w (OC, IC) row-major; out in T.
template <typename T>
void matmul_store(cublasHandle_t handle, T* out, const T* x, const T* w, int n, int IC, int OC);
// out (n, OC) += x (n, IC) . w^T with out fp32 (the residual stream: cuBLAS beta = 1).
template <typename T>
void matmul_accumulate(cublasHandle_t handle, float* out, const T* x, const T* w, int n, int IC, int OC);

// ---- sampling.cu -------------------------------------------------------------------------
// Greedy: *out = argmax logits (V), the lowest id among equal maxima. With `advance` (launch-
// ahead, GPT2_CUDA_VARIANTS=ahead) the kernel also makes *advance the next decode step's input:
// advance->token = the token, advance->pos + 1, so the next step can be queued before the host
// has read this one's token.
void argmax(const float* logits, int V, int* out, cudaStream_t stream, bool pdl = false,
            StepParams* advance = nullptr);

// Temperature / top-k / top-p / min-p sampling by sampler.h's rule, parameters read from `step`
// (temperature > 0): sorts (logit, id) pairs descending with a stable radix sort (ties: lower
// id first), then one block computes the kept prefix and inverts the CDF at u.
struct SamplerWorkspace {
  float* keys_in = nullptr;   // (V)
  float* keys_out = nullptr;  // (V)
  int* ids_in = nullptr;      // (V): 0..V-1, filled once by sampler_init
  int* ids_out = nullptr;     // (V)
  void* temp = nullptr;       // sampler_temp_bytes(V)
  size_t temp_bytes = 0;
};
size_t sampler_temp_bytes(int V);
void sampler_init(const SamplerWorkspace& ws, int V, cudaStream_t stream);
// advance: as argmax's (it may be `step` itself: the kernel reads step before it writes).
void sample_top_k_top_p(const float* logits, int V, const StepParams* step, const SamplerWorkspace& ws, int* out,
                        cudaStream_t stream, bool pdl = false, StepParams* advance = nullptr);

// ---- penalties.cu: the logits processors of processors.h -----------------------------------
// scores (V) = logits (V) after processors.h's rule for the context of positions [0, step->pos],
// whose token ids are in `context` at slots step->ring.slot(p) (embedding_* write them), with
// step->penalties. counts (V ints, this launch keeps them): each id's occurrences in the
// penalty window; the launch moves them from the positions [step->counted_begin,
// step->counted_end) they held to this step's window (counted_end < 0: from scratch), so a
// decode step costs O(1) plus one pass over V. Greedy or sampling then read scores.
void process_logits(const float* logits, float* scores, int V, const int* context, int* counts,
                    const StepParams* step, cudaStream_t stream, bool pdl = false);

}  // namespace gpt2::cuda
