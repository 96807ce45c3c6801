// The generation loop: prefill the prompt, then one token at a time, with the stop rules
// (max new tokens, <|endoftext|>, a full context), the context shift, and timing. It owns the
// K/V ring's state (where the context starts); the backend owns the memory.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/sampler.h"

namespace gpt2 {

struct GenerationOptions {
  int max_new_tokens = 128;
  bool use_cache = true;       // false: --no-cache, recompute the whole context every step
  bool ignore_eos = false;
  bool context_shift = false;
  SamplingParams sampling;
  uint64_t seed = 0;
  int eos_id = 50256;
  // Positions [0, reused_prefix) of the prompt are in the K/V ring already (--prompt-cache put
  // them there with Backend::write_kv): the prefill computes only the rest. Needs the cache and
  // 0 <= reused_prefix < the prompt's length (its last token is computed, for the logits).
  int reused_prefix = 0;
};

// One forward() call as the generator made it: `tokens` tokens at context positions
// [pos, pos + tokens), so the newest attends over pos + tokens keys. --explain counts its work.
struct ForwardCall {
  int tokens = 0;
  int pos = 0;
  int context() const { return pos + tokens; }
  bool operator==(const ForwardCall& o) const { return tokens == o.tokens && pos == o.pos; }
  bool operator!=(const ForwardCall& o) const { return !(*this == o); }
};

// Stop: a stop string (--stop) matched; generate() never sets it (it sees no text): the
// caller's on_token returns false and the caller records the reason.
enum class FinishReason { Length, Eos, Context, Interrupted, Stop };
const char* finish_reason_name(FinishReason r);  // "length", "eos", "context", "interrupted", "stop"

struct GenerationResult {
  std::vector<int> generated;
  FinishReason finish = FinishReason::Length;
  double prefill_ms = 0;           // the prompt's forward pass and the first token's sampling
  double decode_ms = 0;            // every later token
  std::vector<double> token_ms;    // per generated token; token_ms[0] is the prefill
  int context_shifts = 0;
  std::vector<ForwardCall> forwards;  // forwards[i] computed the logits of generated[i]

  int decode_tokens() const { return generated.empty() ? 0 : int(generated.size()) - 1; }
  double decode_tokens_per_s() const { return decode_ms > 0 ? 1000.0 * decode_tokens() / decode_ms : 0.0; }
};

// Called with each new token as soon as it is sampled; return false to stop (output closed, a
// stop string): finish reason "interrupted", which the caller may refine (FinishReason::Stop).
using TokenCallback = std::function<bool(int id)>;

// Refuses a prompt of `n_tokens` that does not fit a context window of `window` tokens
// (Backend::context_window(), or context_window() of kv_ring.h before a backend exists).
void check_prompt_fits(size_t n_tokens, int window);

// Generates from `prompt` (non-empty; its length must fit backend.context_window(), else
// Error). `stop`, when set by a signal handler, ends generation after the current token.
// `after_prefill`, if set, runs once the first token is sampled, before any context shift, while
// the ring holds the prompt at positions [0, prompt size) (--prompt-cache saves it then); its
// time is in no token's.
GenerationResult generate(Backend& backend, const std::vector<int>& prompt, const GenerationOptions& options,
                          const TokenCallback& on_token, const std::atomic<bool>* stop = nullptr,
                          const std::function<void()>& after_prefill = {});

}  // namespace gpt2
