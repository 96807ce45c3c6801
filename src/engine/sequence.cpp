#include "engine/sequence.h"

#include <algorithm>

#include "base/error.h"

namespace gpt2 {

Sequence::Sequence(const std::vector<int>& prompt, const GenerationOptions& options, int capacity, int window)
    : options_(options), policy_{window, options.context_shift}, tokens_(prompt), ring_{capacity, 0},
      fresh_{capacity, 0}, rng_(options.seed) {
  if (prompt.empty()) throw Error("internal: a sequence needs a non-empty prompt");
  check_prompt_fits(prompt.size(), window);
  // tokens_ grows by one per generated token (pending_.ids is set after each growth): reserved
  // up front so that a run of usual length allocates nothing per token.
  tokens_.reserve(prompt.size() + size_t(std::min(std::max(0, options.max_new_tokens), 1 << 16)));
  u_ = options_.sampling.greedy() ? 0.0 : rng_.uniform();
  finished_ = options.max_new_tokens <= 0;
  const int reused = options.reused_prefix;
  if (reused < 0 || reused >= int(prompt.size()) || (reused > 0 && !options.use_cache))
    throw Error("internal: a reused prefix of " + std::to_string(reused) + " tokens for a prompt of " +
                std::to_string(prompt.size()));
  if (!finished_) set_pending(tokens_.data() + reused, int(tokens_.size()) - reused, reused, ring_);
}

Draws Sequence::draws() {
  const double next_u = options_.sampling.greedy() ? 0.0 : rng_.uniform();
  const Draws d{u_, next_u};
  u_ = next_u;
  return d;
}

void Sequence::set_pending(const int* ids, int n, int pos, const KvRing& ring) {
  pending_ = PendingForward{ids, n, pos, ring};
  result_.forwards.push_back(ForwardCall{n, pos});
}

bool Sequence::accept(int token, double ms, const TokenCallback& on_token, const std::atomic<bool>* stop) {
  GenerationResult& r = result_;
  r.token_ms.push_back(ms);
  (r.generated.empty() ? r.prefill_ms : r.decode_ms) += ms;
  r.generated.push_back(token);
  tokens_.push_back(token);

  finished_ = true;
  if (on_token && !on_token(token)) { r.finish = FinishReason::Interrupted; return false; }
  if (!options_.ignore_eos && token == options_.eos_id) { r.finish = FinishReason::Eos; return false; }
  if (int(r.generated.size()) >= options_.max_new_tokens) { r.finish = FinishReason::Length; return false; }
  if (stop && stop->load()) { r.finish = FinishReason::Interrupted; return false; }

  const int end = int(tokens_.size());
  const int new_begin = policy_.next_begin(end, begin_);
  if (new_begin < 0) { r.finish = FinishReason::Context; return false; }
  finished_ = false;
  if (new_begin != begin_) ++r.context_shifts;
  if (!options_.use_cache) {
    begin_ = new_begin;
    set_pending(tokens_.data() + begin_, end - begin_, 0, fresh_);
  } else if (new_begin != begin_) {
    // Context shift: GPT-2's positions are baked into K and V, so the kept tokens are
    // recomputed at positions 0.. into the slots they already occupy.
    ring_ = ring_.dropped_front(new_begin - begin_);
    begin_ = new_begin;
    set_pending(tokens_.data() + begin_, end - begin_, 0, ring_);
  } else {
    set_pending(&tokens_[size_t(end - 1)], 1, end - 1 - begin_, ring_);
  }
  return true;
}

}  // namespace gpt2
