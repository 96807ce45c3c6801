// The CUDA backend as a whole, on the tiny golden GPT-2 (../shared/golden/tiny-gpt2, converted
// by the tiny_models fixture): against Hugging Face's float64 logits and greedy continuations,
// against itself (cache vs --no-cache over three contexts with --context-shift, the three
// decode modes), and against the CPU backend. Label `gpu`: skips where no device is usable,
// except the tests of what happens without one, which run everywhere.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include "app/backend_choice.h"
#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "cuda/cuda_variants.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "golden.h"
#include "gpu_test_util.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

using test::max_rel_error;
using test::tiny_golden;

std::unique_ptr<Backend> cuda_backend(const Model& m, ComputeDType dtype, int capacity = 0) {
  BackendOptions o;
  o.device = Device::Cuda;
  o.dtype = dtype;
  o.kv_capacity = capacity;
  return make_cuda_backend(m, o);
}

std::vector<float> logits_of(Backend& b, int V) {
  std::vector<float> v(static_cast<size_t>(V));
  b.read_logits(v.data());
  return v;
}

// max |logit - ref| / max |ref|, from the error measured on cuda-emu (2026-12-01, tiny golden,
// this file's checks): fp32 7.9e-7 (last logits) and 1.2e-6 (every position) -> 1e-5, which
// leaves room for a GPU's other fp32 summation orders and still fails an erf GELU (1.8e-4);
// fp16 1.0-1.2e-3, 1.6e-3 and 1.8e-3 along the greedy path -> 7e-3 (3.9x); bf16 (3 fewer
// fraction bits) 9.5e-3, 1.4e-2 and 1.3e-2 -> 5e-2 (3.6x).
double tolerance(ComputeDType d) { return d == ComputeDType::F32 ? 1e-5 : d == ComputeDType::F16 ? 7e-3 : 5e-2; }

struct Variant {
  std::string stored;  // the model file's dtype (tiny-<stored>)
  ComputeDType dtype;  // the backend's compute dtype
};
void PrintTo(const Variant& v, std::ostream* os) { *os << v.stored << " weights, " << compute_dtype_name(v.dtype); }
std::string variant_name(const ::testing::TestParamInfo<Variant>& info) {
  return "stored_" + info.param.stored + "_compute_" + compute_dtype_name(info.param.dtype);
}

class CudaGolden : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    GPT2_SKIP_WITHOUT_GPU();
    // bf16 before compute capability 8.0 (a T4) is refused by design (test_emu_devices checks
    // the refusal): skipped here, so that the suite passes on every GPU it builds for.
    std::string why;
    if (!cuda_dtype_supported(GetParam().dtype, &why)) GTEST_SKIP() << why;
    model_ = std::make_unique<Model>(load_model(test::tiny_model(GetParam().stored)));
    backend_ = cuda_backend(*model_, GetParam().dtype);
  }
  int V() const { return model_->config.vocab_size; }
  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;
};

TEST_P(CudaGolden, LastLogitsOfEverySequence) {
  const double err = test::expect_last_logits_match(*backend_, tolerance(GetParam().dtype));
  std::printf("[%s] last logits: max|d|/max|ref| = %.3g\n", variant_name({GetParam(), 0}).c_str(), err);
}

// Every position, recomputing each prefix (the rows path, as --no-cache does) and one token at
// a time against the cache (the decode graph) with the ring starting 3 slots before its end.
TEST_P(CudaGolden, SubsetLogitsAtEveryPositionWithAndWithoutCache) {
  const double err = test::expect_subset_logits_match(*backend_, tolerance(GetParam().dtype));
  std::printf("[%s] every position: max|d|/max|ref| = %.3g\n", variant_name({GetParam(), 0}).c_str(), err);
}

// The first of the largest values (the greedy rule on the host) and the largest |a - b|.
int argmax(const std::vector<float>& v) { return int(std::max_element(v.begin(), v.end()) - v.begin()); }
double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(double(a[i]) - b[i]));
  return d;
}

// Greedy continuations (in quick mode, the first 20 tokens of each). fp32: token for token, with
// and without the cache. Half precision, teacher-forced along the golden path (every step is
// fed the golden token, whatever the device chose the step before, so a close step does not end
// the comparison). At every step: the device's logits match the CPU fp32 backend's (which
// matches the golden to ~1e-6) within the tolerance; the device's greedy choice is the argmax of
// its own logits; and it is the golden token wherever the reference's top-2 margin exceeds twice
// the step's largest logit error (then no error that size can reorder the two). Free generation
// must agree up to the first step where that margin does not hold.
TEST_P(CudaGolden, GreedyContinuations) {
  const ComputeDType dtype = GetParam().dtype;
  auto goldens = tiny_golden().greedy;
  for (auto& g : goldens) g.new_tokens.resize(std::min(g.new_tokens.size(), size_t(test::quick_or(20, 1 << 30))));
  if (dtype == ComputeDType::F32) {
    for (bool cache : {true, false}) {
      GenerationOptions opt;
      opt.use_cache = cache;
      opt.ignore_eos = true;
      opt.sampling.temperature = 0;
      for (const auto& g : goldens) {
        opt.max_new_tokens = int(g.new_tokens.size());
        const GenerationResult r = generate(*backend_, g.prompt, opt, nullptr);
        EXPECT_EQ(r.generated, g.new_tokens) << (cache ? "cache" : "no-cache");
      }
    }
    return;
  }
  const Model ref_model = load_model(test::tiny_model("fp32"));
  auto cpu = make_cpu_backend(ref_model, BackendOptions{});
  SamplingParams greedy;
  greedy.temperature = 0;
  for (const auto& g : goldens) {
    std::vector<int> path = g.prompt;
    path.insert(path.end(), g.new_tokens.begin(), g.new_tokens.end());
    const int P = int(g.prompt.size());
    int first_close = int(g.new_tokens.size());  // first step whose margin an error could bridge
    int checked = 0;
    double worst = 0;
    for (int j = 0; j < int(g.new_tokens.size()); ++j) {
      // Context: path[0, P + j); predict path[P + j].
      const int pos = j == 0 ? 0 : P + j - 1, n = j == 0 ? P : 1;
      backend_->forward(&path[size_t(pos)], n, pos, KvRing{backend_->kv_capacity(), 0});
      cpu->forward(&path[size_t(pos)], n, pos, KvRing{cpu->kv_capacity(), 0});
      const auto ref = logits_of(*cpu, V()), dev = logits_of(*backend_, V());
      const double err = max_rel_error(dev.data(), ref.data(), ref.size());
      EXPECT_LE(err, tolerance(dtype)) << "step " << j;
      worst = std::max(worst, err);
      std::vector<float> top2 = ref;
      std::partial_sort(top2.begin(), top2.begin() + 2, top2.end(), std::greater<float>());
      const bool clear = top2[0] - top2[1] > 2 * max_abs_diff(dev, ref);
      if (!clear && j < first_close) first_close = j;
      const int got = backend_->sample(greedy, 0.0);
      EXPECT_EQ(got, argmax(dev)) << "step " << j << ": the device's choice is not its logits' argmax";
      if (clear) {
        ++checked;
        EXPECT_EQ(got, g.new_tokens[size_t(j)]) << "step " << j << " (margin " << top2[0] - top2[1] << ")";
      }
    }
    GenerationOptions opt;
    opt.ignore_eos = true;
    opt.sampling.temperature = 0;
    opt.max_new_tokens = int(g.new_tokens.size());
    const GenerationResult r = generate(*backend_, g.prompt, opt, nullptr);
    for (int j = 0; j < first_close; ++j) EXPECT_EQ(r.generated[size_t(j)], g.new_tokens[size_t(j)]) << "free step " << j;
    std::printf("[%s] greedy: %d of %zu steps had a margin over twice the error; free generation compared for %d; "
                "logits vs CPU fp32 along the path: max|d|/max|ref| = %.3g\n",
                variant_name({GetParam(), 0}).c_str(), checked, g.new_tokens.size(), first_close, worst);
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, CudaGolden,
                         ::testing::Values(Variant{"fp32", ComputeDType::F32}, Variant{"fp32", ComputeDType::F16},
                                           Variant{"fp16", ComputeDType::F16}, Variant{"bf16", ComputeDType::BF16}),
                         variant_name);

// The backend's mechanics (cache vs --no-cache, shifts, decode modes, CPU vs CUDA on the same
// weights) on the tiny model with a 2063-token vocabulary: ~10x faster on the emulator, whose
// decode step is mostly the LM head. The goldens above keep GPT-2's vocabulary.
class CudaGeneration : public ::testing::Test {
 protected:
  void SetUp() override {
    GPT2_SKIP_WITHOUT_GPU();
    model_ = std::make_unique<Model>(load_model(test::small_vocab_model()));
  }
  GenerationResult run(Backend& b, const std::vector<int>& prompt, int n, bool cache, bool shift, float temperature,
                       uint64_t seed = 7) {
    GenerationOptions opt;
    opt.max_new_tokens = n;
    opt.use_cache = cache;
    opt.context_shift = shift;
    opt.ignore_eos = true;
    opt.sampling.temperature = temperature;
    opt.seed = seed;
    return generate(b, prompt, opt, nullptr);
  }
  std::unique_ptr<Model> model_;
  const std::vector<int> prompt_ = {2061, 318, 509, 53, 1953, 30};
};

// 3x the context (n_positions 128) with --context-shift: the cache (decode graph, shifts re-run
// through the rows path into a wrapped ring) and --no-cache (the rows path over the window every
// step) give the same tokens. Quick mode (the emulator): a 48-slot ring and 70 tokens, still two
// shifts, in a seventh of the emulated work (--no-cache's steps cost the window's length).
TEST_F(CudaGeneration, ContextShiftCacheAndNoCacheAgreeOverThreeContexts) {
  auto b = cuda_backend(*model_, ComputeDType::F32, test::quick_or(48, 0));
  const int n = test::quick_or(70, 3 * model_->config.n_positions);
  const auto cached = run(*b, prompt_, n, true, true, 0.0f);
  const auto uncached = run(*b, prompt_, n, false, true, 0.0f);
  ASSERT_EQ(int(cached.generated.size()), n);
  EXPECT_GE(cached.context_shifts, 2);
  EXPECT_EQ(cached.generated, uncached.generated);
}

// A small ring (--ctx-size 40) and sampling: shifts every 20 tokens, the sampling graph.
TEST_F(CudaGeneration, SmallRingSampledCacheAndNoCacheAgree) {
  auto b = cuda_backend(*model_, ComputeDType::F32, 40);
  const int n = test::quick_or(60, 100);  // shifts every 20 tokens
  const auto cached = run(*b, prompt_, n, true, true, 0.8f, 11);
  const auto uncached = run(*b, prompt_, n, false, true, 0.8f, 11);
  EXPECT_EQ(cached.generated, uncached.generated);
  // A 40-token window keeping 20 overflows at 41 tokens and every 21 after: 41, 62 (6 + 60
  // tokens in quick mode), 83, 104 (6 + 100).
  EXPECT_EQ(cached.context_shifts, test::quick() ? 2 : 4);
  EXPECT_EQ(uncached.context_shifts, cached.context_shifts);
}

// The same seed gives the same tokens on the CPU and on the GPU (fp32), greedy and sampled
// (20 tokens in quick mode: the emulator under the sanitizers spends ~1 s per token).
TEST_F(CudaGeneration, AgreesWithTheCpuBackend) {
  auto gpu = cuda_backend(*model_, ComputeDType::F32);
  auto cpu = make_cpu_backend(*model_, BackendOptions{});
  const int n = test::quick_or(20, 40);
  for (float temperature : {0.0f, 0.8f}) {
    const auto a = run(*gpu, prompt_, n, true, false, temperature, 5);
    const auto c = run(*cpu, prompt_, n, true, false, temperature, 5);
    EXPECT_EQ(a.generated, c.generated) << "temperature " << temperature;
  }
}

// transformers' repetition_penalty and no_repeat_ngram_size (reference_processors.json), fp32,
// with and without the cache: the penalties run inside the decode graph. One test per case
// (each is 80 emulated steps on cuda-emu). In quick mode (the emulator, the sanitizers) a case
// runs one path, the cache for even cases and --no-cache for odd ones, so that every case and
// both paths are still checked in half the time.
class CudaProcessed : public ::testing::TestWithParam<int> {};

TEST_P(CudaProcessed, ReproducesTransformersProcessorContinuation) {
  GPT2_SKIP_WITHOUT_GPU();
  const Model model = load_model(test::tiny_model("fp32"));
  auto b = cuda_backend(model, ComputeDType::F32);
  ASSERT_EQ(tiny_golden().processed.size(), 12u);
  const int i = GetParam();
  for (bool cache : {true, false})
    if (!test::quick() || cache == (i % 2 == 0))
      test::expect_processed_continuation_matches(*b, tiny_golden().processed[size_t(i)], cache);
}

INSTANTIATE_TEST_SUITE_P(Cases, CudaProcessed, ::testing::Range(0, 12));

// Every logits processor at once, greedy and sampled, in a small ring (--ctx-size 40: a shift
// after 34 tokens, then every 20, after which the counts are rebuilt): the GPU with and without the cache and
// the CPU give the same tokens.
TEST_F(CudaGeneration, LogitsProcessorsAgreeWithTheCpuAcrossContextShifts) {
  auto gpu = cuda_backend(*model_, ComputeDType::F32, 40);
  BackendOptions co;
  co.kv_capacity = 40;
  auto cpu = make_cpu_backend(*model_, co);
  GenerationOptions opt;
  opt.max_new_tokens = test::quick_or(45, 70);
  opt.ignore_eos = true;
  opt.context_shift = true;
  opt.seed = 21;
  opt.sampling.min_p = 0.05f;
  PenaltyParams& p = opt.sampling.penalties;
  p.repeat_penalty = 1.2f, p.repeat_last_n = 16, p.presence_penalty = 0.3f, p.frequency_penalty = 0.2f;
  p.no_repeat_ngram_size = 3;
  for (float temperature : {0.0f, 0.9f}) {
    opt.sampling.temperature = temperature;
    opt.use_cache = true;
    const auto cached = generate(*gpu, prompt_, opt, nullptr);
    const auto on_cpu = generate(*cpu, prompt_, opt, nullptr);
    opt.use_cache = false;
    const auto uncached = generate(*gpu, prompt_, opt, nullptr);
    EXPECT_GE(cached.context_shifts, 1);
    EXPECT_EQ(cached.generated, on_cpu.generated) << "temperature " << temperature;
    EXPECT_EQ(cached.generated, uncached.generated) << "temperature " << temperature;
  }
}

// GPT2_CUDA_DECODE=graph | eager | rows: the same decode step three ways, the same tokens.
// GPT2_CUDA_VARIANTS: the eager path with pdl, with the kernel-replacing variants together
// (attn1, lmhead, pdl), and the graph with all variants at once, the same tokens again, fp16
// sampling included. (CudaVariantsAgree checks each variant alone in the graph against the CPU.)
TEST_F(CudaGeneration, DecodeModesAgree) {
  struct EnvGuard {
    ~EnvGuard() {
      unsetenv("GPT2_CUDA_DECODE");
      unsetenv("GPT2_CUDA_VARIANTS");
    }
  } guard;
  const char* modes[][2] = {{"graph", "none"}, {"eager", "none"},  {"rows", "none"},
                            {"eager", "pdl"},   {"eager", "attn1,lmhead,pdl"}, {"graph", "all"}};
  std::vector<std::vector<int>> outs;
  for (const auto& m : modes) {
    setenv("GPT2_CUDA_DECODE", m[0], 1);
    setenv("GPT2_CUDA_VARIANTS", m[1], 1);
    auto b = cuda_backend(*model_, ComputeDType::F32);
    outs.push_back(run(*b, prompt_, test::quick_or(15, 30), true, false, 0.0f).generated);
    // Sampled too (the sampling graph), with a context shift in a small ring (every 12 tokens).
    auto small = cuda_backend(*model_, ComputeDType::F16, 24);
    outs.push_back(run(*small, prompt_, test::quick_or(25, 40), true, true, 0.9f, 3).generated);
  }
  for (size_t i = 2; i < outs.size(); i += 2) {
    EXPECT_EQ(outs[0], outs[i]) << "greedy: " << modes[i / 2][0] << " variants=" << modes[i / 2][1] << " vs graph";
    if (std::string(modes[i / 2][0]) != "rows") {  // rows decodes through cuBLAS: fp16 rounding differs
      EXPECT_EQ(outs[1], outs[i + 1]) << "sampled fp16: " << modes[i / 2][0] << " variants=" << modes[i / 2][1];
    }
  }
}

// Each GPT2_CUDA_VARIANTS entry alone, and all together, in the decode graph: fp32 tokens equal
// the CPU backend's, greedy and sampled with every logits processor in a small ring that shifts
// (the processed sampling graph). Each variant's kernels are checked in every dtype, at gpt2-xl
// sizes too, by test_gpu_kernels.
class CudaVariantsAgree : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaVariantsAgree, WithTheCpuBackend) {
  GPT2_SKIP_WITHOUT_GPU();
  struct EnvGuard {
    ~EnvGuard() { unsetenv("GPT2_CUDA_VARIANTS"); }
  } guard;
  setenv("GPT2_CUDA_VARIANTS", GetParam().c_str(), 1);
  const Model model = load_model(test::small_vocab_model());
  BackendOptions co;
  co.kv_capacity = 24;
  auto cpu = make_cpu_backend(model, co);
  auto gpu = cuda_backend(model, ComputeDType::F32, 24);
  const std::vector<int> prompt = {2061, 318, 509, 53, 1953, 30};
  GenerationOptions opt;
  opt.ignore_eos = true;
  opt.context_shift = true;
  opt.seed = 5;
  for (bool sampled : {false, true}) {
    opt.max_new_tokens = sampled ? test::quick_or(25, 40) : test::quick_or(15, 30);
    opt.sampling.temperature = sampled ? 0.9f : 0.0f;
    if (sampled) {
      PenaltyParams& p = opt.sampling.penalties;
      p.repeat_penalty = 1.2f, p.repeat_last_n = 16, p.frequency_penalty = 0.2f, p.no_repeat_ngram_size = 3;
    }
    const auto on_gpu = generate(*gpu, prompt, opt, nullptr), on_cpu = generate(*cpu, prompt, opt, nullptr);
    EXPECT_EQ(on_gpu.generated, on_cpu.generated) << (sampled ? "sampled, processed" : "greedy");
    if (sampled) {
      EXPECT_GE(on_gpu.context_shifts, 1);
    }
  }
}

std::vector<std::string> variant_names() {
  std::vector<std::string> names;
  for (const CudaVariantInfo& info : cuda_variant_table()) names.push_back(info.name);
  names.push_back("all");
  return names;
}
INSTANTIATE_TEST_SUITE_P(Variants, CudaVariantsAgree, ::testing::ValuesIn(variant_names()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// GPT2_CUDA_VARIANTS=ahead, in the graph and eagerly, driven step by step beside the CPU backend
// through every turn a queued step can take: taken (each step's logits read back: the two
// slots), a token other than the one sampled (the queued step is dropped), greedy to sampled,
// sampled steps taken with the draw promised, a draw other than the one promised, another
// temperature, back to greedy, a profile in between, a rewind to the position before that other
// token followed by a jump back to the end (nothing may be queued over a position forward()
// wrote), the context window's end (nothing queued past it: its slot would wrap onto position
// 0), then a new prompt.
TEST_F(CudaGeneration, LaunchAheadFollowsTheCpuThroughEveryTurn) {
  struct EnvGuard {
    ~EnvGuard() {
      unsetenv("GPT2_CUDA_DECODE");
      unsetenv("GPT2_CUDA_VARIANTS");
    }
  } guard;
  const int cap = 24, V = model_->config.vocab_size, n_prompt = int(prompt_.size());
  const SamplingParams greedy(0.0f, 0, 1.0f), sampled(0.9f, 0, 1.0f), cooler(0.7f, 40, 0.95f);
  // Step i after the prompt: greedy, except 6-9: sampled with the draw of its position, the next
  // one's promised (at 7 a promise that step 8 breaks), and at 9 another temperature.
  struct Turn {
    SamplingParams params;
    double u;
    std::optional<double> next_u;
  };
  auto draw_at = [](int pos) { return 0.05 + 0.9 * double((pos * 37) % 17) / 17.0; };
  auto turn_at = [&](int pos) {
    const int i = pos - int(prompt_.size());
    if (i < 6 || i > 9) return Turn{greedy, 0.37, std::nullopt};
    return Turn{i == 9 ? cooler : sampled, draw_at(pos), i == 7 ? 0.99 : draw_at(pos + 1)};
  };
  for (const char* mode : {"graph", "eager"}) {
    SCOPED_TRACE(mode);
    setenv("GPT2_CUDA_DECODE", mode, 1);
    setenv("GPT2_CUDA_VARIANTS", "ahead", 1);
    auto gpu = cuda_backend(*model_, ComputeDType::F32, cap);
    BackendOptions co;
    co.kv_capacity = cap;
    auto cpu = make_cpu_backend(*model_, co);
    const KvRing ring{cap, 5};
    std::vector<int> tokens = prompt_;
    auto forward = [&](int pos, int n) {
      gpu->forward(&tokens[size_t(pos)], n, pos, ring);
      cpu->forward(&tokens[size_t(pos)], n, pos, ring);
    };
    auto sample = [&](const Turn& t, const std::string& what) {
      const int got = gpu->sample(t.params, t.u, t.next_u), want = cpu->sample(t.params, t.u);
      EXPECT_EQ(got, want) << what;
      const auto g = logits_of(*gpu, V), c = logits_of(*cpu, V);
      EXPECT_LE(max_rel_error(g.data(), c.data(), g.size()), 1e-5) << what;
      return want;
    };
    forward(0, n_prompt);
    const int forced = n_prompt + 4;  // the position that gets a token other than the sampled one
    for (int pos = n_prompt;; ++pos) {
      const int next = sample(turn_at(pos), "for position " + std::to_string(pos));
      if (pos == n_prompt + 9) gpu->profile_decode(1);
      tokens.push_back(pos == forced ? (next + 1) % V : next);
      if (pos == n_prompt + 11) {  // rewind to the position before the forced token, then jump back
        forward(forced - 1, 1);
        sample(turn_at(0), "rewound");
      }
      if (pos + 1 == cap) break;  // the window is full
      forward(pos, 1);
    }
    forward(cap - 1, 1);  // the queued step at the last position
    sample(turn_at(0), "at the window's end");
    forward(cap - 1, 1);  // again, recomputed: attends over every position, 0 included
    sample(turn_at(0), "at the window's end again");
    tokens.assign(prompt_.rbegin(), prompt_.rend());  // a new prompt
    forward(0, n_prompt);
    for (int pos = n_prompt; pos < n_prompt + 3; ++pos) {
      tokens.push_back(sample(turn_at(0), "new prompt, position " + std::to_string(pos)));
      forward(pos, 1);
    }
  }
}

// read_logits() after a decode step that was never sampled, and forward() twice in a row.
TEST_F(CudaGeneration, UnsampledStepsStillRun) {
  auto b = cuda_backend(*model_, ComputeDType::F32);
  auto cpu = make_cpu_backend(*model_, BackendOptions{});
  const int V = model_->config.vocab_size;
  const KvRing ring{b->kv_capacity(), 5};
  const KvRing cring{cpu->kv_capacity(), 5};
  b->forward(prompt_.data(), 3, 0, ring);
  cpu->forward(prompt_.data(), 3, 0, cring);
  for (int t = 3; t < 6; ++t) {
    b->forward(&prompt_[size_t(t)], 1, t, ring);
    cpu->forward(&prompt_[size_t(t)], 1, t, cring);
  }
  const auto got = logits_of(*b, V), want = logits_of(*cpu, V);
  EXPECT_LE(max_rel_error(got.data(), want.data(), got.size()), 1e-5);
}

// --profile's steps in the middle of a graph-replayed generation (eager steps behind a stream
// gate, events around every launch) leave it as it was: the same greedy tokens as without, and
// a row per decode kernel, the per-layer ones n_layer times per token. Times are not checked.
TEST_F(CudaGeneration, ProfileStepsLeaveTheGenerationAsItWas) {
  const int n = 8;
  auto plain = cuda_backend(*model_, ComputeDType::F32);
  const std::vector<int> want = run(*plain, prompt_, n, true, false, 0.0f).generated;
  auto b = cuda_backend(*model_, ComputeDType::F32);
  const KvRing ring{b->kv_capacity(), 3};
  std::vector<int> tokens = prompt_, got;
  b->forward(tokens.data(), int(tokens.size()), 0, ring);
  DecodeProfile profile;
  for (int i = 0; i < n; ++i) {
    got.push_back(b->sample(SamplingParams(0.0f, 0, 1.0f), 0.0));
    if (i == n / 2) profile = b->profile_decode(2);
    tokens.push_back(got.back());
    b->forward(&tokens.back(), 1, int(tokens.size()) - 1, ring);
  }
  EXPECT_EQ(got, want);
  const int L = model_->config.n_layer;
  const std::vector<std::pair<std::string, int>> rows = {
      {"embedding", 1}, {"ln_1+qkv+kv_append", L}, {"attention", L}, {"attn_proj", L},
      {"ln_2+fc+gelu", L}, {"fc_proj", L}, {"ln_f+lm_head", 1}, {"argmax", 1}};
  ASSERT_EQ(profile.rows.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(decode_op_name(profile.rows[i].op), rows[i].first);
    EXPECT_EQ(profile.rows[i].calls_per_token, rows[i].second) << rows[i].first;
  }
  // The step that computed got[n / 2]: got[n / 2 - 1] at position prompt + n / 2 - 1.
  EXPECT_EQ(profile.context, int(prompt_.size()) + n / 2);
  EXPECT_EQ(profile.steps, 2);
}

// Every buffer is allocated at load: a generation takes no device memory. Measured over a second,
// identical run: CUDA loads modules lazily (cuBLAS's kernels for these shapes may load in the
// first run, and modules stay loaded), so the second launches nothing new. cudaMemGetInfo
// counts the whole device and a driver may hand memory back late, so free memory may grow but
// must not shrink. On cuda-emu (whose modules also load lazily and take memory), test_emu also
// checks that no allocation call is made at all.
TEST_F(CudaGeneration, GeneratingLeavesDeviceMemoryUnchanged) {
  auto b = cuda_backend(*model_, ComputeDType::F16, 24);
  const auto both = [&] {
    EXPECT_GE(run(*b, prompt_, 30, true, true, 0.9f).context_shifts, 1);  // cache, a shift, sampling
    run(*b, prompt_, 30, false, true, 0.0f);                                 // --no-cache
  };
  both();
  size_t free0 = 0, free1 = 0, total = 0;
  CUDA_CHECK(cudaMemGetInfo(&free0, &total));
  both();
  CUDA_CHECK(cudaMemGetInfo(&free1, &total));
  EXPECT_GE(free1, free0) << "a generation took " << free0 - free1 << " bytes of device memory";
}

TEST_F(CudaGeneration, InfoReportsTheDeviceAndItsMemory) {
  auto b = cuda_backend(*model_, ComputeDType::F16);
  const BackendInfo& i = b->info();
  const GPT2Config& c = model_->config;
  EXPECT_EQ(i.device, "cuda");
  EXPECT_FALSE(i.device_name.empty());
  EXPECT_EQ(i.dtype, ComputeDType::F16);
  EXPECT_GE(i.kv_bytes, size_t(2) * c.n_layer * c.n_positions * c.n_embd * 2);
  EXPECT_LT(i.kv_bytes, size_t(2) * c.n_layer * c.n_positions * c.n_embd * 2 + size_t(2) * c.n_layer * 256);
  EXPECT_GE(i.weight_bytes, size_t(c.n_params()) * 2);
  EXPECT_GE(i.peak_device_bytes, i.weight_bytes + i.kv_bytes);
  std::printf("tiny fp16: weights %zu B, kv %zu B, activations %zu B, peak %zu B on %s\n", i.weight_bytes, i.kv_bytes,
              i.activation_bytes, i.peak_device_bytes, i.device_name.c_str());
}

TEST_F(CudaGeneration, BadInputsAreRefused) {
  auto b = cuda_backend(*model_, ComputeDType::F32);
  const int bad = model_->config.vocab_size;
  EXPECT_THROW(b->forward(&bad, 1, 0, KvRing{b->kv_capacity(), 0}), Error);
  const int ok = 5;
  EXPECT_THROW(b->forward(&ok, 1, b->kv_capacity(), KvRing{b->kv_capacity(), 0}), Error);
  EXPECT_THROW(b->forward(&ok, 1, 0, KvRing{b->kv_capacity() + 1, 0}), Error);
}

// Without a device (CI): --device cuda is a clear error and --device auto falls back with a
// note. These run on every machine; with a device, auto picks CUDA.
TEST(CudaAvailability, DeviceCudaWithoutADeviceIsAClearErrorAndAutoFallsBack) {
  const Model model = load_model(test::tiny_model("fp32"));
  std::string why;
  const bool usable = cuda_device_usable(&why);
  BackendOptions o;
  std::string note;
  if (!usable) {
    EXPECT_FALSE(why.empty());
    o.device = Device::Cuda;
    try {
      make_backend(model, o, &note);
      ADD_FAILURE() << "--device cuda without a device did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("no usable CUDA device"), std::string::npos) << e.what();
    }
    o.device = Device::Auto;
    auto b = make_backend(model, o, &note);
    EXPECT_EQ(b->info().device, "cpu");
    EXPECT_NE(note.find("running on the CPU"), std::string::npos) << note;
  } else {
    o.device = Device::Auto;
    auto b = make_backend(model, o, &note);
    EXPECT_EQ(b->info().device, "cuda");
    EXPECT_EQ(b->info().dtype, ComputeDType::F16);  // the CUDA default
  }
}

}  // namespace
}  // namespace gpt2
