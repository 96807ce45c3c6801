// Continuous batching (--batch with --parallel N): up to N requests decode together, one
// Backend::decode_batch() per step over the backend's N sequences ("slots"). When a request
// finishes (EOS, length, a full context, its caller's stop string) its slot takes the next
// request at once: that prompt is prefilled by forward() on its own, its first token sampled,
// and it joins the next decode step. No slot waits for the slowest sequence (vLLM's scheduler,
// llama.cpp's server slots).
//
// A request's tokens do not depend on the batch: its prefill and recomputes run alone, exactly
// as in generate(), and a decode row's logits are forward()'s (decode_batch's contract); each
// slot has its own Sequence (ring state, stop rules, draws from the request's own seed) and its
// own K/V rings and processor context in the backend.
//
// Shared prefixes (vLLM's automatic prefix caching, llama.cpp's server prompt reuse): the
// scheduler records which tokens each slot's rings hold at positions [0, n) (held_prefixes.h).
// A new request takes the K/V of the longest prefix its prompt shares with any slot, requests
// admitted before it in the same step included (Backend::copy_kv(); nothing to copy when that
// slot is its own), and its prefill computes only the rest. The reused K/V were computed in a
// prefill of another length (or in decode steps), so its logits are bitwise those of a solo run
// that prefilled the source's tokens first and then the rest, not always of one whole prefill.
#pragma once
#include <atomic>
#include <functional>
#include <vector>

#include "engine/backend.h"
#include "engine/generator.h"

namespace gpt2 {

struct BatchRequest {
  std::vector<int> prompt;  // non-empty, fitting the backend's context window
  GenerationOptions options;
};

// The scheduler's conversation with its caller. Requests are numbered 0, 1, ... in the order
// next() gave them.
struct BatchEvents {
  // Fills the next request; false when there are no more.
  std::function<bool(BatchRequest& request)> next;
  // Each new token of request `id`, as soon as it is sampled; false ends that request (finish
  // reason Interrupted, which the caller may refine, e.g. to Stop).
  std::function<bool(int id, int token)> on_token;
  // Request `id` ended; its result (tokens, finish reason, per-token times).
  std::function<void(int id, GenerationResult& result)> on_finish;
};

struct BatchStats {
  int requests = 0;       // started
  int decode_steps = 0;   // decode_batch() calls
  long decode_rows = 0;   // tokens those steps computed
  int max_rows = 0;       // the most sequences in one step
  long prompt_tokens_computed = 0;  // by the prefills
  long prompt_tokens_reused = 0;    // copied from (or still in) a slot's rings instead
};

struct BatchOptions {
  // Shared prefixes reuse K/V (false: --no-prefix-reuse, every prompt prefilled whole).
  bool prefix_reuse = true;
};

// The shortest shared prefix worth reusing: vLLM's cache block (16 tokens). A shorter one saves
// little compute, and on CUDA the default copy_kv() is a round trip through the host.
constexpr int kMinReusedPrefix = 16;

// Runs requests until next() has no more and every started one has finished, on
// backend.n_seqs() slots. `stop` (Ctrl-C): the requests in flight end after the current step
// with finish reason Interrupted, and no new request starts.
BatchStats generate_batch(Backend& backend, const BatchEvents& events, const std::atomic<bool>* stop = nullptr,
                          const BatchOptions& options = {});

}  // namespace gpt2
