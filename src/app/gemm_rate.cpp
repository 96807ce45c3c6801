#include "app/gemm_rate.h"

#include <algorithm>
#include <chrono>

#include "cpu/cpu_fast.h"

namespace gpt2 {

GemmStepBench::GemmStepBench(const GPT2Config& c) : config_(c) {
  const int C = c.n_embd, H = c.n_inner;
  auto add = [this](int out, int in) {
    // The values do not change the speed; small and non-zero keeps every sum normal.
    matrices_.push_back({std::vector<float>(size_t(out) * size_t(in), 1.0f / 1024), out, in});
  };
  for (int l = 0; l < c.n_layer; ++l) {
    add(3 * C, C);  // qkv
    add(C, C);      // attn proj
    add(H, C);      // fc
    add(C, H);      // fc proj
  }
  add(c.vocab_size, C);  // LM head (wte)
}

std::string GemmStepBench::library() { return fast::gemm_library(); }

GemmRate GemmStepBench::measure(int rows, int repetitions) const {
  using Clock = std::chrono::steady_clock;
  const int widest_in = std::max(config_.n_embd, config_.n_inner);
  int widest_out = 0;
  for (const Matrix& m : matrices_) widest_out = std::max(widest_out, m.out);
  x_.assign(size_t(rows) * size_t(widest_in), 1.0f / 64);  // (B, max in)
  y_.assign(size_t(rows) * size_t(widest_out), 0.0f);      // (B, max out)

  GemmRate r;
  r.rows = rows;
  for (const Matrix& m : matrices_) r.flops += 2.0 * rows * double(m.out) * double(m.in);
  for (int rep = 0; rep <= repetitions; ++rep) {  // rep 0 warms up (first-touch, the library's setup)
    const auto t = Clock::now();
    for (const Matrix& m : matrices_) {
      const simd::WeightView w{simd::WType::F32, m.w.data(), nullptr, m.out, m.in};
      fast::matmul(y_.data(), x_.data(), w, nullptr, rows, fast::Epilogue::Store, nullptr);
    }
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    if (rep > 0 && (r.best_ms == 0 || ms < r.best_ms)) r.best_ms = ms;
  }
  return r;
}

}  // namespace gpt2
