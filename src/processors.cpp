#include "processors.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

namespace gpt2 {

std::vector<int> banned_ngram_ids(const int* context, int n, int size) {
  std::vector<int> banned;
  if (size <= 0 || n + 1 < size) return banned;  // transformers: no n-gram can be completed yet
  const int* tail = context + n - (size - 1);    // the last size - 1 tokens
  for (int i = 0; i + size <= n; ++i)            // every n-gram context[i, i + size)
    if (std::equal(context + i, context + i + size - 1, tail)) banned.push_back(context[i + size - 1]);
  return banned;
}

void process_logits(float* logits, const int* context, int n, const PenaltyParams& p) {
  if (p.penalizes()) {
    std::unordered_map<int, int> counts;  // id -> occurrences in the penalty window
    for (int i = penalty_window_begin(n, p.repeat_last_n); i < n; ++i) ++counts[context[i]];
    for (const auto& [id, count] : counts) logits[id] = penalize(logits[id], count, p);
  }
  for (int id : banned_ngram_ids(context, n, p.no_repeat_ngram_size)) logits[id] = -INFINITY;
}

}  // namespace gpt2
