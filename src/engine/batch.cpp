#include "engine/batch.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "engine/sequence.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;

// A slot: one of the backend's sequences, and the request it is running, if any.
struct Slot {
  std::optional<Sequence> seq;
  int id = -1;
  TokenCallback on_token;  // events.on_token for this request, made once (no allocation per token)
  Clock::time_point last;  // when its previous token was taken (or its request started)
};

class Scheduler {
 public:
  Scheduler(Backend& backend, const BatchEvents& events, const std::atomic<bool>* stop)
      : backend_(backend), events_(events), stop_(stop), slots_(size_t(backend.n_seqs())) {
    rows_.reserve(slots_.size());
    active_.reserve(slots_.size());
  }

  BatchStats run() {
    for (;;) {
      fill();
      active_.clear();
      for (int k = 0; k < int(slots_.size()); ++k)
        if (slots_[size_t(k)].seq) active_.push_back(k);
      if (active_.empty()) break;
      step();
    }
    return stats_;
  }

 private:
  bool stopping() const { return stop_ && stop_->load(); }

  // Free slots take the next requests: each prompt prefilled alone, its first token taken.
  void fill() {
    for (int k = 0; k < int(slots_.size()); ++k) {
      Slot& s = slots_[size_t(k)];
      while (!s.seq && more_ && !stopping()) {
        BatchRequest r;
        if (!events_.next(r)) {
          more_ = false;
          break;
        }
        s.id = stats_.requests++;
        s.last = Clock::now();
        s.seq.emplace(r.prompt, r.options, backend_.kv_capacity(), backend_.context_window());
        s.on_token = [this, id = s.id](int token) { return events_.on_token(id, token); };
        if (s.seq->finished()) {  // nothing to generate (max_new_tokens 0)
          finish(s);
          continue;
        }
        forward_alone(k);
        take(k);
      }
    }
  }

  // One decode step: every active slot's next token, the single-token ones in one
  // decode_batch(); a recompute (--no-cache, a context shift) runs alone first.
  void step() {
    rows_.clear();
    for (int k : active_) {
      const PendingForward& f = slots_[size_t(k)].seq->pending();
      if (f.n == 1) rows_.push_back(SeqToken{k, f.ids[0], f.pos, f.ring});
      else forward_alone(k);
    }
    if (!rows_.empty()) {
      backend_.decode_batch(rows_.data(), int(rows_.size()));
      ++stats_.decode_steps;
      stats_.decode_rows += long(rows_.size());
      stats_.max_rows = std::max(stats_.max_rows, int(rows_.size()));
    }
    for (int k : active_) take(k);
  }

  void forward_alone(int k) {
    const PendingForward& f = slots_[size_t(k)].seq->pending();
    backend_.forward(k, f.ids, f.n, f.pos, f.ring);
  }

  // Samples slot k's token from the logits just computed; a finished request leaves its slot.
  void take(int k) {
    Slot& s = slots_[size_t(k)];
    Sequence& q = *s.seq;
    const Draws d = q.draws();
    const int token = backend_.sample(k, q.options().sampling, d.u);
    const Clock::time_point now = Clock::now();
    q.accept(token, std::chrono::duration<double, std::milli>(now - s.last).count(), s.on_token, stop_);
    s.last = now;
    if (q.finished()) finish(s);
  }

  void finish(Slot& s) {
    events_.on_finish(s.id, s.seq->result());
    s.seq.reset();
  }

  Backend& backend_;
  const BatchEvents& events_;
  const std::atomic<bool>* stop_;
  std::vector<Slot> slots_;
  std::vector<SeqToken> rows_;  // this step's decode rows
  std::vector<int> active_;     // slots running a request this step
  bool more_ = true;            // next() may still give requests
  BatchStats stats_;
};

}  // namespace

BatchStats generate_batch(Backend& backend, const BatchEvents& events, const std::atomic<bool>* stop) {
  Scheduler scheduler(backend, events, stop);
  const BatchStats stats = scheduler.run();
  backend.settle();
  return stats;
}

}  // namespace gpt2
