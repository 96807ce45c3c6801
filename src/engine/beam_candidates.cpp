#include "engine/beam_candidates.h"

#include <algorithm>
#include <cmath>

namespace gpt2 {
namespace {

// a ranks before b: a higher score, or an equal one from a lower beam, then a lower id.
bool ranks_before(const BeamCandidate& a, const BeamCandidate& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.beam != b.beam ? a.beam < b.beam : a.id < b.id;
}

}  // namespace

void log_softmax(const float* logits, int V, float* out) {
  float max = -INFINITY;
  for (int i = 0; i < V; ++i) max = std::max(max, logits[i]);
  // exp in float (transformers' log_softmax runs in float32 too), summed in double.
  double sum = 0;
  for (int i = 0; i < V; ++i) sum += double(std::exp(logits[i] - max));
  const double lse = double(max) + std::log(sum);
  for (int i = 0; i < V; ++i) out[i] = float(double(logits[i]) - lse);
}

void select_candidates(const std::vector<BeamRow>& rows, int V, const PenaltyParams& penalties, int k,
                       CandidateScratch& scratch, std::vector<BeamCandidate>& out) {
  std::vector<float>& lp = scratch.logprobs;
  lp.resize(size_t(V));
  // A heap of the best k so far, its front the one that ranks last: a candidate enters only if
  // it ranks before that one.
  std::vector<BeamCandidate>& heap = scratch.heap;
  heap.clear();
  for (int b = 0; b < int(rows.size()); ++b) {
    const BeamRow& r = rows[size_t(b)];
    log_softmax(r.logits, V, lp.data());
    if (penalties.active()) process_logits(lp.data(), r.context, r.context_len, penalties, scratch.process);
    for (int id = 0; id < V; ++id) {
      const BeamCandidate c{r.score + double(lp[size_t(id)]), b, id};
      if (int(heap.size()) < k) {
        heap.push_back(c);
        std::push_heap(heap.begin(), heap.end(), ranks_before);
      } else if (ranks_before(c, heap.front())) {
        std::pop_heap(heap.begin(), heap.end(), ranks_before);
        heap.back() = c;
        std::push_heap(heap.begin(), heap.end(), ranks_before);
      }
    }
  }
  out.assign(heap.begin(), heap.end());
  std::sort(out.begin(), out.end(), ranks_before);
}

}  // namespace gpt2
