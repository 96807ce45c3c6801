// The CPU reference backend. It reads like nanoGPT's model.py: embeddings, n_layer pre-LN
// blocks (x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))), a final LayerNorm and logits against
// the tied token embedding. Weights are widened to fp32 at load; all buffers are allocated once.
#include "backend_cpu.h"

#include <cmath>
#include <fstream>
#include <vector>

#include "cpu_ops.h"
#include "error.h"
#include "model.h"

namespace gpt2 {
namespace {

// Widens a weight tensor to fp32 and refuses NaN or Inf (a corrupted or badly converted file).
std::vector<float> load_fp32(const TensorView& t, const std::string& source) {
  std::vector<float> v(size_t(t.numel));
  t.to_float(v.data());
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      throw Error(source + ": tensor \"" + t.name + "\" holds " + (std::isnan(v[i]) ? "NaN" : "Inf") +
                  " at element " + std::to_string(i) + " (corrupted or badly converted weights)");
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

struct Block {
  std::vector<float> ln_1_w, ln_1_b;  // (C)
  std::vector<float> qkv_w, qkv_b;    // (3C, C), (3C)
  std::vector<float> proj_w, proj_b;  // (C, C), (C)
  std::vector<float> ln_2_w, ln_2_b;  // (C)
  std::vector<float> fc_w, fc_b;      // (H, C), (H)
  std::vector<float> fc_proj_w, fc_proj_b;  // (C, H), (C)
  std::vector<float> k_ring, v_ring;  // (capacity, C) each
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& m, const BackendOptions& o) : cfg_(m.config) {
    const std::string& src = m.file.source();
    const int C = cfg_.n_embd, H = cfg_.n_inner;
    capacity_ = o.kv_capacity > 0 ? o.kv_capacity : cfg_.n_positions;
    max_T_ = o.max_tokens_per_forward > 0 ? o.max_tokens_per_forward : capacity_;

    wte_ = load_fp32(*m.wte, src);
    wpe_ = load_fp32(*m.wpe, src);
    ln_f_w_ = load_fp32(*m.ln_f_w, src);
    ln_f_b_ = load_fp32(*m.ln_f_b, src);
    for (const LayerTensors& t : m.layers) {
      Block b;
      b.ln_1_w = load_fp32(*t.ln_1_w, src);
      b.ln_1_b = load_fp32(*t.ln_1_b, src);
      b.qkv_w = load_fp32(*t.qkv_w, src);
      b.qkv_b = load_fp32(*t.qkv_b, src);
      b.proj_w = load_fp32(*t.proj_w, src);
      b.proj_b = load_fp32(*t.proj_b, src);
      b.ln_2_w = load_fp32(*t.ln_2_w, src);
      b.ln_2_b = load_fp32(*t.ln_2_b, src);
      b.fc_w = load_fp32(*t.fc_w, src);
      b.fc_b = load_fp32(*t.fc_b, src);
      b.fc_proj_w = load_fp32(*t.fc_proj_w, src);
      b.fc_proj_b = load_fp32(*t.fc_proj_b, src);
      b.k_ring.assign(size_t(capacity_) * C, 0.0f);
      b.v_ring.assign(size_t(capacity_) * C, 0.0f);
      blocks_.push_back(std::move(b));
    }

    x_.resize(size_t(max_T_) * C);
    ln_.resize(size_t(max_T_) * C);
    qkv_.resize(size_t(max_T_) * 3 * C);
    att_.resize(size_t(max_T_) * C);
    proj_.resize(size_t(max_T_) * C);
    fc_.resize(size_t(max_T_) * H);
    logits_.resize(size_t(cfg_.vocab_size));

    info_.device = "cpu";
    info_.device_name = cpu_model_name();
    info_.dtype = ComputeDType::F32;
    info_.weight_bytes = size_t(cfg_.n_params()) * sizeof(float);
    info_.kv_bytes = size_t(2) * cfg_.n_layer * capacity_ * C * sizeof(float);
    info_.activation_bytes = (x_.size() + ln_.size() + qkv_.size() + att_.size() + proj_.size() +
                              fc_.size() + logits_.size()) * sizeof(float);
  }

  void forward(const int* ids, int n, int pos, const KvRing& ring) override {
    if (n < 1 || n > max_T_ || pos < 0 || pos + n > capacity_ || pos + n > cfg_.n_positions)
      throw Error("internal: forward() of " + std::to_string(n) + " tokens at position " +
                  std::to_string(pos) + " does not fit the context");
    const int C = cfg_.n_embd;
    cpu::embedding(x_.data(), ids, n, pos, wte_.data(), wpe_.data(), C);  // (T, C)
    for (Block& b : blocks_) block(b, n, pos, ring);
    // Only the last token's logits are needed: final LayerNorm and LM head on one row.
    const float* last = x_.data() + long(n - 1) * C;
    cpu::layernorm(ln_.data(), last, ln_f_w_.data(), ln_f_b_.data(), 1, C, cfg_.layer_norm_epsilon);
    cpu::matmul(logits_.data(), ln_.data(), wte_.data(), nullptr, 1, C, cfg_.vocab_size);  // (1, V)
  }

  int sample(const SamplingParams& params, double u) override {
    return sample_token(logits_.data(), cfg_.vocab_size, params, u);
  }

  void read_logits(float* out) override { std::copy(logits_.begin(), logits_.end(), out); }
  const BackendInfo& info() const override { return info_; }
  int kv_capacity() const override { return capacity_; }

 private:
  // One transformer block on the residual stream x (T, C).
  void block(Block& b, int T, int pos, const KvRing& ring) {
    const int C = cfg_.n_embd, H = cfg_.n_inner;
    const float eps = cfg_.layer_norm_epsilon;
    float* x = x_.data();
    // x = x + attn(ln_1(x))
    cpu::layernorm(ln_.data(), x, b.ln_1_w.data(), b.ln_1_b.data(), T, C, eps);
    cpu::matmul(qkv_.data(), ln_.data(), b.qkv_w.data(), b.qkv_b.data(), T, C, 3 * C);  // (T, 3C)
    cpu::kv_append(b.k_ring.data(), b.v_ring.data(), qkv_.data(), T, pos, ring, C);
    cpu::attention(att_.data(), qkv_.data(), b.k_ring.data(), b.v_ring.data(), T, pos, ring,
                   cfg_.n_head, cfg_.head_dim());                                          // (T, C)
    cpu::matmul(proj_.data(), att_.data(), b.proj_w.data(), b.proj_b.data(), T, C, C);     // (T, C)
    cpu::residual_add(x, proj_.data(), long(T) * C);
    // x = x + mlp(ln_2(x))
    cpu::layernorm(ln_.data(), x, b.ln_2_w.data(), b.ln_2_b.data(), T, C, eps);
    cpu::matmul(fc_.data(), ln_.data(), b.fc_w.data(), b.fc_b.data(), T, C, H);            // (T, H)
    cpu::gelu_new(fc_.data(), long(T) * H);
    cpu::matmul(proj_.data(), fc_.data(), b.fc_proj_w.data(), b.fc_proj_b.data(), T, H, C);  // (T, C)
    cpu::residual_add(x, proj_.data(), long(T) * C);
  }

  GPT2Config cfg_;
  int capacity_ = 0;
  int max_T_ = 0;
  std::vector<float> wte_, wpe_, ln_f_w_, ln_f_b_;
  std::vector<Block> blocks_;
  std::vector<float> x_, ln_, qkv_, att_, proj_, fc_, logits_;  // activations, sized for max_T_
  BackendInfo info_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(model, options);
}

}  // namespace gpt2
