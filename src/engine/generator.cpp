#include "engine/generator.h"

#include <chrono>

#include "base/error.h"
#include "engine/kv_ring.h"

namespace gpt2 {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Length: return "length";
    case FinishReason::Eos: return "eos";
    case FinishReason::Context: return "context";
    case FinishReason::Interrupted: return "interrupted";
    case FinishReason::Stop: return "stop";
  }
  return "?";
}

void check_prompt_fits(size_t n_tokens, int window) {
  if (n_tokens > size_t(window))
    throw Error("the prompt has " + std::to_string(n_tokens) + " tokens but the context holds " +
                std::to_string(window) + "; shorten the prompt");
}

GenerationResult generate(Backend& backend, const std::vector<int>& prompt, const GenerationOptions& opt,
                          const TokenCallback& on_token, const std::atomic<bool>* stop) {
  using clock = std::chrono::steady_clock;
  const int capacity = backend.kv_capacity();
  const ContextPolicy policy{backend.context_window(), opt.context_shift};
  if (prompt.empty()) throw Error("internal: generate() needs a non-empty prompt");
  check_prompt_fits(prompt.size(), policy.window);

  GenerationResult r;
  if (opt.max_new_tokens <= 0) return r;

  Rng rng(opt.seed);
  std::vector<int> tokens = prompt;
  int begin = 0;                       // the context is tokens[begin, end)
  KvRing ring{capacity, 0};
  const KvRing fresh{capacity, 0};     // --no-cache starts from an empty ring every step

  auto forward = [&](const int* ids, int n, int pos, const KvRing& kv) {
    r.forwards.push_back(ForwardCall{n, pos});
    backend.forward(ids, n, pos, kv);
  };
  // One uniform draw per sampled token, in order, whatever the tokens are; each is also handed
  // to the sample() before the one that uses it (launch-ahead may queue that step early).
  auto draw = [&] { return opt.sampling.greedy() ? 0.0 : rng.uniform(); };
  double u = draw();
  auto t_start = clock::now();
  forward(tokens.data(), int(tokens.size()), 0, ring);
  for (;;) {
    const double next_u = draw();
    const int next = backend.sample(opt.sampling, u, next_u);
    u = next_u;
    const auto t_now = clock::now();
    const double ms = std::chrono::duration<double, std::milli>(t_now - t_start).count();
    t_start = t_now;
    r.token_ms.push_back(ms);
    (r.generated.size() == 0 ? r.prefill_ms : r.decode_ms) += ms;
    r.generated.push_back(next);
    tokens.push_back(next);

    if (on_token && !on_token(next)) { r.finish = FinishReason::Interrupted; break; }
    if (!opt.ignore_eos && next == opt.eos_id) { r.finish = FinishReason::Eos; break; }
    if (int(r.generated.size()) >= opt.max_new_tokens) { r.finish = FinishReason::Length; break; }
    if (stop && stop->load()) { r.finish = FinishReason::Interrupted; break; }

    const int end = int(tokens.size());
    const int new_begin = policy.next_begin(end, begin);
    if (new_begin < 0) { r.finish = FinishReason::Context; break; }
    if (new_begin != begin) ++r.context_shifts;
    if (!opt.use_cache) {
      begin = new_begin;
      forward(tokens.data() + begin, end - begin, 0, fresh);
    } else if (new_begin != begin) {
      // Context shift: GPT-2's positions are baked into K and V, so the kept tokens are
      // recomputed at positions 0.. into the slots they already occupy.
      ring = ring.dropped_front(new_begin - begin);
      begin = new_begin;
      forward(tokens.data() + begin, end - begin, 0, ring);
    } else {
      forward(&tokens[end - 1], 1, end - 1 - begin, ring);
    }
  }
  backend.settle();
  return r;
}

}  // namespace gpt2
