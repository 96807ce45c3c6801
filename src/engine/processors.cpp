#include "engine/processors.h"

#include <algorithm>
#include <cmath>

namespace gpt2 {

void banned_ngram_ids(const int* context, int n, int size, std::vector<int>& banned) {
  banned.clear();
  if (size <= 0 || n + 1 < size) return;       // transformers: no n-gram can be completed yet
  const int* tail = context + n - (size - 1);  // the last size - 1 tokens
  for (int i = 0; i + size <= n; ++i)          // every n-gram context[i, i + size)
    if (std::equal(context + i, context + i + size - 1, tail)) banned.push_back(context[i + size - 1]);
}

std::vector<int> banned_ngram_ids(const int* context, int n, int size) {
  std::vector<int> banned;
  banned_ngram_ids(context, n, size, banned);
  return banned;
}

void process_logits(float* logits, const int* context, int n, const PenaltyParams& p, ProcessScratch& scratch) {
  if (p.penalizes()) {
    // The window's ids sorted: each id's occurrences form one run, its length the count.
    std::vector<int>& w = scratch.window;
    w.assign(context + penalty_window_begin(n, p.repeat_last_n), context + n);
    std::sort(w.begin(), w.end());
    for (size_t i = 0, run_end; i < w.size(); i = run_end) {
      run_end = i + 1;
      while (run_end < w.size() && w[run_end] == w[i]) ++run_end;
      logits[w[i]] = penalize(logits[w[i]], int(run_end - i), p);
    }
  }
  banned_ngram_ids(context, n, p.no_repeat_ngram_size, scratch.banned);
  for (int id : scratch.banned) logits[id] = -INFINITY;
}

void process_logits(float* logits, const int* context, int n, const PenaltyParams& p) {
  ProcessScratch scratch;
  process_logits(logits, context, n, p, scratch);
}

}  // namespace gpt2
