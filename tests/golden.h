// The Hugging Face goldens of ../shared/golden/tiny-gpt2, read for the tests.
#pragma once
#include <string>
#include <vector>

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

struct Golden {
  std::vector<int> subset;  // (S) vocabulary ids of logits_subset's columns
  std::vector<GoldenSequence> sequences;
  std::vector<GoldenGreedy> greedy;
};

const Golden& tiny_golden();  // loaded once from shared_dir()/golden/tiny-gpt2

// max |a - b| / max |b|: the goldens' tolerance measure.
double max_rel_error(const float* a, const float* b, size_t n);

}  // namespace gpt2::test
