// The K/V rings' formats (--kv-dtype, engine/kv_format.h) on the CPU backend and the tiny golden
// model: their bytes as reported and allocated, their logits against fp32 K/V, and fp16 K/V
// reproducing Hugging Face's greedy continuations (the goldens' float64 reference).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "cpu/backend_cpu.h"
#include "engine/generator.h"
#include "engine/kv_format.h"
#include "golden.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

const Model& tiny() {
  static const Model model = load_model(test::tiny_model("fp32"));
  return model;
}

std::unique_ptr<Backend> backend_with(std::optional<ComputeDType> kv) {
  BackendOptions o;
  o.kv_dtype = kv;
  return make_cpu_backend(tiny(), o);
}

// Without --kv-dtype the CPU rings are fp32 (README.md says why); each format's
// bytes, as reported, are 2 x n_layer x capacity rows of kv_row_bytes and (BackendInfo counts
// the rings' allocations) as allocated: fp16 and bf16 half of fp32, int8 with its scales
// 0.266x (the goal: <= 0.28x).
TEST(KvFormats, BytesOfEachFormat) {
  EXPECT_EQ(backend_with({})->info().kv_dtype, ComputeDType::F32);
  const GPT2Config& c = tiny().config;
  const size_t fp32 = backend_with(ComputeDType::F32)->info().kv_bytes;
  for (ComputeDType kv : {ComputeDType::F32, ComputeDType::F16, ComputeDType::BF16, ComputeDType::Int8}) {
    auto b = backend_with(kv);
    EXPECT_EQ(b->info().kv_dtype, kv);
    EXPECT_EQ(b->info().kv_bytes, size_t(2) * c.n_layer * b->kv_capacity() * kv_row_bytes(kv, c.n_embd, c.n_head));
    if (kv == ComputeDType::F16 || kv == ComputeDType::BF16) {
      EXPECT_EQ(2 * b->info().kv_bytes, fp32);
    }
  }
  EXPECT_LE(double(backend_with(ComputeDType::Int8)->info().kv_bytes), 0.28 * double(fp32));
}

// The logits after each golden sequence decoded token by token (the cached path: every token
// attends over K/V read back from the rings).
std::vector<std::vector<float>> decoded_logits(Backend& b) {
  std::vector<std::vector<float>> out;
  for (const auto& seq : test::tiny_golden().sequences) {
    const KvRing ring{b.kv_capacity(), 0};
    for (size_t t = 0; t < seq.ids.size(); ++t) b.forward(&seq.ids[t], 1, int(t), ring);
    out.emplace_back(size_t(tiny().config.vocab_size));
    b.read_logits(out.back().data());
  }
  return out;
}

// Each format's last logits against fp32 K/V over every golden sequence, decoded token by token.
// Measured (2026-12-07, g++ 12 -O3, AVX2): fp16 max |d| 1.2e-3, NMSE 5.2e-8; bf16 1.2e-2,
// 4.8e-6; int8 4.2e-2, 5.3e-5. Bounds: about 4x the max error, and 16x the NMSE (4x the error,
// squared).
TEST(KvFormats, LogitsErrorAgainstFp32KvOnTheGoldens) {
  auto fp32 = backend_with(ComputeDType::F32);
  const auto want = decoded_logits(*fp32);
  struct Bound { ComputeDType kv; double max_abs, nmse; };
  for (const Bound& bound : {Bound{ComputeDType::F16, 5e-3, 8e-7}, Bound{ComputeDType::BF16, 5e-2, 8e-5},
                             Bound{ComputeDType::Int8, 1.7e-1, 8.5e-4}}) {
    auto b = backend_with(bound.kv);
    const auto got = decoded_logits(*b);
    test::LogitsError e;
    for (size_t i = 0; i < got.size(); ++i) e.add(got[i], want[i]);
    std::printf("[%s K/V vs fp32 K/V] last logits of %zu sequences: max|d| %.3g NMSE %.3g\n",
                compute_dtype_name(bound.kv), got.size(), e.max_abs, e.nmse());
    EXPECT_GT(e.max_abs, 0.0) << "the format changed nothing: is it stored at all?";
    EXPECT_LE(e.max_abs, bound.max_abs) << compute_dtype_name(bound.kv);
    EXPECT_LE(e.nmse(), bound.nmse) << compute_dtype_name(bound.kv);
  }
}

// fp16 K/V reproduces Hugging Face's greedy continuations token for token,
// with the cache and without; bf16 and int8 are reported with the cache (a measurement: on
// 2026-12-07 bf16 matched 180 of 180 tokens, int8 143 of 180, in both modes).
TEST(KvFormats, Fp16KvReproducesTheGreedyGoldens) {
  for (ComputeDType kv : {ComputeDType::F16, ComputeDType::BF16, ComputeDType::Int8}) {
    auto b = backend_with(kv);
    for (bool cache : {true, false}) {
      if (!cache && kv != ComputeDType::F16) continue;  // --no-cache is the slow part
      GenerationOptions opt;
      opt.use_cache = cache;
      opt.ignore_eos = true;
      opt.sampling.temperature = 0;
      int same = 0, total = 0;
      for (const auto& g : test::tiny_golden().greedy) {
        opt.max_new_tokens = int(g.new_tokens.size());
        const GenerationResult r = generate(*b, g.prompt, opt, nullptr);
        for (size_t i = 0; i < g.new_tokens.size(); ++i) same += r.generated.at(i) == g.new_tokens[i], ++total;
        if (kv == ComputeDType::F16) {
          EXPECT_EQ(r.generated, g.new_tokens) << (cache ? "cache" : "no-cache");
        }
      }
      std::printf("[%s K/V, %s] %d of %d greedy golden tokens identical\n", compute_dtype_name(kv),
                  cache ? "cache" : "no-cache", same, total);
    }
  }
}

}  // namespace
}  // namespace gpt2
