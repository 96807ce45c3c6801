// The fast CPU path (src/cpu/cpu_fast.h) against the plain reference (src/cpu/cpu_ops.h), on random
// inputs of odd sizes, for every weight type. The reference sees exactly the weights the fast
// kernel reads (16-bit values widened, int8 values times their scale), so only summation order
// differs: normalized MSE sum (fast - ref)^2 / sum ref^2 <= 1e-10; an int8 (Q8) product also
// rounds its input as llama.cpp's q8_0 activations do, and the reference multiplies that
// rounded input (TestWeights::seen). Outputs are poisoned (NaN) first, so an element never
// written fails.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "base/half.h"
#include "cpu/cpu_fast.h"
#include "cpu/cpu_ops.h"
#include "cpu/row_shares.h"
#include "engine/kv_format.h"
#ifdef GPT2_TEST_HWY_TARGETS
#include <hwy/targets.h>
#endif

namespace gpt2 {
namespace {

using simd::WType;

constexpr double kTol = 1e-10;

double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, ref = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    ref += double(want[i]) * want[i];
  }
  return ref > 0 ? err / ref : err;
}

std::vector<float> random_vector(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<float> poisoned(size_t n) { return std::vector<float>(n, NAN); }

// A weight matrix held in one WType, and the fp32 values the reference multiplies by.
struct TestWeights {
  std::vector<uint16_t> halves;
  std::vector<int8_t> q;
  std::vector<float> f32, scales, exact;
  simd::WeightView view;

  TestWeights(WType type, int rows, int cols, std::mt19937& rng) {
    const std::vector<float> w = random_vector(size_t(rows) * cols, rng, 0.1f);
    view.type = type;
    view.rows = rows;
    view.cols = cols;
    exact.resize(w.size());
    if (type == WType::F32) {
      f32 = exact = w;
      view.data = f32.data();
    } else if (type == WType::Q8) {
      q.resize(w.size());
      scales.resize(size_t(rows) * simd::q8_blocks(cols));
      fast::quantize_q8(w.data(), rows, cols, q.data(), scales.data());
      for (size_t i = 0; i < w.size(); ++i)
        exact[i] = float(q[i]) * scales[(i / cols) * simd::q8_blocks(cols) + (i % cols) / simd::kQ8Block];
      view.data = q.data();
      view.scales = scales.data();
    } else {
      halves.resize(w.size());
      for (size_t i = 0; i < w.size(); ++i) {
        halves[i] = type == WType::F16 ? float_to_fp16(w[i]) : float_to_bf16(w[i]);
        exact[i] = type == WType::F16 ? fp16_to_float(halves[i]) : bf16_to_float(halves[i]);
      }
      view.data = halves.data();
    }
  }

  // What the weights multiply: x itself, or for Q8 each row of cols values rounded as a Q8
  // product rounds its input (llama.cpp's q8_0 activations), written out here independently of
  // the code under test: per block of 32, scale = max |x| / 127, q = round-half-even(x / scale).
  std::vector<float> seen(std::vector<float> x) const {
    if (view.type != WType::Q8) return x;
    const int cols = view.cols;
    for (size_t r0 = 0; r0 < x.size(); r0 += size_t(cols))
      for (int b0 = 0; b0 < cols; b0 += 32) {
        float* v = x.data() + r0 + b0;
        const int n = std::min(32, cols - b0);
        float amax = 0.0f;
        for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(v[i]));
        const float s = amax / 127.0f;
        for (int i = 0; i < n; ++i) v[i] = s > 0.0f ? std::nearbyint(v[i] / s) * s : 0.0f;
      }
    return x;
  }
};

class FastByType : public ::testing::TestWithParam<WType> {
 protected:
  std::mt19937 rng{1234};
};

// (rows, cols): single elements, vector remainders, a partial int8 block, GPT-2's widths.
const std::vector<std::pair<int, int>> kShapes = {{1, 1}, {5, 7}, {3, 33}, {67, 131}, {130, 768}, {9, 3072}};

TEST_P(FastByType, GemvWithEachEpilogue) {
  for (auto [rows, cols] : kShapes) {
    const TestWeights w(GetParam(), rows, cols, rng);
    const auto x = random_vector(size_t(cols), rng), bias = random_vector(size_t(rows), rng);
    std::vector<float> want(static_cast<size_t>(rows));
    cpu::matmul(want.data(), w.seen(x).data(), w.exact.data(), bias.data(), 1, cols, rows);

    auto got = poisoned(size_t(rows));
    fast::gemv(got.data(), x.data(), w.view, bias.data(), fast::Epilogue::Store);
    EXPECT_LE(nmse(got, want), kTol) << "store " << rows << "x" << cols;

    auto gelu_want = want;
    cpu::gelu_new(gelu_want.data(), rows);
    got = poisoned(size_t(rows));
    fast::gemv(got.data(), x.data(), w.view, bias.data(), fast::Epilogue::Gelu);
    EXPECT_LE(nmse(got, gelu_want), kTol) << "gelu " << rows << "x" << cols;

    const auto residual = random_vector(size_t(rows), rng);
    auto add_want = residual;
    cpu::residual_add(add_want.data(), want.data(), rows);
    got = residual;
    fast::gemv(got.data(), x.data(), w.view, bias.data(), fast::Epilogue::AddTo);
    EXPECT_LE(nmse(got, add_want), kTol) << "add " << rows << "x" << cols;
  }
}

TEST_P(FastByType, GemvArgmaxIsTheLmHeadAndTheGreedyToken) {
  for (auto [rows, cols] : kShapes) {
    TestWeights w(GetParam(), rows, cols, rng);
    const auto x = random_vector(size_t(cols), rng);
    std::vector<float> want(static_cast<size_t>(rows));
    cpu::matmul(want.data(), w.seen(x).data(), w.exact.data(), nullptr, 1, cols, rows);
    auto got = poisoned(size_t(rows));
    const int id = fast::gemv_argmax(got.data(), x.data(), w.view);
    EXPECT_LE(nmse(got, want), kTol) << rows << "x" << cols;
    int first_max = 0;
    for (int r = 1; r < rows; ++r)
      if (got[size_t(r)] > got[size_t(first_max)]) first_max = r;
    EXPECT_EQ(id, first_max) << rows << "x" << cols;
  }
}

TEST_P(FastByType, GemvArgmaxBreaksTiesTowardsTheLowestId) {
  // Rows 40 and 70 (different threads' shares) are copies of row 100, the largest logit.
  TestWeights w(GetParam(), 129, 65, rng);
  const auto x = random_vector(65, rng);
  std::vector<float> logits(129);
  fast::gemv_argmax(logits.data(), x.data(), w.view);
  int top = 0;
  for (int r = 1; r < 129; ++r)
    if (logits[size_t(r)] > logits[size_t(top)]) top = r;
  const size_t row_bytes = w.view.type == WType::F32 ? 4 : w.view.type == WType::Q8 ? 1 : 2;
  char* data = static_cast<char*>(const_cast<void*>(w.view.data));
  const int nb = simd::q8_blocks(65);
  for (int dup : {70, 40}) {
    std::memcpy(data + dup * 65 * row_bytes, data + top * 65 * row_bytes, 65 * row_bytes);
    if (w.view.type == WType::Q8) std::copy_n(w.scales.begin() + top * nb, nb, w.scales.begin() + dup * nb);
  }
  EXPECT_EQ(fast::gemv_argmax(logits.data(), x.data(), w.view), std::min(top, 40));
}

// out per epilogue from y = the product + bias (y from the reference): Store, Gelu, AddTo.
std::vector<float> with_epilogue(std::vector<float> y, fast::Epilogue e, const std::vector<float>& residual) {
  if (e == fast::Epilogue::Gelu) cpu::gelu_new(y.data(), long(y.size()));
  if (e == fast::Epilogue::AddTo) cpu::residual_add(y.data(), residual.data(), long(y.size()));
  return y;
}
const fast::Epilogue kEpilogues[] = {fast::Epilogue::Store, fast::Epilogue::Gelu, fast::Epilogue::AddTo};

TEST_P(FastByType, MatmulRowsWithEachEpilogue) {
  for (auto [rows, cols] : kShapes) {
    const TestWeights w(GetParam(), rows, cols, rng);
    for (int T : {1, 2, 5, 33}) {
      const auto x = random_vector(size_t(T) * cols, rng), bias = random_vector(size_t(rows), rng);
      std::vector<float> y(size_t(T) * rows), scratch(fast::matmul_scratch_floats(w.view, T));
      cpu::matmul(y.data(), w.seen(x).data(), w.exact.data(), bias.data(), T, cols, rows);
      for (fast::Epilogue e : kEpilogues) {
        const auto residual = random_vector(y.size(), rng);
        auto got = e == fast::Epilogue::AddTo ? residual : poisoned(y.size());
        fast::matmul(got.data(), x.data(), w.view, bias.data(), T, e, scratch.data());
        EXPECT_LE(nmse(got, with_epilogue(y, e, residual)), kTol) << int(e) << " T=" << T << " " << rows << "x" << cols;
      }
    }
  }
}

// A LayerNorm's random parameters, and x normalised by the reference.
struct TestNorm {
  std::vector<float> weight, bias;
  fast::LayerNormParams params() const { return {weight.data(), bias.data(), 1e-5f}; }
  std::vector<float> apply(const std::vector<float>& x, int T, int C) const {
    std::vector<float> out(x.size());
    cpu::layernorm(out.data(), x.data(), weight.data(), bias.data(), T, C, 1e-5f);
    return out;
  }
};
TestNorm random_norm(int C, std::mt19937& rng) {
  auto w = random_vector(size_t(C), rng, 0.2f);
  for (float& v : w) v += 1.0f;
  return {w, random_vector(size_t(C), rng, 0.1f)};
}

TEST_P(FastByType, LayerNormFusedIntoGemvWithEachEpilogue) {
  for (auto [rows, cols] : kShapes) {
    if (cols == 1) continue;  // a LayerNorm of one element is its bias
    const TestWeights w(GetParam(), rows, cols, rng);
    const TestNorm norm = random_norm(cols, rng);
    const auto x = random_vector(size_t(cols), rng, 2.0f), bias = random_vector(size_t(rows), rng);
    std::vector<float> y(static_cast<size_t>(rows)), ln(static_cast<size_t>(cols));
    cpu::matmul(y.data(), w.seen(norm.apply(x, 1, cols)).data(), w.exact.data(), bias.data(), 1, cols, rows);
    for (fast::Epilogue e : kEpilogues) {
      const auto residual = random_vector(y.size(), rng);
      auto got = e == fast::Epilogue::AddTo ? residual : poisoned(y.size());
      fast::layernorm_gemv(got.data(), ln.data(), x.data(), norm.params(), w.view, bias.data(), e);
      EXPECT_LE(nmse(got, with_epilogue(y, e, residual)), kTol) << int(e) << " " << rows << "x" << cols;
    }
  }
}

TEST_P(FastByType, LayerNormFusedIntoTheLmHeadAndArgmax) {
  for (auto [rows, cols] : kShapes) {
    if (cols == 1) continue;
    const TestWeights w(GetParam(), rows, cols, rng);
    const TestNorm norm = random_norm(cols, rng);
    const auto x = random_vector(size_t(cols), rng, 2.0f);
    std::vector<float> want(static_cast<size_t>(rows)), ln(static_cast<size_t>(cols));
    cpu::matmul(want.data(), w.seen(norm.apply(x, 1, cols)).data(), w.exact.data(), nullptr, 1, cols, rows);
    auto got = poisoned(size_t(rows));
    const int id = fast::layernorm_gemv_argmax(got.data(), ln.data(), x.data(), norm.params(), w.view);
    EXPECT_LE(nmse(got, want), kTol) << rows << "x" << cols;
    EXPECT_EQ(id, int(std::max_element(got.begin(), got.end()) - got.begin())) << rows << "x" << cols;
  }
}

// Batch invariance (--parallel): every row of a batched product is bitwise the one-row
// product of that row alone, for any B (inputs in groups of 4 and of 16 and their remainders),
// and all of them match the reference.
TEST_P(FastByType, BatchRowsAreBitwiseTheOneRowResults) {
  for (auto [rows, cols] : kShapes) {
    if (cols == 1) continue;  // a LayerNorm of one element is its bias
    const TestWeights w(GetParam(), rows, cols, rng);
    const TestNorm norm = random_norm(cols, rng);
    const auto bias = random_vector(size_t(rows), rng);
    for (int B : {2, 3, 5, 16, 21}) {
      const auto x = random_vector(size_t(B) * cols, rng, 2.0f);
      std::vector<float> ln(size_t(B) * cols), one_ln(static_cast<size_t>(cols)), want(size_t(B) * rows);
      cpu::matmul(want.data(), w.seen(norm.apply(x, B, cols)).data(), w.exact.data(), bias.data(), B, cols, rows);
      for (fast::Epilogue e : kEpilogues) {
        const auto residual = random_vector(size_t(B) * rows, rng);
        auto got = e == fast::Epilogue::AddTo ? residual : poisoned(residual.size());
        fast::layernorm_gemv_batch(got.data(), ln.data(), x.data(), B, norm.params(), w.view, bias.data(), e);
        EXPECT_LE(nmse(got, with_epilogue(want, e, residual)), kTol) << int(e) << " B=" << B << " " << rows << "x" << cols;
        for (int b = 0; b < B; ++b) {
          std::vector<float> one(residual.begin() + long(b) * rows, residual.begin() + long(b + 1) * rows);
          fast::layernorm_gemv(one.data(), one_ln.data(), x.data() + long(b) * cols, norm.params(), w.view, bias.data(), e);
          ASSERT_EQ(0, std::memcmp(one.data(), got.data() + long(b) * rows, one.size() * sizeof(float)))
              << "row " << b << " of B=" << B << ", epilogue " << int(e) << ", " << rows << "x" << cols;
        }
      }
      auto logits = poisoned(size_t(B) * rows);
      std::vector<int> ids(size_t(B), -1);
      fast::layernorm_gemv_argmax_batch(logits.data(), ln.data(), x.data(), B, norm.params(), w.view, ids.data());
      for (int b = 0; b < B; ++b) {
        std::vector<float> one(static_cast<size_t>(rows));
        const int id = fast::layernorm_gemv_argmax(one.data(), one_ln.data(), x.data() + long(b) * cols, norm.params(), w.view);
        EXPECT_EQ(id, ids[size_t(b)]) << "row " << b << " of B=" << B;
        ASSERT_EQ(0, std::memcmp(one.data(), logits.data() + long(b) * rows, one.size() * sizeof(float)))
            << "LM head row " << b << " of B=" << B << ", " << rows << "x" << cols;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, FastByType, ::testing::Values(WType::F32, WType::F16, WType::BF16, WType::Q8),
                         [](const auto& info) { return std::string(simd::wtype_name(info.param)); });

TEST(FastQuantize, EachWeightWithinHalfAStepOfItsBlockScale) {
  std::mt19937 rng(5);
  const int rows = 7, cols = 75;  // two whole blocks and a partial one per row
  auto w = random_vector(size_t(rows) * cols, rng);
  w[3] = 0.0f;
  std::fill(w.begin() + 2 * cols, w.begin() + 2 * cols + 32, 0.0f);  // an all-zero block
  std::vector<int8_t> q(w.size());
  std::vector<float> scales(size_t(rows) * simd::q8_blocks(cols));
  fast::quantize_q8(w.data(), rows, cols, q.data(), scales.data());
  EXPECT_EQ(scales[2 * 3], 0.0f);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < cols; ++i) {
      const float s = scales[size_t(r) * 3 + i / 32], v = w[size_t(r) * cols + i];
      EXPECT_LE(std::fabs(float(q[size_t(r) * cols + i]) * s - v), 0.5f * s + 1e-7f) << r << "," << i;
    }
}

// The input rounding of Q8 products: the SIMD code gives the rule's q and scales bit for bit
// (whole blocks in vectors, the rest in scalar code), ties rounding to even.
TEST(FastQuantize, InputsRoundByTheWeightsRuleBitForBit) {
  std::mt19937 rng(8);
  for (int n : {1, 31, 32, 33, 75, 768, 3072 + 5}) {
    auto x = random_vector(size_t(n), rng, 3.0f);
    if (n >= 64) {
      std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero block
      x[0] = 127.0f, x[1] = 0.5f, x[2] = -1.5f, x[3] = 2.5f;  // scale 1: ties go to the even neighbour
    }
    if (n >= 96) {  // block 2 at half steps of its scale, where x / s and x * (1 / s) can round apart
      const float s = 2.9f / 127.0f;  // (j + 0.5) s rounds apart that way for j = 5, 12, 13, 15, 17, ...
      x[64] = 2.9f;
      for (int j = 1; j < 32; ++j) x[size_t(64 + j)] = (float(j) + 0.5f) * s * (j % 2 ? 1.0f : -1.0f);
    }
    std::vector<int8_t> q(static_cast<size_t>(n));
    std::vector<float> scales(static_cast<size_t>(simd::q8_blocks(n)));
    simd::quantize_q8_row(x.data(), n, q.data(), scales.data());
    for (int i = 0; i < n; ++i) {
      const int b = i / 32;
      float amax = 0.0f;
      for (int j = b * 32; j < std::min(n, b * 32 + 32); ++j) amax = std::max(amax, std::fabs(x[size_t(j)]));
      const float s = amax / 127.0f;
      ASSERT_EQ(scales[size_t(b)], s) << n << " block " << b;
      ASSERT_EQ(int(q[size_t(i)]), s > 0.0f ? int(std::nearbyint(x[size_t(i)] / s)) : 0) << n << " at " << i;
    }
    if (n >= 64) {
      EXPECT_EQ(std::vector<int>(q.begin(), q.begin() + 4), (std::vector<int>{127, 0, -2, 2}));
    }
  }
}

// What rounding the input costs an int8 product, against the same int8 weights times the
// unrounded input, on GPT-2's widths with inputs shaped like its activations (normal, a few
// large outliers per row). Measured at these seeds: NMSE 5.1e-5 (768) and 8.7e-5 (3072); the
// bound is 4x the larger. The weights' own rounding is measured against the goldens elsewhere.
TEST(FastQuantize, InputRoundingErrorOfAnInt8ProductIsBounded) {
  std::mt19937 rng(9);
  for (int cols : {768, 3072}) {
    const TestWeights w(WType::Q8, 256, cols, rng);
    auto x = random_vector(size_t(cols), rng);
    for (int i = 0; i < cols; i += 97) x[size_t(i)] *= 8.0f;
    std::vector<float> want(256), got(256);
    cpu::matmul(want.data(), x.data(), w.exact.data(), nullptr, 1, cols, 256);
    fast::gemv(got.data(), x.data(), w.view, nullptr, fast::Epilogue::Store);
    const double e = nmse(got, want);
    EXPECT_LE(e, 3.5e-4) << cols;
    EXPECT_GT(e, 1e-9) << cols << ": the input was not rounded";
  }
}

#ifdef GPT2_TEST_HWY_TARGETS
// Below AVX2 a Q8 product sums each block in scalar code: with the dispatcher held to the
// targets below AVX2, the same products match the reference too.
TEST(FastQuantize, Int8ProductsBelowAvx2MatchTheReference) {
  hwy::SetSupportedTargetsForTest(HWY_SSE4 | HWY_SSSE3 | HWY_EMU128 | HWY_SCALAR);
  const std::string target = simd::target_name();
  std::mt19937 rng(10);
  for (auto [rows, cols] : std::vector<std::pair<int, int>>{{5, 7}, {67, 131}, {130, 768}}) {
    const TestWeights w(WType::Q8, rows, cols, rng);
    const auto x = random_vector(size_t(cols), rng);
    std::vector<float> want(static_cast<size_t>(rows));
    cpu::matmul(want.data(), w.seen(x).data(), w.exact.data(), nullptr, 1, cols, rows);
    auto got = poisoned(static_cast<size_t>(rows));
    fast::gemv(got.data(), x.data(), w.view, nullptr, fast::Epilogue::Store);
    EXPECT_LE(nmse(got, want), kTol) << target << " " << rows << "x" << cols;
  }
  hwy::SetSupportedTargetsForTest(0);
  EXPECT_NE(target, simd::target_name()) << "the mock did not change the target";
}
#endif

// RowShares (cpu/row_shares.h), which shares a product's rows among its threads: a thread takes
// its own run of chunks front to back, then the back chunk of the run with the most left (the
// lowest run on a tie); every chunk is taken once.
TEST(FastRowShares, AThreadTakesItsOwnRunInOrderThenTheBackOfTheFullest) {
  fast::RowShares shares(100, 8, 3);  // chunks 0-12 (the last rows 96-99): runs 0-3, 4-7, 8-12
  std::vector<int> got;
  int r0 = 0, r1 = 0;
  while (shares.take(0, &r0, &r1)) {
    EXPECT_EQ(r1, std::min(100, r0 + 8));
    got.push_back(r0 / 8);
  }
  EXPECT_EQ(got, (std::vector<int>{0, 1, 2, 3, 12, 7, 11, 6, 10, 5, 9, 4, 8}));
  EXPECT_FALSE(shares.take(1, &r0, &r1));
  EXPECT_FALSE(shares.take(7, &r0, &r1));  // a thread beyond the runs
}

// Teams smaller and larger than the runs, one thread starting late so that the others take its
// run: each row of an odd count is taken exactly once.
TEST(FastRowShares, EveryRowIsTakenOnceWhateverTheTeam) {
  for (int runs : {1, 2, 4})
    for (int team : {1, 2, 3, 5}) {
      const int rows = 1003;
      fast::RowShares shares(rows, 32, runs);
      std::vector<std::atomic<int>> taken(rows);
#pragma omp parallel num_threads(team)
      {
        const int self = omp_get_thread_num();
        if (self == 0) {
          volatile double sink = 0;
          for (int i = 0; i < 200000; ++i) sink = sink + 1.0;
        }
        int r0 = 0, r1 = 0;
        while (shares.take(self, &r0, &r1))
          for (int r = r0; r < r1; ++r) taken[size_t(r)].fetch_add(1);
      }
      for (int r = 0; r < rows; ++r)
        ASSERT_EQ(taken[size_t(r)].load(), 1) << "row " << r << ", runs " << runs << ", team " << team;
    }
}

// The start-up probe: over matrices at least twice the given cache it times every candidate
// distance and keeps one of them in force; below that it leaves the default alone. (Which one it
// picks depends on the machine and is not tested.)
TEST(FastPrefetch, TheProbeChoosesACandidateOnlyWhenTheWeightsMustStream) {
  std::vector<uint16_t> halves(size_t(2048) * 2048, 0);  // 8 MB of fp16 zeros, five times
  const simd::WeightView m{WType::F16, halves.data(), nullptr, 2048, 2048};
  const std::vector<simd::WeightView> model(5, m);
  const fast::PrefetchTuning small = fast::tune_prefetch(model, size_t(64) << 20);  // 40 MB < 2 x 64 MB
  EXPECT_FALSE(small.probed);
  EXPECT_EQ(small.bytes, simd::kDefaultPrefetchBytes);
  EXPECT_EQ(small.probe_ms, 0.0);
  const fast::PrefetchTuning big = fast::tune_prefetch(model, size_t(1) << 20);
  EXPECT_TRUE(big.probed);
  EXPECT_GT(big.probe_ms, 0.0);
  EXPECT_TRUE(big.bytes == 2048 || big.bytes == 4096 || big.bytes == 8192 || big.bytes == 16384) << big.bytes;
  EXPECT_EQ(simd::prefetch_distance(), big.bytes);
  simd::set_prefetch_distance(simd::kDefaultPrefetchBytes);
}

TEST(FastOps, LayerNormRowsMatchTheReference) {
  std::mt19937 rng(6);
  for (auto [T, C] : std::vector<std::pair<int, int>>{{1, 7}, {5, 33}, {33, 768}}) {
    const TestNorm norm = random_norm(C, rng);
    const auto x = random_vector(size_t(T) * C, rng, 2.0f);
    auto got = poisoned(x.size());
    fast::layernorm(got.data(), x.data(), norm.params(), T, C);
    EXPECT_LE(nmse(got, norm.apply(x, T, C)), kTol) << T << "x" << C;
  }
}

TEST(FastOps, SimdGeluMatchesTheReference) {
  std::mt19937 rng(7);
  for (long n : {1L, 17L, 1000L, 3072L * 5 + 3}) {
    auto x = random_vector(size_t(n), rng, 3.0f), want = x;
    cpu::gelu_new(want.data(), n);
    simd::gelu(x.data(), n);
    EXPECT_LE(nmse(x, want), kTol) << n;
  }
}

// Attention's inputs: qkv (T, 3C) of the new tokens, whose K/V kv_append() writes into rings of
// `capacity` slots in the K/V format `kv` that already hold random keys and values for the
// earlier positions. The reference (cpu_ops) decodes the same stored rows to fp32, so only the
// summation order differs from the fast path, in every format. The default head size has no
// whole SIMD vector of AVX2 or AVX-512 (the loops' remainders); GPT-2's 64 has its own loops.
template <int NH = 3, int HD = 20>
struct AttentionCaseOf {
  static constexpr int n_head = NH, head_dim = HD, C = n_head * head_dim;
  int T, pos, capacity, start;
  ComputeDType kv;
  size_t row_bytes;
  std::vector<float> qkv;
  std::vector<uint8_t> k, v;

  AttentionCaseOf(int T_, int pos_, int capacity_, int start_, ComputeDType kv_, std::mt19937& rng)
      : T(T_), pos(pos_), capacity(capacity_), start(start_), kv(kv_), row_bytes(kv_row_bytes(kv_, C, n_head)) {
    qkv = random_vector(size_t(T) * 3 * C, rng);
    k = random_ring(rng);
    v = random_ring(rng);
    cpu::kv_append(k.data(), v.data(), qkv.data(), T, pos, ring(), C, n_head, kv);
  }
  std::vector<uint8_t> random_ring(std::mt19937& rng) const {
    std::vector<uint8_t> r(size_t(capacity) * row_bytes);
    for (int s = 0; s < capacity; ++s)
      cpu::kv_encode_row(r.data() + size_t(s) * row_bytes, random_vector(C, rng).data(), kv, C, n_head);
    return r;
  }
  KvRing ring() const { return KvRing{capacity, start}; }
  std::vector<float> reference() const {
    std::vector<float> out(size_t(T) * C);
    cpu::attention(out.data(), qkv.data(), k.data(), v.data(), T, pos, ring(), n_head, head_dim, kv);
    return out;
  }
  // fast::attention of queries [t0, T) alone, as a call at position pos + t0 would see them.
  std::vector<float> fast(int t0 = 0) const {
    const long stride = fast::attention_scratch_floats(head_dim);
    std::vector<float> scratch(size_t(omp_get_max_threads()) * stride);
    std::vector<float> partials(size_t(fast::attention_partial_floats(1, capacity, n_head, head_dim)));
    auto out = poisoned(size_t(T - t0) * C);
    fast::attention(out.data(), qkv.data() + size_t(t0) * 3 * C, k.data(), v.data(), T - t0, pos + t0, ring(), n_head,
                    head_dim, kv, scratch.data(), stride, partials.data());
    return out;
  }
};

using AttentionCase = AttentionCaseOf<>;

class FastAttention : public ::testing::TestWithParam<ComputeDType> {};

TEST_P(FastAttention, MatchesTheReferenceThroughAWrappingRing) {
  std::mt19937 rng(9);
  // (T, pos) in a 150-slot ring whose start (121) makes the slots wrap: decode steps (the
  // first position, the last), prompts shorter than, equal to and just over a query tile (16),
  // and over several key tiles (64), at position 0 and later (the rows path after a shift).
  const std::vector<std::pair<int, int>> cases = {{1, 0},   {1, 149}, {1, 64},  {7, 0},   {16, 0},   {17, 0},
                                                  {33, 64}, {45, 100}, {100, 30}, {129, 0}, {150, 0}, {13, 20}};
  for (auto [T, pos] : cases) {
    const AttentionCase c(T, pos, 150, 121, GetParam(), rng);
    EXPECT_LE(nmse(c.fast(), c.reference()), kTol) << "T=" << T << " pos=" << pos;
  }
}

// GPT-2's head size (64, its own unrolled loops) with five heads, read together by the decode
// step (its key tiles shared among the threads, or at position < 64 its heads): decode steps and
// prompts, through a wrapping ring.
TEST_P(FastAttention, HeadsOfSixtyFourMatchTheReference) {
  std::mt19937 rng(12);
  for (auto [T, pos] : std::vector<std::pair<int, int>>{{1, 0}, {1, 99}, {1, 70}, {3, 61}, {37, 40}, {100, 0}}) {
    const AttentionCaseOf<5, 64> c(T, pos, 100, 77, GetParam(), rng);
    EXPECT_LE(nmse(c.fast(), c.reference()), kTol) << "T=" << T << " pos=" << pos;
  }
}

// A token's attention output is the same, bit for bit, whether it is computed among T rows
// (prefill, --no-cache) or alone (a decode step, which reads several heads at once), whatever
// tiles the rows fall in.
template <class Case>
void expect_tokens_independent_of_their_rows(ComputeDType kv, std::mt19937& rng) {
  const Case c(100, 30, 150, 121, kv, rng);
  const std::vector<float> all = c.fast();
  for (int t : {0, 15, 16, 17, 63, 64, 99}) {
    const std::vector<float> alone = c.fast(t);  // queries t.. at position pos + t
    const auto row = [&](const std::vector<float>& v, int r) {
      return std::vector<float>(v.begin() + long(r) * c.C, v.begin() + long(r + 1) * c.C);
    };
    EXPECT_EQ(row(alone, 0), row(all, t)) << "token " << t << ", head size " << c.head_dim;
    EXPECT_EQ(row(alone, 99 - t), row(all, 99)) << "last token, from " << t << ", head size " << c.head_dim;
  }
}

TEST_P(FastAttention, OutputOfATokenDoesNotDependOnTheRowsAroundIt) {
  std::mt19937 rng(10);
  expect_tokens_independent_of_their_rows<AttentionCase>(GetParam(), rng);
  expect_tokens_independent_of_their_rows<AttentionCaseOf<5, 64>>(GetParam(), rng);
}

// attention_rows() over more rows than it keeps partials for at once (64: it takes them in
// passes), here the 70 rows of one prompt in a wrapping ring (prefill_batch's rows of one
// chunk): each row bitwise as the rows path computes it among all 70.
TEST_P(FastAttention, RowsInSeveralPassesAreBitwiseTheRowsPath) {
  std::mt19937 rng(13);
  const AttentionCase c(70, 30, 150, 121, GetParam(), rng);
  std::vector<fast::AttentionRow> rows;
  for (int t = 0; t < c.T; ++t) rows.push_back({c.k.data(), c.v.data(), c.pos + t, c.ring(), {}});
  const long stride = fast::attention_scratch_floats(c.head_dim);
  std::vector<float> scratch(size_t(omp_get_max_threads()) * stride), got = poisoned(size_t(c.T) * c.C);
  std::vector<float> partials(size_t(fast::attention_partial_floats(c.T, c.capacity, c.n_head, c.head_dim)));
  fast::attention_rows(got.data(), c.qkv.data(), c.T, rows.data(), c.n_head, c.head_dim, c.kv, scratch.data(), stride,
                       partials.data());
  EXPECT_EQ(got, c.fast());
}

// attention_rows (decode_batch, beams): row b is sequence b's decode step; sequence 1's first
// positions live in sequence 0's ring (a beam history table, KvHistory). The reference sees each
// sequence's history gathered into a ring of its own.
TEST_P(FastAttention, RowsOfSeveralSequencesMatchTheReference) {
  std::mt19937 rng(11);
  const ComputeDType kv = GetParam();
  const int capacity = 77, n_seqs = 3, C = AttentionCase::C, nh = AttentionCase::n_head, hd = AttentionCase::head_dim;
  const KvRing ring{capacity, 30};
  const AttentionCase seq[n_seqs] = {{1, 70, capacity, 30, kv, rng}, {1, 76, capacity, 30, kv, rng},
                                     {1, 5, capacity, 30, kv, rng}};
  const size_t ring_bytes = size_t(capacity) * seq[0].row_bytes;
  std::vector<uint8_t> k(n_seqs * ring_bytes), v(k.size());  // the sequences' rings, one after another
  std::vector<float> qkv;
  for (int b = 0; b < n_seqs; ++b) {
    std::copy(seq[b].k.begin(), seq[b].k.end(), k.begin() + long(b * ring_bytes));
    std::copy(seq[b].v.begin(), seq[b].v.end(), v.begin() + long(b * ring_bytes));
    qkv.insert(qkv.end(), seq[b].qkv.begin(), seq[b].qkv.end());
  }
  std::vector<int> owner(capacity, 1);
  std::fill_n(owner.begin(), 40, 0);  // sequence 1's positions 0..39 are sequence 0's
  std::vector<fast::AttentionRow> rows;
  for (int b = 0; b < n_seqs; ++b) {
    fast::KvHistory h;
    if (b == 1) h = {owner.data(), 1, long(ring_bytes)};
    rows.push_back({k.data() + b * ring_bytes, v.data() + b * ring_bytes, seq[b].pos, ring, h});
  }
  const long stride = fast::attention_scratch_floats(AttentionCase::head_dim);
  std::vector<float> scratch(size_t(omp_get_max_threads()) * stride), got = poisoned(size_t(n_seqs) * C);
  std::vector<float> partials(size_t(fast::attention_partial_floats(n_seqs, capacity, nh, hd)));
  fast::attention_rows(got.data(), qkv.data(), n_seqs, rows.data(), nh, hd, kv, scratch.data(), stride,
                       partials.data());

  std::vector<float> want(size_t(n_seqs) * C);
  for (int b = 0; b < n_seqs; ++b) {
    std::vector<uint8_t> hk = seq[b].k, hv = seq[b].v;  // sequence b's history, gathered
    for (int p = 0; b == 1 && p < 40; ++p) {
      const size_t at = size_t(ring.slot(p)) * seq[b].row_bytes;
      std::copy_n(seq[0].k.begin() + long(at), seq[b].row_bytes, hk.begin() + long(at));
      std::copy_n(seq[0].v.begin() + long(at), seq[b].row_bytes, hv.begin() + long(at));
    }
    cpu::attention(want.data() + b * C, seq[b].qkv.data(), hk.data(), hv.data(), 1, seq[b].pos, ring, nh, hd, kv);
  }
  EXPECT_LE(nmse(got, want), kTol);
}

INSTANTIATE_TEST_SUITE_P(KvFormats, FastAttention,
                         ::testing::Values(ComputeDType::F32, ComputeDType::F16, ComputeDType::BF16,
                                           ComputeDType::Int8),
                         [](const auto& info) { return std::string(compute_dtype_name(info.param)); });

// The int8 rows of kv_format.h as cpu_ops writes them: per head, scale = max |x| / 127 at the
// header's offset, and every value within half a step of its input; 16-bit rows within their
// rounding. An odd n_embd (5 heads of 7) leaves the scales unaligned.
TEST(KvRows, EncodeThenDecodeStaysWithinEachFormatsRounding) {
  std::mt19937 rng(12);
  const int nh = 5, hs = 7, C = nh * hs;
  const std::vector<float> x = random_vector(C, rng, 3.0f);
  for (ComputeDType kv : {ComputeDType::F32, ComputeDType::F16, ComputeDType::BF16, ComputeDType::Int8}) {
    std::vector<uint8_t> row(kv_row_bytes(kv, C, nh));
    std::vector<float> back(C);
    cpu::kv_encode_row(row.data(), x.data(), kv, C, nh);
    cpu::kv_decode_row(back.data(), row.data(), kv, C, nh);
    for (int h = 0; h < nh; ++h) {
      float amax = 0;
      for (int i = 0; i < hs; ++i) amax = std::max(amax, std::fabs(x[h * hs + i]));
      float scale = 0;
      std::memcpy(&scale, row.data() + kv_q8_scale_offset(C, h), sizeof scale);
      if (kv == ComputeDType::Int8) {
        EXPECT_FLOAT_EQ(scale, amax / 127.0f) << "head " << h;
      }
      for (int i = 0; i < hs; ++i) {
        const float a = x[h * hs + i], bound = kv == ComputeDType::Int8   ? 0.5f * scale * 1.0001f
                                               : kv == ComputeDType::F16  ? std::fabs(a) / 2048
                                               : kv == ComputeDType::BF16 ? std::fabs(a) / 256
                                                                          : 0.0f;
        EXPECT_LE(std::fabs(back[h * hs + i] - a), bound) << compute_dtype_name(kv) << " head " << h << " i " << i;
      }
    }
  }
}

}  // namespace
}  // namespace gpt2
