// One sequence being generated: its tokens, its context window and K/V ring state, its random
// draws, its stop rules and its result. The one statement of what happens between two tokens,
// used by generate() (one sequence) and generate_batch() (many, one decode step for all):
//
//   Sequence s(prompt, options, capacity, window);
//   while (true) {
//     const PendingForward f = s.pending();        // the prompt, one token, or a recompute
//     backend.forward(seq, f.ids, f.n, f.pos, f.ring);
//     const Draws d = s.draws();
//     if (!s.accept(backend.sample(seq, params, d.u, d.next_u), ms, ...)) break;
//   }
#pragma once
#include <atomic>
#include <functional>
#include <vector>

#include "engine/generator.h"
#include "engine/kv_ring.h"
#include "engine/sampler.h"

namespace gpt2 {

// The forward() call that computes the logits of a sequence's next token: `n` tokens `ids` at
// context positions [pos, pos + n) of `ring`.
struct PendingForward {
  const int* ids = nullptr;
  int n = 0;
  int pos = 0;
  KvRing ring;
};

// The uniform draw of this token, and the next token's (a backend may queue that step early).
struct Draws {
  double u = 0, next_u = 0;
};

class Sequence {
 public:
  // `prompt` must be non-empty and fit `window` tokens (throws gpt2::Error otherwise).
  Sequence(const std::vector<int>& prompt, const GenerationOptions& options, int capacity, int window);

  const PendingForward& pending() const { return pending_; }
  // This token's draw and the next one's: one per sampled token, in order, whatever the tokens.
  Draws draws();
  // Takes the token sampled from pending()'s logits, `ms` after the previous one (or the start),
  // and applies the stop rules; on_token may end it (false: Interrupted, refined by the caller).
  // Returns true while the sequence goes on; then pending() is its next forward().
  bool accept(int token, double ms, const TokenCallback& on_token, const std::atomic<bool>* stop);

  bool finished() const { return finished_; }
  const GenerationOptions& options() const { return options_; }
  GenerationResult& result() { return result_; }
  const GenerationResult& result() const { return result_; }

 private:
  void set_pending(const int* ids, int n, int pos, const KvRing& ring);

  GenerationOptions options_;
  ContextPolicy policy_;
  std::vector<int> tokens_;  // the prompt and every generated token; the context is [begin_, end)
  int begin_ = 0;
  KvRing ring_;
  KvRing fresh_;  // --no-cache starts from an empty ring every step
  Rng rng_;
  double u_ = 0;
  bool finished_ = false;
  PendingForward pending_;
  GenerationResult result_;
};

}  // namespace gpt2
