// The CPU reference backend against Hugging Face's float64 goldens for the tiny GPT-2.
#include <gtest/gtest.h>

#include <cstdio>
#include <optional>

#include "backend_cpu.h"
#include "generator.h"
#include "golden.h"
#include "model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

using test::tiny_golden;

// (weight file, --dtype): the file's own dtype, and an fp32 file held in each weight type.
struct GoldenCase {
  std::string file;
  std::optional<ComputeDType> weights;  // unset: the file's dtype
  std::string name() const { return file + (weights ? std::string("_as_") + compute_dtype_name(*weights) : ""); }
};

class CpuGolden : public ::testing::TestWithParam<GoldenCase> {
 protected:
  void SetUp() override {
    model_ = std::make_unique<Model>(load_model(test::tiny_model(GetParam().file)));
    BackendOptions o;
    o.dtype = GetParam().weights;
    backend_ = make_cpu_backend(*model_, o);
  }
  // max |logit - ref| / max |ref|, from the error measured here (2026-12-01, g++ 12 -O2):
  // fp32 weights 4.7e-7 (last logits) and 7.7e-7 (every position) -> 1e-5 (an erf GELU in
  // place of tanh errs by 1.8e-4); fp16-stored weights (widened to fp32) carry their rounding,
  // 8.5e-4 and 1.2e-3 -> 5e-3 (4x); bf16-stored, 6.7e-3 and 1.4e-2 -> 5e-2 (3.5x). The lossiest
  // of the file and the held type counts; int8 held (last logits 1.6e-2): 5e-2.
  double tolerance() const {
    const GoldenCase& c = GetParam();
    if (c.file == "bf16" || c.weights == ComputeDType::BF16 || c.weights == ComputeDType::Int8) return 5e-2;
    return c.file == "fp16" || c.weights == ComputeDType::F16 ? 5e-3 : 1e-5;
  }
  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
};

TEST_P(CpuGolden, LastLogitsOfEverySequence) {
  const double err = test::expect_last_logits_match(*backend_, tolerance());
  std::printf("[%s] last logits: max|d|/max|ref| = %.3g\n", GetParam().name().c_str(), err);
}

TEST_P(CpuGolden, SubsetLogitsAtEveryPositionWithAndWithoutCache) {
  const double err = test::expect_subset_logits_match(*backend_, tolerance());
  std::printf("[%s] every position: max|d|/max|ref| = %.3g\n", GetParam().name().c_str(), err);
}

// fp16 weights widen exactly and both are summed in the same order, so an fp16 file gives the
// same logits, bit for bit, whether its weights are held as fp16 or widened to fp32.
TEST(CpuWeights, Fp16HeldAsFp16OrFp32GivesIdenticalLogits) {
  const Model model = load_model(test::tiny_model("fp16"));
  BackendOptions as_fp32;
  as_fp32.dtype = ComputeDType::F32;
  auto a = make_cpu_backend(model, BackendOptions{}), b = make_cpu_backend(model, as_fp32);
  ASSERT_EQ(a->info().dtype, ComputeDType::F16);
  ASSERT_EQ(b->info().dtype, ComputeDType::F32);
  // Held as fp16, each matrix element (wte, and 12 C^2 per layer) takes 2 bytes instead of 4.
  const GPT2Config& c = model.config;
  const size_t matrix_elements = size_t(c.vocab_size) * c.n_embd + size_t(c.n_layer) * 12 * c.n_embd * c.n_embd;
  EXPECT_EQ(b->info().weight_bytes - a->info().weight_bytes, 2 * matrix_elements);
  const std::vector<int> ids = {2061, 318, 509, 53, 40918, 30};
  std::vector<float> la(size_t(model.config.vocab_size)), lb(la.size());
  for (int n : {1, 6}) {
    a->forward(ids.data(), n, 0, KvRing{a->kv_capacity(), 0});
    b->forward(ids.data(), n, 0, KvRing{b->kv_capacity(), 0});
    a->read_logits(la.data());
    b->read_logits(lb.data());
    EXPECT_EQ(la, lb) << n << " tokens";
  }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, CpuGolden,
                         ::testing::Values(GoldenCase{"fp32", {}}, GoldenCase{"fp16", {}}, GoldenCase{"bf16", {}},
                                           GoldenCase{"fp32", ComputeDType::F16},
                                           GoldenCase{"fp32", ComputeDType::Int8}),
                         [](const auto& info) { return info.param.name(); });

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

// transformers' repetition_penalty and no_repeat_ngram_size (reference_processors.json).
TEST_P(CpuGreedy, ReproducesTransformersProcessorContinuations) {
  const Model model = load_model(test::tiny_model("fp32"));
  auto backend = make_cpu_backend(model, BackendOptions{});
  ASSERT_EQ(tiny_golden().processed.size(), 12u);
  for (const auto& c : tiny_golden().processed)
    test::expect_processed_continuation_matches(*backend, c, GetParam());
}

INSTANTIATE_TEST_SUITE_P(CacheModes, CpuGreedy, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "cache" : "no_cache"; });

}  // namespace
}  // namespace gpt2
