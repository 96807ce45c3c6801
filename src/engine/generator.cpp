#include "engine/generator.h"

#include <chrono>

#include "base/error.h"
#include "engine/sequence.h"

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
                          const TokenCallback& on_token, const std::atomic<bool>* stop,
                          const std::function<void()>& after_prefill) {
  using clock = std::chrono::steady_clock;
  Sequence s(prompt, opt, backend.kv_capacity(), backend.context_window());
  auto t_start = clock::now();
  while (!s.finished()) {
    const PendingForward& f = s.pending();
    backend.forward(f.ids, f.n, f.pos, f.ring);
    const Draws d = s.draws();
    const int next = backend.sample(opt.sampling, d.u, d.next_u);
    const auto t_now = clock::now();
    s.accept(next, std::chrono::duration<double, std::milli>(t_now - t_start).count(), on_token, stop);
    t_start = t_now;
    if (after_prefill && s.result().generated.size() == 1) {
      after_prefill();
      t_start = clock::now();
    }
  }
  backend.settle();
  return std::move(s.result());
}

}  // namespace gpt2
