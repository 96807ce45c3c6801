// The sampling rule (sampler.h) against a direct, slow transcription of its definition in
// double precision, and against properties any correct sampler has.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>

#include "sampler.h"

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
  // Probabilities 0.5, 0.3, 0.2 (temperature 1): top_p 0.8 keeps the first two (mass before
  // the third is exactly 0.8, not below it), top_p 0.79 keeps two, 0.5 keeps one.
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
