// The logits processors (processors.h) and min-p (sampler.h) on small cases whose expected
// values are worked out by hand in each test. transformers' own outputs for the repetition
// penalty and n-gram blocking are checked end to end by the goldens (test_cpu_golden).
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <vector>

#include "engine/processors.h"
#include "engine/sampler.h"

namespace gpt2 {
namespace {

std::vector<float> processed(std::vector<float> z, const std::vector<int>& context, const PenaltyParams& p) {
  process_logits(z.data(), context.data(), int(context.size()), p);
  return z;
}

TEST(Processors, RepetitionPenaltyDividesPositiveAndMultipliesNegativeLogitsOnce) {
  PenaltyParams p;
  p.repeat_penalty = 2.0f;
  // ids 0 and 1 occur (0 twice: the penalty does not depend on the count); 2 and 3 do not.
  EXPECT_EQ(processed({3.0f, -1.5f, 1.0f, -0.5f}, {0, 1, 0}, p), (std::vector<float>{1.5f, -3.0f, 1.0f, -0.5f}));
  p.repeat_penalty = 0.5f;  // below 1 it rewards repetition
  EXPECT_EQ(processed({3.0f, -1.5f, 1.0f}, {0, 1}, p), (std::vector<float>{6.0f, -0.75f, 1.0f}));
}

TEST(Processors, PresenceSubtractsOncePerPresentIdAndFrequencyPerOccurrence) {
  PenaltyParams p;
  p.presence_penalty = 0.5f;
  // counts: id 0 three times, id 2 once, ids 1 and 3 never.
  EXPECT_EQ(processed({1.0f, 1.0f, 1.0f, 1.0f}, {0, 0, 2, 0}, p), (std::vector<float>{0.5f, 1.0f, 0.5f, 1.0f}));
  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.25f;
  EXPECT_EQ(processed({1.0f, 1.0f, 1.0f, 1.0f}, {0, 0, 2, 0}, p), (std::vector<float>{0.25f, 1.0f, 0.75f, 1.0f}));
  p.presence_penalty = 1.0f;
  p.frequency_penalty = -0.5f;  // negative values reward repetition, as in OpenAI's API
  EXPECT_EQ(processed({1.0f, 1.0f, 1.0f}, {0, 0, 2, 0}, p), (std::vector<float>{1.5f, 1.0f, 0.5f}));
}

TEST(Processors, RepetitionPenaltyComesBeforePresenceAndFrequency) {
  PenaltyParams p;
  p.repeat_penalty = 1.5f;
  p.presence_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  // id 0 twice: 3 / 1.5 - 1 - 2 * 0.5 = 0 (the other order would give (3 - 2) / 1.5).
  // id 1 once, negative: -2 * 1.5 - 1 - 0.5 = -4.5.
  EXPECT_EQ(processed({3.0f, -2.0f}, {0, 1, 0}, p), (std::vector<float>{0.0f, -4.5f}));
}

TEST(Processors, TheWindowIsTheLastRepeatLastNTokensOfTheContext) {
  PenaltyParams p;
  p.frequency_penalty = 1.0f;
  const std::vector<int> context = {0, 1, 2, 2};
  p.repeat_last_n = 2;  // window {2, 2}: only id 2, counted twice
  EXPECT_EQ(processed({5.0f, 5.0f, 5.0f}, context, p), (std::vector<float>{5.0f, 5.0f, 3.0f}));
  p.repeat_last_n = 3;  // window {1, 2, 2}
  EXPECT_EQ(processed({5.0f, 5.0f, 5.0f}, context, p), (std::vector<float>{5.0f, 4.0f, 3.0f}));
  for (int whole : {0, 4, 100}) {  // 0 and anything >= the context: all of it
    p.repeat_last_n = whole;
    EXPECT_EQ(processed({5.0f, 5.0f, 5.0f}, context, p), (std::vector<float>{4.0f, 4.0f, 3.0f})) << whole;
  }
  EXPECT_EQ(penalty_window_begin(10, 0), 0);
  EXPECT_EQ(penalty_window_begin(10, 3), 7);
  EXPECT_EQ(penalty_window_begin(10, 64), 0);
}

TEST(Processors, NoRepeatNgramBansWhatWouldCompleteASeenNgram) {
  const std::vector<int> c = {1, 2, 1, 3, 1};
  // size 2: the last token is 1; the bigrams starting with 1 are (1,2) and (1,3).
  EXPECT_EQ(banned_ngram_ids(c.data(), 5, 2), (std::vector<int>{2, 3}));
  // size 3: the last two are (3,1); no earlier trigram starts with them.
  EXPECT_TRUE(banned_ngram_ids(c.data(), 5, 3).empty());
  // size 1: every id present.
  EXPECT_EQ(banned_ngram_ids(c.data(), 5, 1), (std::vector<int>{1, 2, 1, 3, 1}));
  const std::vector<int> d = {5, 6, 7, 5, 6};
  EXPECT_EQ(banned_ngram_ids(d.data(), 5, 3), (std::vector<int>{7}));
  // Too short to hold a complete n-gram: transformers bans nothing.
  EXPECT_TRUE(banned_ngram_ids(d.data(), 2, 3).empty());
  EXPECT_TRUE(banned_ngram_ids(d.data(), 5, 0).empty());

  PenaltyParams p;
  p.no_repeat_ngram_size = 3;
  const auto z = processed({0, 0, 0, 0, 0, 0, 0, 0}, d, p);
  for (int id = 0; id < 8; ++id) EXPECT_EQ(z[size_t(id)], id == 7 ? -INFINITY : 0.0f) << id;
}

// The share of a fine grid of draws u that picks each id.
std::map<int, double> draw_shares(const std::vector<float>& z, const SamplingParams& sp) {
  const int grid = 12000;
  std::map<int, double> share;
  for (int i = 0; i < grid; ++i) share[sample_token(z.data(), int(z.size()), sp, (i + 0.5) / grid)] += 1.0 / grid;
  return share;
}

void expect_shares(const std::map<int, double>& got, const std::map<int, double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [id, p] : want) EXPECT_NEAR(got.at(id), p, 1e-3) << "id " << id;
}

TEST(MinP, KeepsTheIdsWithAtLeastMinPTimesTheTopProbabilityAfterTemperature) {
  // Relative probabilities at T = 1: 1, 1/2, 1/4, 1/8.
  const std::vector<float> z = {0.0f, -std::log(2.0f), -std::log(4.0f), -std::log(8.0f)};
  SamplingParams sp{1.0f, 0, 1.0f};
  sp.min_p = 0.3f;  // keeps 1 and 1/2: shares 2/3, 1/3
  expect_shares(draw_shares(z, sp), {{0, 2.0 / 3}, {1, 1.0 / 3}});
  sp.min_p = 0.2f;  // keeps 1, 1/2, 1/4: shares 4/7, 2/7, 1/7
  expect_shares(draw_shares(z, sp), {{0, 4.0 / 7}, {1, 2.0 / 7}, {2, 1.0 / 7}});
  // At T = 2 the relative probabilities are 1, 0.707, 0.5, 0.354: min-p 0.3 now keeps all four
  // (it applies after temperature, as in transformers).
  sp.temperature = 2.0f;
  const double r = std::sqrt(0.5), total = 1 + r + 0.5 + r / 2;
  expect_shares(draw_shares(z, sp), {{0, 1 / total}, {1, r / total}, {2, 0.5 / total}, {3, r / 2 / total}});
  sp.min_p = 1.0f;  // only the top id (and ids tied with it)
  expect_shares(draw_shares(z, sp), {{0, 1.0}});
  expect_shares(draw_shares({1.0f, 3.0f, 3.0f}, sp), {{1, 0.5}, {2, 0.5}});
}

TEST(MinP, WithTopPTheShorterPrefixWins) {
  // T = 1, relative 1, 1/2, 1/4, 1/8 (total 15/8): top-p 0.9 keeps while the mass before a
  // token is < 0.9 * 15/8 = 1.6875: ids 0, 1, 2 (the mass before id 3 is 1.75).
  const std::vector<float> z = {0.0f, -std::log(2.0f), -std::log(4.0f), -std::log(8.0f)};
  SamplingParams sp{1.0f, 0, 0.9f};
  expect_shares(draw_shares(z, sp), {{0, 4.0 / 7}, {1, 2.0 / 7}, {2, 1.0 / 7}});
  sp.min_p = 0.3f;  // min-p is the shorter: ids 0, 1
  expect_shares(draw_shares(z, sp), {{0, 2.0 / 3}, {1, 1.0 / 3}});
  sp.top_p = 0.5f;  // top-p is the shorter: the mass before id 1 is 1 >= 0.9375: id 0 alone
  expect_shares(draw_shares(z, sp), {{0, 1.0}});
}

}  // namespace
}  // namespace gpt2
