#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace gpt2 {

int sample_token(const float* logits, int vocab, const SamplingParams& params, double u, SampleScratch& scratch) {
  if (params.greedy()) {
    int best = 0;
    for (int i = 1; i < vocab; ++i)
      if (logits[i] > logits[best]) best = i;  // strict: the lowest id wins ties
    return best;
  }

  // 2-3: the candidates in rule order; only the first top_k need to be ordered.
  std::vector<int>& ids = scratch.ids;
  ids.resize(size_t(vocab));
  std::iota(ids.begin(), ids.end(), 0);
  auto before = [logits](int a, int b) { return logits[a] != logits[b] ? logits[a] > logits[b] : a < b; };
  int n = vocab;
  if (params.top_k > 0 && params.top_k < vocab) {
    n = params.top_k;
    std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), before);
  } else {
    std::sort(ids.begin(), ids.end(), before);
  }

  // 4: softmax with temperature over the kept ids (ids[0] holds the maximum).
  const float z_max = logits[ids[0]];
  std::vector<float>& p = scratch.p;
  p.resize(size_t(n));
  float total = 0.0f;
  for (int i = 0; i < n; ++i) {
    p[i] = std::exp((logits[ids[i]] - z_max) / params.temperature);
    total += p[i];
  }

  // 5-6: nucleus and min-p: keep while the mass before the token is below top_p * total and
  // its p is at least min_p (p of the top id is 1).
  if (params.top_p < 1.0f || params.min_p > 0.0f) {
    float before_mass = 0.0f;
    int kept = 0;
    while (kept < n && (kept == 0 || ((params.top_p >= 1.0f || before_mass < params.top_p * total) &&
                                      p[kept] >= params.min_p))) {
      before_mass += p[kept];
      ++kept;
    }
    n = kept;
    total = before_mass;
  }

  // 7: inverse CDF over what is kept.
  const float r = float(u) * total;
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) {
    acc += p[i];
    if (acc > r) return ids[i];
  }
  return ids[n - 1];
}

int sample_token(const float* logits, int vocab, const SamplingParams& params, double u) {
  SampleScratch scratch;
  return sample_token(logits, vocab, params, u, scratch);
}

}  // namespace gpt2
