// The CPU reference backend against Hugging Face's float64 goldens for the tiny GPT-2.
#include <gtest/gtest.h>

#include "backend_cpu.h"
#include "generator.h"
#include "golden.h"
#include "model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

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
  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
};

TEST_P(CpuGolden, LastLogitsOfEverySequence) { test::expect_last_logits_match(*backend_, tolerance()); }

TEST_P(CpuGolden, SubsetLogitsAtEveryPositionWithAndWithoutCache) {
  test::expect_subset_logits_match(*backend_, tolerance());
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
    const GenerationResult r = generate(*backend, g.prompt, opt, nullptr);
    EXPECT_EQ(r.generated, g.new_tokens);
    EXPECT_EQ(r.finish, FinishReason::Length);
  }
}

INSTANTIATE_TEST_SUITE_P(CacheModes, CpuGreedy, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "cache" : "no_cache"; });

}  // namespace
}  // namespace gpt2
