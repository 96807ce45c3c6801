// The Hugging Face goldens of ../shared/golden/tiny-gpt2, read for the tests.
#pragma once
#include <string>
#include <vector>

#include "engine/processors.h"

namespace gpt2::test {

struct GoldenSequence {
  std::string name;
  std::vector<int> ids;
  std::vector<float> logits_last;    // (V) at the last position
  std::vector<float> logits_subset;  // (T, S) at every position, ids `subset`
};

struct GoldenGreedy {
  std::vector<int> prompt;
  std::vector<int> new_tokens;
  double min_top2_margin = 0;
};

// reference_processors.json: a greedy continuation under transformers' logits processors
// (the penalty window is the whole sequence, prompt included: repeat_last_n 0).
struct GoldenProcessed {
  std::string settings;  // as the file writes them, for messages
  PenaltyParams params;
  GoldenGreedy greedy;
};

struct Golden {
  std::vector<int> subset;  // (S) vocabulary ids of logits_subset's columns
  std::vector<GoldenSequence> sequences;
  std::vector<GoldenGreedy> greedy;
  std::vector<GoldenProcessed> processed;
};

const Golden& tiny_golden();  // loaded once from shared_dir()/golden/tiny-gpt2

// max |a - b| / max |b|: the goldens' tolerance measure.
double max_rel_error(const float* a, const float* b, size_t n);

}  // namespace gpt2::test

namespace gpt2 {
class Backend;
}

namespace gpt2::test {

// The checks every backend must pass on the tiny golden model (GoogleTest expectations):
// the last-position logits of every sequence, and every position's subset logits computed
// twice: recomputing each prefix from an empty ring (the --no-cache path) and one token at a
// time against the cache, with the ring's start 3 slots before its end so the filled slots
// wrap around. Returns the largest error seen.
double expect_last_logits_match(Backend& backend, double tolerance);
double expect_subset_logits_match(Backend& backend, double tolerance);

// A reference_processors.json case, generated greedily with or without the cache, must equal
// transformers' tokens exactly (fp32: the cases' top-2 margins are >= 0.0015).
void expect_processed_continuation_matches(Backend& backend, const GoldenProcessed& c, bool cache);

}  // namespace gpt2::test
