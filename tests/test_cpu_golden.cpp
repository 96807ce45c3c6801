// The CPU reference backend against Hugging Face's float64 goldens for the tiny GPT-2.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <optional>

#include "cpu/backend_cpu.h"
#include "engine/generator.h"
#include "golden.h"
#include "model/model.h"
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
  // max |logit - ref| / max |ref|, ~4x the worst error measured here (2026-12-01, g++ 12 -O2)
  // over the last logits and every position: fp32 weights 6.1e-7 and 9.9e-7 -> 1e-5 (an erf
  // GELU in place of tanh errs by 1.8e-4); fp16-stored weights (widened to fp32) carry their
  // rounding, 8.5e-4 and 1.2e-3 -> 5e-3; bf16-stored, 6.7e-3 and 1.4e-2 -> 5e-2; int8 held,
  // 1.6e-2 and 4.0e-2 -> 1.5e-1. The lossiest of the file and the held type counts.
  double tolerance() const {
    const GoldenCase& c = GetParam();
    if (c.weights == ComputeDType::Int8) return 1.5e-1;
    if (c.file == "bf16" || c.weights == ComputeDType::BF16) return 5e-2;
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

// int8 weights' error on the goldens' last logits (all 50,257 of every sequence), against the
// float64 goldens and against the same file held in fp32: src/cpu/README.md's accuracy text quotes these.
// Measured (2026-12-01): against the goldens max |d| 8.5e-2, NMSE 2.2e-4 (fp32 weights: 3.0e-6
// and 1.7e-13); against fp32, the same to two digits. Bound: 4x the NMSE.
TEST(CpuWeights, Int8LogitsErrorOnTheGoldens) {
  const Model model = load_model(test::tiny_model("fp32"));
  BackendOptions int8, fp32;
  int8.dtype = ComputeDType::Int8;
  fp32.dtype = ComputeDType::F32;
  auto q = make_cpu_backend(model, int8), f = make_cpu_backend(model, fp32);
  test::LogitsError int8_vs_golden, int8_vs_fp32, fp32_vs_golden;
  for (const auto& seq : tiny_golden().sequences) {
    std::vector<float> lq(seq.logits_last.size()), lf(lq.size());
    q->forward(seq.ids.data(), int(seq.ids.size()), 0, KvRing{q->kv_capacity(), 0});
    f->forward(seq.ids.data(), int(seq.ids.size()), 0, KvRing{f->kv_capacity(), 0});
    q->read_logits(lq.data());
    f->read_logits(lf.data());
    int8_vs_golden.add(lq, seq.logits_last);
    int8_vs_fp32.add(lq, lf);
    fp32_vs_golden.add(lf, seq.logits_last);
  }
  std::printf("int8 vs golden: max|d| %.3g NMSE %.3g; int8 vs fp32: max|d| %.3g NMSE %.3g; "
              "fp32 vs golden: max|d| %.3g NMSE %.3g\n",
              int8_vs_golden.max_abs, int8_vs_golden.nmse(), int8_vs_fp32.max_abs, int8_vs_fp32.nmse(),
              fp32_vs_golden.max_abs, fp32_vs_golden.nmse());
  EXPECT_LE(int8_vs_golden.nmse(), 9e-4);
  EXPECT_LE(int8_vs_fp32.nmse(), 9e-4);
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, CpuGolden,
                         ::testing::Values(GoldenCase{"fp32", {}}, GoldenCase{"fp16", {}}, GoldenCase{"bf16", {}},
                                           GoldenCase{"fp32", ComputeDType::F16}, GoldenCase{"fp32", ComputeDType::BF16},
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
