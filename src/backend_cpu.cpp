// The CPU reference backend. It reads like nanoGPT's model.py: embeddings, n_layer pre-LN
// blocks (x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))), a final LayerNorm and logits against
// the tied token embedding. Weights are widened to fp32 at load; all buffers are allocated once.
#include "backend_cpu.h"

#include <fstream>
#include <vector>

#include "cpu_ops.h"
#include "error.h"
#include "model.h"

namespace gpt2 {
namespace {

// Widens a weight tensor to fp32 (the loader has refused NaN and Inf).
std::vector<float> widen(const TensorView& t) {
  std::vector<float> v(size_t(t.numel));
  t.to_float(v.data());
  return v;
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

// The tensors of model.h's lists, in fp32.
struct Weights {
  std::vector<float> wte, wpe;        // (V, C), (P, C)
  std::vector<float> ln_f_w, ln_f_b;  // (C)
};

struct Block {
  std::vector<float> ln_1_w, ln_1_b;            // (C)
  std::vector<float> qkv_w, qkv_b;              // (3C, C), (3C)
  std::vector<float> attn_proj_w, attn_proj_b;  // (C, C), (C)
  std::vector<float> ln_2_w, ln_2_b;            // (C)
  std::vector<float> fc_w, fc_b;                // (H, C), (H)
  std::vector<float> fc_proj_w, fc_proj_b;      // (C, H), (C)
  std::vector<float> k_ring, v_ring;            // (capacity, C) each
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& m, const BackendOptions& o) : Backend(m.config, o) {
    const GPT2Config& cfg = config();
    const int C = cfg.n_embd, H = cfg.n_inner;
    const int capacity = kv_capacity(), max_T = context_window();  // rows per forward()
    auto load = [](const char*, const ShapeRule&, const TensorView* view, std::vector<float>& dst) {
      dst = widen(*view);
    };
    for_each_model_tensor(load, m, w_);
    for (const LayerTensors& t : m.layers) {
      Block b;
      for_each_layer_tensor(load, t, b);
      b.k_ring.assign(size_t(capacity) * C, 0.0f);
      b.v_ring.assign(size_t(capacity) * C, 0.0f);
      blocks_.push_back(std::move(b));
    }

    x_.resize(size_t(max_T) * C);
    ln_.resize(size_t(max_T) * C);
    qkv_.resize(size_t(max_T) * 3 * C);
    att_.resize(size_t(max_T) * C);
    proj_.resize(size_t(max_T) * C);
    fc_.resize(size_t(max_T) * H);
    logits_.resize(size_t(cfg.vocab_size));

    info_.device = "cpu";
    info_.device_name = cpu_model_name();
    info_.dtype = ComputeDType::F32;
    info_.weight_bytes = size_t(cfg.n_params()) * sizeof(float);
    info_.kv_bytes = size_t(2) * cfg.n_layer * capacity * C * sizeof(float);
    info_.activation_bytes = (x_.size() + ln_.size() + qkv_.size() + att_.size() + proj_.size() +
                              fc_.size() + logits_.size()) * sizeof(float);
  }

  int sample(const SamplingParams& params, double u) override {
    return sample_token(logits_.data(), config().vocab_size, params, u);
  }

  void read_logits(float* out) override { std::copy(logits_.begin(), logits_.end(), out); }
  const BackendInfo& info() const override { return info_; }

 private:
  void forward_impl(const int* ids, int n, int pos, const KvRing& ring) override {
    const GPT2Config& cfg = config();
    const int C = cfg.n_embd;
    cpu::embedding(x_.data(), ids, n, pos, w_.wte.data(), w_.wpe.data(), C);  // (T, C)
    for (Block& b : blocks_) block(b, n, pos, ring);
    // Only the last token's logits are needed: final LayerNorm and LM head on one row.
    const float* last = x_.data() + long(n - 1) * C;
    cpu::layernorm(ln_.data(), last, w_.ln_f_w.data(), w_.ln_f_b.data(), 1, C, cfg.layer_norm_epsilon);
    cpu::matmul(logits_.data(), ln_.data(), w_.wte.data(), nullptr, 1, C, cfg.vocab_size);  // (1, V)
  }

  // One transformer block on the residual stream x (T, C).
  void block(Block& b, int T, int pos, const KvRing& ring) {
    const GPT2Config& cfg = config();
    const int C = cfg.n_embd, H = cfg.n_inner;
    const float eps = cfg.layer_norm_epsilon;
    float* x = x_.data();
    // x = x + attn(ln_1(x))
    cpu::layernorm(ln_.data(), x, b.ln_1_w.data(), b.ln_1_b.data(), T, C, eps);
    cpu::matmul(qkv_.data(), ln_.data(), b.qkv_w.data(), b.qkv_b.data(), T, C, 3 * C);  // (T, 3C)
    cpu::kv_append(b.k_ring.data(), b.v_ring.data(), qkv_.data(), T, pos, ring, C);
    cpu::attention(att_.data(), qkv_.data(), b.k_ring.data(), b.v_ring.data(), T, pos, ring,
                   cfg.n_head, cfg.head_dim());                                          // (T, C)
    cpu::matmul(proj_.data(), att_.data(), b.attn_proj_w.data(), b.attn_proj_b.data(), T, C, C);  // (T, C)
    cpu::residual_add(x, proj_.data(), long(T) * C);
    // x = x + mlp(ln_2(x))
    cpu::layernorm(ln_.data(), x, b.ln_2_w.data(), b.ln_2_b.data(), T, C, eps);
    cpu::matmul(fc_.data(), ln_.data(), b.fc_w.data(), b.fc_b.data(), T, C, H);            // (T, H)
    cpu::gelu_new(fc_.data(), long(T) * H);
    cpu::matmul(proj_.data(), fc_.data(), b.fc_proj_w.data(), b.fc_proj_b.data(), T, H, C);  // (T, C)
    cpu::residual_add(x, proj_.data(), long(T) * C);
  }

  Weights w_;
  std::vector<Block> blocks_;
  std::vector<float> x_, ln_, qkv_, att_, proj_, fc_, logits_;  // activations, context_window() rows
  BackendInfo info_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(model, options);
}

}  // namespace gpt2
