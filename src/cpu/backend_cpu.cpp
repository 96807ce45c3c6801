// The CPU backend. It reads like nanoGPT's model.py: embeddings, n_layer pre-LN blocks
// (x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))), a final LayerNorm and logits against the
// tied token embedding. The weight matrices stay in the backend's weight type (--dtype;
// default: the file's, so an fp16 file keeps 2 bytes per weight) and are widened to fp32 in
// registers by the kernels of cpu_fast.h; LayerNorm parameters, biases, the position embedding
// and the activations are fp32; the K/V rings hold --kv-dtype's format (engine/kv_format.h; default
// fp32, see kDefaultKvType), read as stored by the attention. Everything is allocated once, here.
//
// Two paths share the weights, as on CUDA: one token (decode) streams each matrix once through
// the matrix-vector kernel with its epilogue fused; more tokens (prefill, --no-cache, the re-run
// after a context shift) go through the GEMM library (up to 16 rows: the batched matrix-vector
// kernel). The two sum in different orders, so a token's logits differ between them in the last
// bits (about 1e-6 relative).
#include "cpu/backend_cpu.h"


#include <omp.h>

#include <algorithm>
#include <numeric>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/half.h"
#include "cpu/cpu_fast.h"
#include "cpu/cpu_ops.h"
#include "cpu/huge_pages.h"
#include "cpu/membw.h"
#include "engine/processors.h"
#include "model/model.h"

namespace gpt2 {
namespace {

using simd::WType;

// The K/V rings' format without --kv-dtype: fp32, the exact reference every test and the CUDA
// suites compare against. fp16 halves the bytes with the greedy tokens of fp32 K/V and of the
// goldens, and late tokens are faster with it (1.0-1.4 ms per token at context ~1014 on the
// 2-core AMD EPYC; README.md, "K/V cache formats and reuse"), but it is not exact: opt-in; int8
// changed greedy golden tokens.
constexpr ComputeDType kDefaultKvType = ComputeDType::F32;

// Widens a tensor to fp32 (the loader has refused NaN and Inf).
std::vector<float> widen(const TensorView& t) {
  std::vector<float> v(size_t(t.numel));
  t.to_float(v.data());
  return v;
}

// A weight matrix held in one WType; view points into the vectors.
struct Matrix {
  std::vector<uint8_t, HugePageAllocator<uint8_t>> data;  // huge_pages.h: decode streams it
  std::vector<float> scales;  // Q8 only
  simd::WeightView view;

  size_t bytes() const { return view.bytes(); }
};

// The tensor in `type`: copied as stored when the types agree (fp16/bf16 bits unchanged),
// else rounded to it (or quantised, for int8).
Matrix load_matrix(const TensorView& t, WType type) {
  const std::vector<float> f = widen(t);
  Matrix m;
  m.view.type = type;
  m.view.rows = int(t.shape[0]);
  m.view.cols = int(t.shape[1]);
  const size_t n = f.size();
  const bool same = (type == WType::F16 && t.dtype == DType::F16) || (type == WType::BF16 && t.dtype == DType::BF16);
  if (same) {
    m.data.assign(t.data, t.data + t.nbytes);
  } else if (type == WType::F32) {
    m.data.resize(n * 4);
    std::memcpy(m.data.data(), f.data(), n * 4);
  } else if (type == WType::Q8) {
    if (m.view.cols > simd::kQ8MaxCols)
      throw Error("--dtype int8 supports matrices of at most " + std::to_string(simd::kQ8MaxCols) + " inputs per row; " +
                  t.name + " has " + std::to_string(m.view.cols) + ": use --dtype fp16");
    m.data.resize(n);
    m.scales.resize(size_t(m.view.rows) * simd::q8_blocks(m.view.cols));
    fast::quantize_q8(f.data(), m.view.rows, m.view.cols, reinterpret_cast<int8_t*>(m.data.data()), m.scales.data());
  } else {
    std::vector<uint16_t> h(n);
    for (size_t i = 0; i < n; ++i) h[i] = type == WType::F16 ? float_to_fp16(f[i]) : float_to_bf16(f[i]);
    m.data.resize(n * 2);
    std::memcpy(m.data.data(), h.data(), n * 2);
  }
  m.view.data = m.data.data();
  m.view.scales = m.scales.empty() ? nullptr : m.scales.data();
  return m;
}

WType weight_type(const BackendOptions& o, DType stored) {
  if (o.dtype) {
    switch (*o.dtype) {
      case ComputeDType::F32: return WType::F32;
      case ComputeDType::F16: return WType::F16;
      case ComputeDType::BF16: return WType::BF16;
      case ComputeDType::Int8: return WType::Q8;
    }
  }
  return stored == DType::F16 ? WType::F16 : stored == DType::BF16 ? WType::BF16 : WType::F32;
}

ComputeDType compute_dtype(WType t) {
  switch (t) {
    case WType::F32: return ComputeDType::F32;
    case WType::F16: return ComputeDType::F16;
    case WType::BF16: return ComputeDType::BF16;
    case WType::Q8: return ComputeDType::Int8;
  }
  return ComputeDType::F32;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "cpu";
}

// The tensors of model.h's lists: matrices in the weight type, vectors in fp32.
struct Weights {
  Matrix wte;                         // (V, C): the token embedding and the LM head
  std::vector<float> wpe;             // (P, C)
  std::vector<float> ln_f_w, ln_f_b;  // (C)
};

struct Block {
  std::vector<float> ln_1_w, ln_1_b;  // (C)
  Matrix qkv_w;                       // (3C, C)
  std::vector<float> qkv_b;           // (3C)
  Matrix attn_proj_w;                 // (C, C)
  std::vector<float> attn_proj_b;     // (C)
  std::vector<float> ln_2_w, ln_2_b;  // (C)
  Matrix fc_w;                        // (H, C)
  std::vector<float> fc_b;            // (H)
  Matrix fc_proj_w;                   // (C, H)
  std::vector<float> fc_proj_b;       // (C)
  uint8_t* k_ring = nullptr;  // (n_seqs, capacity, kv_row_bytes) each, in the backend's K/V arena:
  uint8_t* v_ring = nullptr;  // one ring per sequence
};

// What a sequence keeps between forward() and sample(): its last logits and greedy token, the
// context the logits processors see (token ids by ring slot, as the K/V rings hold them), and
// its history table (Backend::reorder): which sequence's rings hold each of its positions.
struct SeqState {
  std::vector<float> logits;  // (V)
  int argmax = 0;             // of logits
  std::vector<int> context;   // (capacity) ids by slot, written by this sequence's forwards
  int context_len = 0;
  KvRing context_ring;
  std::vector<int> owner;     // (capacity) by position: the sequence whose rings and context hold it
  bool shared = false;        // some owner is another sequence (after a reorder); false: all its own
};

// Visits model.h's tensors of `w` and of every block, as (name, shape rule, member).
template <typename Visit>
void for_each_tensor(Visit&& visit, const Weights& w, const std::vector<Block>& blocks) {
  auto member = [&visit](const char* name, const ShapeRule& rule, const auto& t) { visit(name, rule, t); };
  for_each_model_tensor(member, w);
  for (const Block& b : blocks) for_each_layer_tensor(member, b);
}


class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& m, const BackendOptions& o) : Backend(m.config, o) {
    threads_ = o.threads > 0 ? o.threads : physical_cores();
    kv_type_ = o.kv_dtype.value_or(kDefaultKvType);
    info_.kv_dtype = kv_type_;  // before kv_row_bytes() below reads it
    omp_set_num_threads(threads_);  // every parallel region here and in the GEMM library
    const WType type = weight_type(o, m.wte->dtype);
    auto load = [type](const char*, const ShapeRule&, const TensorView* view, auto& dst) {
      if constexpr (std::is_same_v<std::decay_t<decltype(dst)>, Matrix>) dst = load_matrix(*view, type);
      else dst = widen(*view);
    };
    for_each_model_tensor(load, m, w_);
    const size_t rings_bytes = size_t(n_seqs()) * kv_capacity() * kv_row_bytes();  // one layer's K (or V)
    kv_arena_.assign(2 * rings_bytes * m.layers.size(), 0);
    for (const LayerTensors& t : m.layers) {
      Block b;
      for_each_layer_tensor(load, t, b);
      b.k_ring = kv_arena_.data() + 2 * rings_bytes * blocks_.size();
      b.v_ring = b.k_ring + rings_bytes;
      blocks_.push_back(std::move(b));
    }
    allocate_activations();
    tune_prefetch_distance();
    describe(type);
  }

  int sample_impl(int seq, const SamplingParams& params, double u, std::optional<double> /*next_u: nothing runs ahead*/) override {
    const int V = config().vocab_size;
    const SeqState& s = seqs_[size_t(seq)];
    if (params.penalties.active()) {
      for (int p = 0; p < s.context_len; ++p) {
        const SeqState& holder = s.shared ? seqs_[size_t(s.owner[size_t(p)])] : s;
        context_in_order_[size_t(p)] = holder.context[size_t(s.context_ring.slot(p))];
      }
      scores_ = s.logits;
      process_logits(scores_.data(), context_in_order_.data(), s.context_len, params.penalties, process_scratch_);
      return sample_token(scores_.data(), V, params, u, sample_scratch_);
    }
    if (params.greedy()) return s.argmax;  // sampler.h's greedy rule, found by gemv_argmax
    return sample_token(s.logits.data(), V, params, u, sample_scratch_);
  }

  void read_logits_impl(int seq, float* out) override {
    const SeqState& s = seqs_[size_t(seq)];
    std::copy(s.logits.begin(), s.logits.end(), out);
  }
  const BackendInfo& info() const override { return info_; }

 private:
  void forward_impl(int seq, const int* ids, int n, int pos, const KvRing& ring) override {
    const GPT2Config& cfg = config();
    const int C = cfg.n_embd;
    SeqState& s = seqs_[size_t(seq)];
    record_context(s, seq, ids, n, pos, ring);
    OpSequence ops(sink_);  // --profile's names for the ops; nothing without a sink
    ops.next(DecodeOp::Embedding);
    embedding(ids, n, pos);  // x (T, C)
    ops.finish();
    for (Block& b : blocks_) block(b, seq, n, pos, ring);
    // Only the last token's logits are needed: final LayerNorm and LM head on one row, with
    // the greedy choice found while the logits are written.
    const float* last = x_.data() + long(n - 1) * C;
    ops.next(DecodeOp::LnLmHead);
    s.argmax = fast::layernorm_gemv_argmax(s.logits.data(), ln_.data(), last, final_norm(), w_.wte.view);  // (1, V)
  }

  // The prompt cache's copies (backend.h): row i of each layer's block is position pos0 + i,
  // wherever the ring's wrap put its slot.
  void read_kv_impl(int seq, int pos0, int n, const KvRing& ring, uint8_t* k, uint8_t* v,
                    size_t layer_bytes) override {
    const size_t row = kv_row_bytes();
    for (size_t l = 0; l < blocks_.size(); ++l) {
      const uint8_t *k_ring = ring_of(blocks_[l].k_ring, seq), *v_ring = ring_of(blocks_[l].v_ring, seq);
      for (int i = 0; i < n; ++i) {
        const size_t slot = size_t(ring.slot(pos0 + i)) * row;
        std::memcpy(k + l * layer_bytes + i * row, k_ring + slot, row);
        std::memcpy(v + l * layer_bytes + i * row, v_ring + slot, row);
      }
    }
  }
  void write_kv_impl(int seq, const int* ids, int pos0, int n, const KvRing& ring, const uint8_t* k, const uint8_t* v,
                     size_t layer_bytes) override {
    const size_t row = kv_row_bytes();
    for (size_t l = 0; l < blocks_.size(); ++l) {
      uint8_t *k_ring = ring_of(blocks_[l].k_ring, seq), *v_ring = ring_of(blocks_[l].v_ring, seq);
      for (int i = 0; i < n; ++i) {
        const size_t slot = size_t(ring.slot(pos0 + i)) * row;
        std::memcpy(k_ring + slot, k + l * layer_bytes + i * row, row);
        std::memcpy(v_ring + slot, v + l * layer_bytes + i * row, row);
      }
    }
    record_context(seqs_[size_t(seq)], seq, ids, n, pos0, ring);  // its own positions (pos0 = 0: its own history)
  }

  // Shared prefixes in a batch: src's rows of positions [0, n) copied ring to ring, no host trip.
  void copy_kv_impl(int src, int dst, const int* ids, int n, const KvRing& ring) override {
    const size_t row = kv_row_bytes();
    for (Block& b : blocks_) {
      const uint8_t *k_src = ring_of(b.k_ring, src), *v_src = ring_of(b.v_ring, src);
      uint8_t *k_dst = ring_of(b.k_ring, dst), *v_dst = ring_of(b.v_ring, dst);
      for (int p = 0; p < n; ++p) {
        const size_t slot = size_t(ring.slot(p)) * row;  // rows in the ring's own format
        std::memcpy(k_dst + slot, k_src + slot, row);
        std::memcpy(v_dst + slot, v_src + slot, row);
      }
    }
    record_context(seqs_[size_t(dst)], dst, ids, n, 0, ring);  // position 0: a history of its own
  }

  // B sequences' tokens as one (B, C) block of rows through the matrix products, each row's
  // attention against its own sequence's rings: every kernel computes a row as the one-row
  // decode step does (fast::gemv_batch), so the logits are forward()'s, bitwise.
  void decode_batch_impl(const SeqToken* rows, int B) override {
    if (B == 1) return forward_impl(rows[0].seq, &rows[0].id, 1, rows[0].pos, rows[0].ring);
    forward_rows(rows, B, every_row_.data(), B);
  }

  // Short chunks (up to kGemvRows tokens, which forward() runs through the same row-by-row
  // kernels as a decode step) become rows of one forward_rows(), so the weights are read once for
  // all of them and each chunk's logits are forward()'s, bitwise; longer chunks run alone.
  void prefill_batch_impl(const SeqChunk* chunks, int n) override {
    prefill_rows_.clear();
    prefill_last_.clear();
    const int max_rows = int(x_.size() / size_t(config().n_embd));
    for (int c = 0; c < n; ++c) {
      const SeqChunk& k = chunks[c];
      if (n == 1 || k.n > kGemvRows || int(prefill_rows_.size()) + k.n > max_rows) {
        forward_impl(k.seq, k.ids, k.n, k.pos, k.ring);
        continue;
      }
      for (int i = 0; i < k.n; ++i) prefill_rows_.push_back(SeqToken{k.seq, k.ids[i], k.pos + i, k.ring});
      prefill_last_.push_back(int(prefill_rows_.size()) - 1);
    }
    if (!prefill_rows_.empty())
      forward_rows(prefill_rows_.data(), int(prefill_rows_.size()), prefill_last_.data(), int(prefill_last_.size()));
  }

  // B rows, rows[b].id at rows[b].pos of sequence rows[b].seq (a sequence's rows in position
  // order), through the blocks as one (B, C) block of rows; then the final LayerNorm and LM head
  // on the rows last[0..n_last) only (rising; at most n_seqs()), each into its sequence's logits.
  void forward_rows(const SeqToken* rows, int B, const int* last, int n_last) {
    const GPT2Config& cfg = config();
    const int C = cfg.n_embd, V = cfg.vocab_size;
    for (int b = 0; b < B; ++b) {
      record_context(seqs_[size_t(rows[b].seq)], rows[b].seq, &rows[b].id, 1, rows[b].pos, rows[b].ring);
      embedding_row(x_.data() + long(b) * C, rows[b].id, rows[b].pos);  // x (B, C)
    }
    for (Block& blk : blocks_) batch_block(blk, rows, B);
    for (int j = 0; j < n_last; ++j)  // the rows that need logits to the front: last[j] >= j
      if (last[j] != j) std::copy_n(x_.data() + long(last[j]) * C, C, x_.data() + long(j) * C);
    fast::layernorm_gemv_argmax_batch(batch_logits_.data(), ln_.data(), x_.data(), n_last, final_norm(), w_.wte.view,
                                      batch_argmax_.data());  // (n_last, V)
    for (int j = 0; j < n_last; ++j) {
      SeqState& s = seqs_[size_t(rows[last[j]].seq)];
      std::copy_n(batch_logits_.data() + long(j) * V, V, s.logits.data());
      s.argmax = batch_argmax_[size_t(j)];
    }
  }

  fast::LayerNormParams final_norm() const {
    return {w_.ln_f_w.data(), w_.ln_f_b.data(), config().layer_norm_epsilon};
  }

  // --profile: whole steps and op-timed steps, interleaved so that both see the machine in the
  // same state, after one untimed step; then the read bandwidth for the % column.
  DecodeProfile profile_impl(int steps, const DecodeStep& s) override {
    auto step = [&](ProfileSink* sink) {
      sink_ = sink;
      try {
        forward_impl(0, &s.token, 1, s.pos, s.ring);
      } catch (...) {
        sink_ = nullptr;
        throw;
      }
      sink_ = nullptr;
    };
    step(nullptr);
    OpTotals totals;
    ClockSink clock(totals);
    double whole_us = 0;
    for (int i = 0; i < steps; ++i) {
      const double t0 = now_us();
      step(nullptr);
      whole_us += now_us() - t0;
      step(&clock);
    }
    DecodeProfile p = make_profile(totals, steps, whole_us, decode_shapes(config(), info_.dtype, false, s.pos + 1, info_.kv_dtype));
    p.device = info_.device;
    p.bandwidth_gb_per_s = measure_read_bandwidth().gb_per_s;
    p.bandwidth_source = "cpu-read";
    return p;
  }

  // x (T, C) = wte[ids[t]] + wpe[pos + t]; the wte row widened from the weight type.
  void embedding(const int* ids, int T, int pos) {
    for (int t = 0; t < T; ++t) embedding_row(x_.data() + long(t) * config().n_embd, ids[t], pos + t);
  }
  void embedding_row(float* row, int id, int pos) {
    const int C = config().n_embd;
    simd::widen_rows(w_.wte.view, id, id + 1, row);
    const float* pe = w_.wpe.data() + long(pos) * C;
    for (int c = 0; c < C; ++c) row[c] += pe[c];
  }

  // out (T, OC) = in (T, IC) W^T + bias, then the epilogue (Store, Gelu, or AddTo: out +=).
  // One row: the matrix-vector kernel, epilogue fused. Up to kGemvRows rows (the suffix after a
  // reused prefix, a short prompt): the batched matrix-vector kernel, which streams W once in
  // its own type, where the GEMM would first widen all of W to fp32 and is memory-bound anyway.
  // More: the GEMM, then the epilogue.
  static constexpr int kGemvRows = 16;
  void linear(float* out, const float* in, const Matrix& w, const std::vector<float>& bias, int T,
              fast::Epilogue e) {
    if (T == 1) return fast::gemv(out, in, w.view, bias.data(), e);
    if (T <= kGemvRows) return fast::gemv_batch(out, in, T, w.view, bias.data(), e);
    fast::matmul(out, in, w.view, bias.data(), T, e, gemm_scratch_.data());
  }

  // linear() of layernorm(in), the norm written to ln_; one row: fused into the product.
  void norm_linear(float* out, const float* in, const std::vector<float>& ln_w, const std::vector<float>& ln_b,
                   const Matrix& w, const std::vector<float>& bias, int T, fast::Epilogue e) {
    const fast::LayerNormParams norm{ln_w.data(), ln_b.data(), config().layer_norm_epsilon};
    if (T == 1) return fast::layernorm_gemv(out, ln_.data(), in, norm, w.view, bias.data(), e);
    fast::layernorm(ln_.data(), in, norm, T, w.view.cols);
    linear(out, ln_.data(), w, bias, T, e);
  }

  // The context the logits processors see: positions [0, pos + n), ids by ring slot (as the
  // K/V rings hold them); the new positions are sequence seq's own, and a forward from
  // position 0 starts a history of its own.
  static void record_context(SeqState& s, int seq, const int* ids, int n, int pos, const KvRing& ring) {
    for (int i = 0; i < n; ++i) {
      s.context[size_t(ring.slot(pos + i))] = ids[i];
      s.owner[size_t(pos + i)] = seq;
    }
    if (pos == 0) s.shared = false;
    s.context_len = pos + n;
    s.context_ring = ring;
  }

  // Beam search's reorder: sequence i takes parent[i]'s history table for positions [0, pos)
  // (pos ints per sequence; no K/V moves). The tables are copied into spares first, since a
  // parent may be reordered itself, then swapped in.
  void reorder_impl(const int* parent, int n, int pos) override {
    for (int i = 0; i < n; ++i) {
      const SeqState& from = seqs_[size_t(parent[i])];
      std::copy_n(from.owner.begin(), pos, spare_owner_[size_t(i)].begin());
      spare_shared_[size_t(i)] = from.shared || parent[i] != i;
    }
    for (int i = 0; i < n; ++i) {
      SeqState& s = seqs_[size_t(i)];
      std::swap(s.owner, spare_owner_[size_t(i)]);
      s.shared = spare_shared_[size_t(i)] != 0;
      s.context_len = pos;
      s.context_ring = KvRing{kv_capacity(), 0};
    }
  }

  // Where sequence seq's attention finds its positions: its own rings, or its history table.
  fast::KvHistory history_of(int seq) const {
    const SeqState& s = seqs_[size_t(seq)];
    if (!s.shared) return {};
    return {s.owner.data(), seq, long(kv_capacity()) * long(kv_row_bytes())};
  }

  // Sequence seq's K or V ring of a block: (capacity, kv_row_bytes).
  uint8_t* ring_of(uint8_t* rings, int seq) {
    return rings + size_t(seq) * kv_capacity() * kv_row_bytes();
  }

  // One transformer block on the residual stream x (T, C).
  void block(Block& b, int seq, int T, int pos, const KvRing& ring) {
    using fast::Epilogue;
    const GPT2Config& cfg = config();
    const int C = cfg.n_embd;
    float* x = x_.data();
    OpSequence ops(sink_);
    // x = x + attn(ln_1(x))
    ops.next(DecodeOp::LnQkvKvAppend);
    norm_linear(qkv_.data(), x, b.ln_1_w, b.ln_1_b, b.qkv_w, b.qkv_b, T, Epilogue::Store);  // (T, 3C)
    uint8_t *k_ring = ring_of(b.k_ring, seq), *v_ring = ring_of(b.v_ring, seq);
    cpu::kv_append(k_ring, v_ring, qkv_.data(), T, pos, ring, C, cfg.n_head, kv_type_);
    ops.next(DecodeOp::Attention);
    fast::attention(att_.data(), qkv_.data(), k_ring, v_ring, T, pos, ring, cfg.n_head, cfg.head_dim(), kv_type_,
                    att_scratch_.data(), fast::attention_scratch_floats(cfg.head_dim()), att_partials_.data(),
                    history_of(seq));  // (T, C)
    ops.next(DecodeOp::AttnProj);
    linear(x, att_.data(), b.attn_proj_w, b.attn_proj_b, T, Epilogue::AddTo);  // x += (T, C)
    // x = x + mlp(ln_2(x))
    ops.next(DecodeOp::LnFc);
    norm_linear(fc_.data(), x, b.ln_2_w, b.ln_2_b, b.fc_w, b.fc_b, T, Epilogue::Gelu);  // (T, H)
    ops.next(DecodeOp::FcProj);
    linear(x, fc_.data(), b.fc_proj_w, b.fc_proj_b, T, Epilogue::AddTo);  // x += (T, C)
  }

  // block() for B rows (forward_rows): the products run on all rows at once, K/V append and
  // attention row by row in each row's own rings.
  void batch_block(Block& b, const SeqToken* rows, int B) {
    using fast::Epilogue;
    const GPT2Config& cfg = config();
    const int C = cfg.n_embd;
    const fast::LayerNormParams ln_1{b.ln_1_w.data(), b.ln_1_b.data(), cfg.layer_norm_epsilon};
    const fast::LayerNormParams ln_2{b.ln_2_w.data(), b.ln_2_b.data(), cfg.layer_norm_epsilon};
    fast::layernorm_gemv_batch(qkv_.data(), ln_.data(), x_.data(), B, ln_1, b.qkv_w.view, b.qkv_b.data(),
                               Epilogue::Store);  // (B, 3C)
    // Every row's K/V first: a row reads only its own new position and earlier ones.
    attention_rows_.clear();
    for (int r = 0; r < B; ++r) {
      const SeqToken& t = rows[r];
      uint8_t *k_ring = ring_of(b.k_ring, t.seq), *v_ring = ring_of(b.v_ring, t.seq);
      cpu::kv_append(k_ring, v_ring, qkv_.data() + long(r) * 3 * C, 1, t.pos, t.ring, C, cfg.n_head, kv_type_);
      attention_rows_.push_back(fast::AttentionRow{k_ring, v_ring, t.pos, t.ring, history_of(t.seq)});
    }
    fast::attention_rows(att_.data(), qkv_.data(), B, attention_rows_.data(), cfg.n_head, cfg.head_dim(), kv_type_,
                         att_scratch_.data(), fast::attention_scratch_floats(cfg.head_dim()),
                         att_partials_.data());  // (B, C)
    fast::gemv_batch(x_.data(), att_.data(), B, b.attn_proj_w.view, b.attn_proj_b.data(), Epilogue::AddTo);
    fast::layernorm_gemv_batch(fc_.data(), ln_.data(), x_.data(), B, ln_2, b.fc_w.view, b.fc_b.data(),
                               Epilogue::Gelu);  // (B, H)
    fast::gemv_batch(x_.data(), fc_.data(), B, b.fc_proj_w.view, b.fc_proj_b.data(), Epilogue::AddTo);
  }

  void allocate_activations() {
    const GPT2Config& cfg = config();
    // rows per forward(), or per decode_batch()
    const int C = cfg.n_embd, H = cfg.n_inner, max_T = std::max(context_window(), n_seqs());
    x_.resize(size_t(max_T) * C);
    ln_.resize(size_t(max_T) * C);
    qkv_.resize(size_t(max_T) * 3 * C);
    att_.resize(size_t(max_T) * C);
    fc_.resize(size_t(max_T) * H);
    seqs_.resize(size_t(n_seqs()));
    for (SeqState& s : seqs_) {
      s.logits.assign(size_t(cfg.vocab_size), 0.0f);
      s.context.assign(size_t(kv_capacity()), 0);
      s.owner.assign(size_t(kv_capacity()), 0);
    }
    spare_owner_.assign(size_t(n_seqs()), std::vector<int>(size_t(kv_capacity()), 0));
    spare_shared_.assign(size_t(n_seqs()), 0);
    if (n_seqs() > 1) {
      batch_logits_.resize(size_t(n_seqs()) * cfg.vocab_size);
      batch_argmax_.resize(size_t(n_seqs()));
      attention_rows_.reserve(size_t(max_T));
      prefill_rows_.reserve(size_t(max_T));
      prefill_last_.reserve(size_t(n_seqs()));
      every_row_.resize(size_t(n_seqs()));
      std::iota(every_row_.begin(), every_row_.end(), 0);
    }
    scores_.resize(size_t(cfg.vocab_size));
    context_in_order_.assign(size_t(kv_capacity()), 0);
    process_scratch_.reserve(kv_capacity());
    att_scratch_.resize(size_t(threads_) * fast::attention_scratch_floats(cfg.head_dim()));
    att_partials_.resize(size_t(fast::attention_partial_floats(max_T, kv_capacity(), cfg.n_head, cfg.head_dim())));
    // The GEMM multiplies fp32: 16-bit and int8 layer matrices are widened into this first.
    size_t largest = 0;
    auto measure = [&largest, max_T](const char*, const ShapeRule&, const auto& t) {
      if constexpr (std::is_same_v<std::decay_t<decltype(t)>, Matrix>)
        largest = std::max(largest, fast::matmul_scratch_floats(t.view, max_T));
    };
    for (const Block& b : blocks_) for_each_layer_tensor(measure, b);
    gemm_scratch_.resize(largest);
  }

  // The weight stream's prefetch distance on this machine (fast::tune_prefetch), or the bytes
  // GPT2_CPU_PREFETCH names (no probe: for timings that must not vary with it).
  void tune_prefetch_distance() {
    if (const char* env = std::getenv("GPT2_CPU_PREFETCH")) {
      char* end = nullptr;
      const long v = std::strtol(env, &end, 10);
      if (!*env || *end || v < 0 || v > (1L << 20))
        throw Error(std::string("GPT2_CPU_PREFETCH=\"") + env + "\" is not a byte count from 0 to 1048576: use e.g. 8192, or unset it");
      simd::set_prefetch_distance(size_t(v));
      prefetch_ = {size_t(v), 0, false};
      prefetch_note_ = "set by GPT2_CPU_PREFETCH";
      return;
    }
    std::vector<simd::WeightView> matrices;  // in decode's order: the layers, then the LM head
    for (const Block& b : blocks_)
      for_each_layer_tensor([&matrices](const char*, const ShapeRule&, const auto& t) {
        if constexpr (std::is_same_v<std::decay_t<decltype(t)>, Matrix>) matrices.push_back(t.view);
      }, b);
    matrices.push_back(w_.wte.view);
    prefetch_ = fast::tune_prefetch(matrices, last_level_cache_bytes());
    char buf[96];
    std::snprintf(buf, sizeof buf, prefetch_.probed ? "probed in %.0f ms" : "default: the weights nearly fit in the cache",
                  prefetch_.probe_ms);
    prefetch_note_ = buf;
  }

  void describe(WType type) {
    const GPT2Config& cfg = config();
    info_.device = "cpu";
    info_.device_name = cpu_model_name();
    info_.dtype = compute_dtype(type);
    info_.threads = threads_;
    info_.prefetch_bytes = prefetch_.bytes;
    info_.prefetch_probe_ms = prefetch_.probe_ms;
    info_.device_paths = simd::target_name() + std::string(", weights prefetched ") +
                         std::to_string(prefetch_.bytes / 1024) + " KB ahead (" + prefetch_note_ + ")";
    size_t bytes = 0;
    for_each_tensor([&bytes](const char*, const ShapeRule&, const auto& t) {
      if constexpr (std::is_same_v<std::decay_t<decltype(t)>, Matrix>) bytes += t.bytes();
      else bytes += t.size() * sizeof(float);
    }, w_, blocks_);
    info_.weight_bytes = bytes;
    // A decode step reads every matrix and vector once, and one row of wpe.
    info_.decode_weight_bytes = bytes - (w_.wpe.size() - size_t(cfg.n_embd)) * sizeof(float);
    info_.kv_bytes = kv_arena_.size();  // as allocated
    info_.activation_bytes = (x_.size() + ln_.size() + qkv_.size() + att_.size() + fc_.size() +
                              size_t(n_seqs()) * cfg.vocab_size + batch_logits_.size() + att_scratch_.size() +
                              att_partials_.size() + gemm_scratch_.size()) * sizeof(float);
  }

  int threads_ = 1;
  ComputeDType kv_type_ = kDefaultKvType;  // the K/V rings' format (--kv-dtype)
  ProfileSink* sink_ = nullptr;  // while --profile times a step op by op
  fast::PrefetchTuning prefetch_;  // the weight stream's software prefetch distance
  std::string prefetch_note_;      // how it was chosen
  Weights w_;
  std::vector<Block> blocks_;
  // Every layer's K and V rings, layer by layer, in one allocation on huge pages: attention at
  // long contexts reads a layer's rings in position order, and with 4 kB pages it crosses a page
  // every 2.7 rows (fp16, 124M). Measured with fast::attention alone at context 1005, fp16, a 64
  // MB read between layers, 2026-12-07 on the 2-core AMD EPYC: 296-377 us per layer against
  // 399-433 on 4 kB pages, alternating.
  std::vector<uint8_t, HugePageAllocator<uint8_t>> kv_arena_;
  std::vector<float> x_, ln_, qkv_, att_, fc_;  // activations, max(context_window(), n_seqs()) rows
  std::vector<float> att_scratch_;   // attention's scratch, per thread
  std::vector<float> att_partials_;  // a decode step's key tiles' partial results
  std::vector<float> gemm_scratch_;  // a layer matrix widened to fp32 for the GEMM
  std::vector<SeqState> seqs_;       // (n_seqs)
  std::vector<float> batch_logits_;  // (n_seqs, V): decode_batch()'s rows, before each goes to its sequence
  std::vector<int> batch_argmax_;    // (n_seqs)
  std::vector<fast::AttentionRow> attention_rows_;  // forward_rows()' rows, reserved once
  std::vector<SeqToken> prefill_rows_;  // prefill_batch()'s rows of its short chunks, reserved once
  std::vector<int> prefill_last_;       // (chunks) each short chunk's last row
  std::vector<int> every_row_;          // (n_seqs) 0, 1, ...: decode_batch() wants every row's logits
  std::vector<float> scores_;                   // (V) the logits after process_logits()
  SampleScratch sample_scratch_;                // grown by the first sampled token, then reused
  ProcessScratch process_scratch_;              // reserved for kv_capacity() ids
  std::vector<int> context_in_order_;           // (capacity) a sequence's context ids by position
  std::vector<std::vector<int>> spare_owner_;   // (n_seqs, capacity) reorder()'s new history tables
  std::vector<char> spare_shared_;              // (n_seqs)
  BackendInfo info_;
};

}  // namespace
int physical_cores() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, physical;
  std::set<std::pair<std::string, std::string>> cores;  // (physical id, core id)
  while (std::getline(in, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string value = line.substr(colon + 1);
    if (line.rfind("physical id", 0) == 0) physical = value;
    if (line.rfind("core id", 0) == 0) cores.insert({physical, value});
  }
  return cores.empty() ? std::max(1, omp_get_num_procs()) : int(cores.size());
}

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(model, options);
}

}  // namespace gpt2
