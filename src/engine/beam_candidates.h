// Beam search's candidate rule, written once for every backend: each running beam's last logits
// become log-probabilities (log-softmax), the logits processors of processors.h act on those
// (as transformers applies them in beam search: to the log-softmax scores, e.g. the repetition
// penalty multiplies a token's negative log-probability), the beam's running score is added,
// and the best 2N of the N x vocab sums are kept, best first (equal scores: the lower beam, then
// the lower id). A backend only supplies the logits (Backend::read_logits).
#pragma once
#include <vector>

#include "engine/processors.h"

namespace gpt2 {

// One continuation: beam `beam` (its backend sequence) extended by token `id`, with `score` its
// summed log-probabilities (the running score plus this token's processed log-probability).
struct BeamCandidate {
  double score = 0;
  int beam = 0;
  int id = 0;
};

// The buffers select_candidates() works in, grown once to the vocabulary.
struct CandidateScratch {
  std::vector<float> logprobs;  // (V) one beam's processed log-probabilities
  ProcessScratch process;
  std::vector<BeamCandidate> heap;
};

// The log-softmax of `logits` (V floats) into `out` (V floats): float exponentials summed in double.
void log_softmax(const float* logits, int V, float* out);

// One beam's input to select_candidates(): its last logits, its running score and its context
// (the prompt and its generated tokens, oldest first) for the processors.
struct BeamRow {
  const float* logits = nullptr;  // (V)
  double score = 0;
  const int* context = nullptr;
  int context_len = 0;
};

// The best `k` candidates over `rows` (beam b = rows[b]), best first, into `out`.
void select_candidates(const std::vector<BeamRow>& rows, int V, const PenaltyParams& penalties, int k,
                       CandidateScratch& scratch, std::vector<BeamCandidate>& out);

}  // namespace gpt2
