// Beam search (--num-beams N), exact against transformers' _beam_search (5.x) on any backend
// with n_seqs() >= N and reorder() (backend.h).
//
// The running beams are backend sequences 0..N-1. The prompt is prefilled once into sequence 0;
// each step then reads the running beams' logits, keeps the best 2N continuations of the
// N x vocab (beam_candidates.h), and of those:
//   - a continuation that ends its beam (the EOS token, a stop rule, or the last allowed length)
//     becomes a finished hypothesis if it ranks among the first N, with score
//     sum_logprobs / L^length_penalty, L the generated tokens counting the last one; the N best
//     hypotheses are kept;
//   - the best N that do not end become the next running beams: reorder() points sequence j at
//     its parent's history (no K/V is copied) and one decode_batch() computes all N next tokens.
// The search ends when every candidate ends, when N hypotheses exist and early_stopping is true,
// or when N hypotheses exist and the best running beam cannot beat the worst of them:
// early_stopping false judges that at the current length, "never" at the longest allowed length
// when length_penalty > 0 (transformers' heuristic). Without the cache every step recomputes
// each beam's whole sequence with forward() and gives the same result.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/generator.h"

namespace gpt2 {

enum class EarlyStopping { False, True, Never };
const char* early_stopping_name(EarlyStopping e);  // "false", "true", "never"

struct BeamOptions {
  int num_beams = 2;             // N; the backend holds at least N sequences
  float length_penalty = 1.0f;   // A: a hypothesis scores sum_logprobs / L^A
  EarlyStopping early_stopping = EarlyStopping::False;
  int num_return_sequences = 1;  // K <= N
};

// A returned sequence: its generated tokens (ending with EOS if it finished there), its score
// (transformers' sequences_scores) and why it ended.
struct BeamSequence {
  std::vector<int> tokens;
  double score = 0;
  FinishReason finish = FinishReason::Length;
};

// What one search cost, step by step (step 0 is the prompt's prefill): for --explain, --profile
// and --benchmark.
struct BeamTiming {
  std::vector<double> forward_ms;  // the step's forward work (prefill, decode_batch, or the no-cache recomputes)
  std::vector<double> select_ms;   // log-softmax, processors, top 2N, hypotheses
  std::vector<double> reorder_ms;  // reorder() (0 without the cache)
  std::vector<int> context;        // positions each running beam attends over after the step's forward
};

struct BeamResult {
  std::vector<BeamSequence> sequences;  // K, best first
  BeamTiming timing;
  bool interrupted = false;
  // The search as one sequence for --benchmark's tables: the best sequence's tokens, the prefill
  // and the steps' times (token_ms[i]: step i's forward, selection and reorder).
  GenerationResult as_generation() const;
};

// Whether a beam's generated tokens end it early (stop strings); may be empty.
using BeamStopRule = std::function<bool(const std::vector<int>& generated)>;

// Refuses options the search cannot run (one line naming the problem): N < 1, K outside
// [1, N], a backend holding fewer than N sequences, sampling.
void check_beam_options(const BeamOptions& beams, const GenerationOptions& gen, int backend_seqs);

// Runs the search from `prompt` (non-empty, fitting backend.context_window()). gen supplies
// max_new_tokens, use_cache, ignore_eos, eos_id and the processors (gen.sampling.penalties);
// sampling itself is refused. `stop`, when set, ends the search after the current step with the
// running beams returned as they are (finish "interrupted").
BeamResult beam_search(Backend& backend, const std::vector<int>& prompt, const GenerationOptions& gen,
                       const BeamOptions& beams, const BeamStopRule& stop_rule = nullptr,
                       const std::atomic<bool>* stop = nullptr);

}  // namespace gpt2
