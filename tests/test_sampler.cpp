// The sampling rule (sampler.h) against a direct, slow transcription of its definition in
// double precision, and against properties any correct sampler has.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "engine/sampler.h"

namespace gpt2 {
namespace {

// The kept ids and their probabilities under the rule, computed independently in double.
std::map<int, double> expected_distribution(const std::vector<float>& z, const SamplingParams& sp) {
  std::vector<int> order(z.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return z[a] > z[b]; });
  if (sp.top_k > 0 && size_t(sp.top_k) < order.size()) order.resize(size_t(sp.top_k));
  std::vector<double> p;
  double total = 0;
  for (int id : order) { p.push_back(std::exp((double(z[id]) - z[order[0]]) / sp.temperature)); total += p.back(); }
  for (double& v : p) v /= total;
  size_t n = order.size();
  if (sp.top_p < 1) {
    double mass = 0;
    n = 0;
    while (n < order.size() && (n == 0 || mass < sp.top_p)) mass += p[n++];
  }
  double kept = 0;
  for (size_t i = 0; i < n; ++i) kept += p[i];
  std::map<int, double> d;
  for (size_t i = 0; i < n; ++i) d[order[i]] = p[i] / kept;
  return d;
}

std::vector<float> random_logits(int n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> z(static_cast<size_t>(n));
  for (float& v : z) v = dist(rng);
  return z;
}

TEST(Sampler, GreedyIsArgmaxWithLowestIdOnTies) {
  std::vector<float> z = {1, 5, 2, 5, -3};
  EXPECT_EQ(sample_token(z.data(), 5, SamplingParams{0, 40, 0.95f}, 0.99), 1);
  const auto big = random_logits(50257, 1);
  const int want = int(std::max_element(big.begin(), big.end()) - big.begin());
  EXPECT_EQ(sample_token(big.data(), 50257, SamplingParams{0, 0, 1}, 0.5), want);
}

TEST(Sampler, TopKOneIsGreedyWhateverTheDraw) {
  const auto z = random_logits(1000, 2);
  const int want = int(std::max_element(z.begin(), z.end()) - z.begin());
  for (double u : {0.0, 0.3, 0.999999})
    EXPECT_EQ(sample_token(z.data(), 1000, SamplingParams{1.5f, 1, 1.0f}, u), want);
}

// Sweeping u over a fine grid samples each kept id in proportion to its probability: the
// counts must match the independent distribution to within the grid's resolution, and no id
// outside the kept set may ever appear.
void check_distribution(const std::vector<float>& z, const SamplingParams& sp) {
  const auto want = expected_distribution(z, sp);
  const int grid = 20000;
  std::map<int, int> count;
  for (int i = 0; i < grid; ++i) ++count[sample_token(z.data(), int(z.size()), sp, (i + 0.5) / grid)];
  for (const auto& [id, c] : count) ASSERT_TRUE(want.count(id)) << "sampled id " << id << " outside the kept set";
  for (const auto& [id, p] : want) EXPECT_NEAR(double(count[id]) / grid, p, 2.0 / grid + 1e-5) << "id " << id;
}

TEST(Sampler, DistributionMatchesTheRule) {
  check_distribution(random_logits(300, 3), SamplingParams{1.0f, 0, 1.0f});
  check_distribution(random_logits(300, 4), SamplingParams{0.7f, 40, 1.0f});
  check_distribution(random_logits(300, 5), SamplingParams{1.3f, 0, 0.9f});
  check_distribution(random_logits(50257, 6, 2.0f), SamplingParams{0.8f, 40, 0.95f});
}

TEST(Sampler, TopPKeepsTheShortestPrefixReachingP) {
  // Probabilities 0.5, 0.3, 0.2 (temperature 1), away from any boundary: top_p 0.5 keeps the
  // first, 0.79 the first two. (The exact boundary needs sums that are exact in float: below.)
  std::vector<float> z = {std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  auto kept = [&](float p) { return expected_distribution(z, SamplingParams{1, 0, p}).size(); };
  EXPECT_EQ(kept(0.5f), 1u);
  EXPECT_EQ(kept(0.79f), 2u);
  for (float p : {0.5f, 0.79f}) {
    std::map<int, int> seen;
    for (int i = 0; i < 1000; ++i) ++seen[sample_token(z.data(), 3, SamplingParams{1, 0, p}, (i + 0.5) / 1000)];
    EXPECT_EQ(seen.size(), kept(p)) << p;
  }
}

// The ids sample_token returns over a fine grid of draws, with how often each comes.
std::map<int, int> sampled_counts(const std::vector<float>& z, const SamplingParams& sp, int grid = 12000) {
  std::map<int, int> count;
  for (int i = 0; i < grid; ++i) ++count[sample_token(z.data(), int(z.size()), sp, (i + 0.5) / grid)];
  return count;
}

// Exact boundaries, worked out by hand. Five ids (1..5) tie for the maximum, so each has
// p = exp(0) = 1 exactly and every partial sum is an exact integer in float: top_k 4 keeps
// ids 1, 2, 3, 4 of the tie (lowest ids first), the total is 4, and top_p * 4 is exact.
const std::vector<float> kTies = {2.0f, 7.0f, 7.0f, 7.0f, 7.0f, 7.0f, -1.0f};

TEST(Sampler, TopPAtItsExactBoundaryStopsThere) {
  struct Case {
    float top_p;
    std::vector<int> kept;
  };
  const float half_down = std::nextafter(0.5f, 0.0f), half_up = std::nextafter(0.5f, 1.0f);
  const Case cases[] = {
      {0.25f, {1}},           // threshold 1: the mass before id 2 is 1, not below it
      {0.5f, {1, 2}},         // threshold 2: the mass before id 3 is exactly 2: stop
      {half_down, {1, 2}},    // threshold just under 2: still stop before id 3
      {half_up, {1, 2, 3}},   // threshold just over 2: the mass before id 3 (2) is below it
      {0.75f, {1, 2, 3}},     // threshold 3
      {0.99f, {1, 2, 3, 4}},  // threshold 3.96: all four
  };
  for (const Case& c : cases) {
    const auto count = sampled_counts(kTies, SamplingParams{1.0f, 4, c.top_p});
    std::vector<int> got;
    for (const auto& [id, n] : count) got.push_back(id);
    EXPECT_EQ(got, c.kept) << "top_p " << c.top_p;
    // Renormalised over what is kept: equal shares.
    for (const auto& [id, n] : count) EXPECT_EQ(n, 12000 / int(c.kept.size())) << "top_p " << c.top_p << " id " << id;
  }
}

TEST(Sampler, TopKCutsATieAtTheLowestIds) {
  // Five ids tie for the maximum (1..5): top_k 2 keeps ids 1 and 2, top_k 5 all five, top_k 6
  // adds id 0 (logit 2, p = e^-5), top_k 7 and 0 (off) also id 6 (p = e^-8).
  auto kept = [](int k) {
    std::vector<int> ids;
    for (const auto& [id, n] : sampled_counts(kTies, SamplingParams{1.0f, k, 1.0f}, 200000)) ids.push_back(id);
    return ids;
  };
  EXPECT_EQ(kept(1), (std::vector<int>{1}));
  EXPECT_EQ(kept(2), (std::vector<int>{1, 2}));
  EXPECT_EQ(kept(5), (std::vector<int>{1, 2, 3, 4, 5}));
  EXPECT_EQ(kept(6), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  for (int k : {0, 7, 8, 1000}) EXPECT_EQ(kept(k), (std::vector<int>{0, 1, 2, 3, 4, 5, 6})) << "top_k " << k;
  // With top_k 6 at temperature 1: p(id 0) = e^-5 / (5 + e^-5) = 0.0013458...
  const auto count = sampled_counts(kTies, SamplingParams{1.0f, 6, 1.0f}, 200000);
  EXPECT_NEAR(count.at(0) / 200000.0, std::exp(-5.0) / (5 + std::exp(-5.0)), 2.0 / 200000);
}

TEST(Sampler, TheDrawPicksTheFirstIdWhoseCumulativeMassExceedsIt) {
  // Four kept ties, total 4: u * 4 = r; the cumulative masses are 1, 2, 3, 4 (exact), and the
  // first id whose cumulative mass is > r wins: r = 1 exactly goes to the second id. (The draw
  // is used as a float, so "just below" is a float step.)
  const SamplingParams sp{1.0f, 4, 1.0f};
  const double below = std::nextafter(0.25f, 0.0f);
  EXPECT_EQ(sample_token(kTies.data(), 7, sp, 0.0), 1);
  EXPECT_EQ(sample_token(kTies.data(), 7, sp, below), 1);
  EXPECT_EQ(sample_token(kTies.data(), 7, sp, 0.25), 2);
  EXPECT_EQ(sample_token(kTies.data(), 7, sp, 0.5), 3);
  EXPECT_EQ(sample_token(kTies.data(), 7, sp, 0.75), 4);
  EXPECT_EQ(sample_token(kTies.data(), 7, sp, std::nextafter(1.0f, 0.0f)), 4);
}

TEST(Sampler, TemperatureSharpensAndFlattens) {
  // Logits 0 and -1 (ids 0, 1), no top-k / top-p: p(id 1) = e^(-1/T) / (1 + e^(-1/T)), by hand
  // 0.2689 at T 1, 0.1192 at T 0.5, 0.4502 at T 5.
  const std::vector<float> z = {0.0f, -1.0f};
  for (const auto& [t, want] : {std::pair{1.0f, 0.26894}, {0.5f, 0.11920}, {5.0f, 0.45017}}) {
    const auto count = sampled_counts(z, SamplingParams{t, 0, 1.0f}, 100000);
    EXPECT_NEAR(count.at(1) / 100000.0, want, 1e-4) << "temperature " << t;
  }
}

TEST(Rng, SameSeedSameStreamInUnitInterval) {
  Rng a(123), b(123), c(124);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    const double x = a.uniform();
    EXPECT_EQ(x, b.uniform());
    EXPECT_GE(x, 0.0);
    EXPECT_LT(x, 1.0);
    differs = differs || x != c.uniform();
  }
  EXPECT_TRUE(differs);
}

}  // namespace
}  // namespace gpt2
