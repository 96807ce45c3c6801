// The CPU reference backend against Hugging Face's float64 goldens for the tiny GPT-2.
#include <gtest/gtest.h>

#include "backend_cpu.h"
#include "generator.h"
#include "golden.h"
#include "model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

using test::max_rel_error;
using test::tiny_golden;

class CpuGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(load_model(test::tiny_model(GetParam())));
    backend_ = make_cpu_backend(*model_, BackendOptions{});
  }
  // fp32 weights must reproduce float64 logits to 1e-4; fp16/bf16-stored weights (widened to
  // fp32) carry their rounding error, bounded by the half-precision tolerance.
  double tolerance() const { return GetParam() == "fp32" ? 1e-4 : 2e-2; }
  std::vector<float> logits() {
    std::vector<float> v(size_t(model_->config.vocab_size));
    backend_->read_logits(v.data());
    return v;
  }
  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
};

TEST_P(CpuGolden, LastLogitsOfEverySequence) {
  const KvRing ring{backend_->kv_capacity(), 0};
  for (const auto& seq : tiny_golden().sequences) {
    backend_->forward(seq.ids.data(), int(seq.ids.size()), 0, ring);
    const std::vector<float> got = logits();
    EXPECT_LE(max_rel_error(got.data(), seq.logits_last.data(), got.size()), tolerance()) << seq.name;
  }
}

// Every position's logits, twice: recomputing each prefix from scratch (the --no-cache path)
// and feeding one token at a time against the cache, with the ring starting mid-buffer so
// the filled slots wrap around its end.
TEST_P(CpuGolden, SubsetLogitsAtEveryPositionWithAndWithoutCache) {
  const auto& g = tiny_golden();
  const size_t S = g.subset.size();
  const int cap = backend_->kv_capacity();
  for (const auto& seq : g.sequences) {
    auto check_row = [&](int t, const char* mode) {
      const std::vector<float> full = logits();
      std::vector<float> got(S);
      for (size_t j = 0; j < S; ++j) got[j] = full[size_t(g.subset[j])];
      EXPECT_LE(max_rel_error(got.data(), seq.logits_subset.data() + size_t(t) * S, S), tolerance())
          << seq.name << " " << mode << " position " << t;
    };
    for (int t = 0; t < int(seq.ids.size()); ++t) {
      backend_->forward(seq.ids.data(), t + 1, 0, KvRing{cap, 0});
      check_row(t, "no-cache");
    }
    const KvRing wrapped{cap, cap - 3};
    for (int t = 0; t < int(seq.ids.size()); ++t) {
      backend_->forward(&seq.ids[size_t(t)], 1, t, wrapped);
      check_row(t, "cached");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(StoredDtypes, CpuGolden, ::testing::Values("fp32", "fp16", "bf16"));

class CpuGreedy : public ::testing::TestWithParam<bool> {};

// Greedy continuations token for token, with the cache and with --no-cache (fp32 weights:
// the goldens' top-2 margins, 0.003 and up, are far above fp32 rounding).
TEST_P(CpuGreedy, ReproducesHuggingFaceContinuations) {
  const Model model = load_model(test::tiny_model("fp32"));
  auto backend = make_cpu_backend(model, BackendOptions{});
  GenerationOptions opt;
  opt.use_cache = GetParam();
  opt.ignore_eos = true;
  opt.sampling.temperature = 0;
  for (const auto& g : tiny_golden().greedy) {
    opt.max_new_tokens = int(g.new_tokens.size());
    const GenerationResult r = generate(*backend, g.prompt, model.config.n_positions, opt, nullptr);
    EXPECT_EQ(r.generated, g.new_tokens);
    EXPECT_EQ(r.finish, FinishReason::Length);
  }
}

INSTANTIATE_TEST_SUITE_P(CacheModes, CpuGreedy, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "cache" : "no_cache"; });

}  // namespace
}  // namespace gpt2
