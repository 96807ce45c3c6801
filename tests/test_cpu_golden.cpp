// The CPU reference backend against Hugging Face's float64 goldens for the tiny GPT-2.
#include <gtest/gtest.h>

#include <cstdio>

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
  // max |logit - ref| / max |ref|, from the error measured here (2026-12-01, g++ 12 -O2):
  // fp32 weights 4.7e-7 (last logits) and 7.7e-7 (every position) -> 1e-5 (an erf GELU in
  // place of tanh errs by 1.8e-4); fp16-stored weights (widened to fp32) carry their rounding,
  // 8.5e-4 and 1.2e-3 -> 5e-3 (4x); bf16-stored, 6.7e-3 and 1.4e-2 -> 5e-2 (3.5x).
  double tolerance() const { return GetParam() == "fp32" ? 1e-5 : GetParam() == "fp16" ? 5e-3 : 5e-2; }
  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
};

TEST_P(CpuGolden, LastLogitsOfEverySequence) {
  const double err = test::expect_last_logits_match(*backend_, tolerance());
  std::printf("[%s] last logits: max|d|/max|ref| = %.3g\n", GetParam().c_str(), err);
}

TEST_P(CpuGolden, SubsetLogitsAtEveryPositionWithAndWithoutCache) {
  const double err = test::expect_subset_logits_match(*backend_, tolerance());
  std::printf("[%s] every position: max|d|/max|ref| = %.3g\n", GetParam().c_str(), err);
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
