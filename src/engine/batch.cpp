#include "engine/batch.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "engine/held_prefixes.h"
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
  Scheduler(Backend& backend, const BatchEvents& events, const std::atomic<bool>* stop, const BatchOptions& options)
      : backend_(backend), events_(events), stop_(stop), options_(options), slots_(size_t(backend.n_seqs())),
        held_(backend.n_seqs()) {
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

  // Free slots take the next requests: each prompt prefilled alone (after its shared prefix,
  // if any), its first token taken.
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
        const HeldPrefixes::Match shared = shared_prefix(k, r);
        r.options.reused_prefix = shared.n;
        s.seq.emplace(r.prompt, r.options, backend_.kv_capacity(), backend_.context_window());
        s.on_token = [this, id = s.id](int token) { return events_.on_token(id, token); };
        if (s.seq->finished()) {  // nothing to generate (max_new_tokens 0)
          finish(s);
          continue;
        }
        if (shared.seq != k && shared.n > 0) {
          const KvRing ring{backend_.kv_capacity(), 0};
          backend_.copy_kv(shared.seq, k, r.prompt.data(), shared.n, ring);
          held_.wrote(k, r.prompt.data(), shared.n, 0, ring, true);
        }
        stats_.prompt_tokens_reused += shared.n;
        stats_.prompt_tokens_computed += long(r.prompt.size()) - shared.n;
        forward_alone(k);
        take(k);
      }
    }
  }

  // The prefix of r's prompt that slot k can take from a slot's rings (its own included), if
  // reuse is on, worth it and the request keeps a cache; {-1, 0}: none.
  HeldPrefixes::Match shared_prefix(int k, const BatchRequest& r) const {
    if (!options_.prefix_reuse || !r.options.use_cache || r.options.max_new_tokens <= 0) return {};
    const HeldPrefixes::Match m = held_.longest(r.prompt, k);
    return m.n >= kMinReusedPrefix ? m : HeldPrefixes::Match{};
  }

  // Whether slot k's rings hold its tokens' K/V from position 0 (not --no-cache, no context shift).
  bool keeps_prefix(int k) const {
    const Sequence& q = *slots_[size_t(k)].seq;
    return q.options().use_cache && q.result().context_shifts == 0;
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
      for (const SeqToken& t : rows_) held_.wrote(t.seq, &t.id, 1, t.pos, t.ring, keeps_prefix(t.seq));
      ++stats_.decode_steps;
      stats_.decode_rows += long(rows_.size());
      stats_.max_rows = std::max(stats_.max_rows, int(rows_.size()));
    }
    for (int k : active_) take(k);
  }

  void forward_alone(int k) {
    const PendingForward& f = slots_[size_t(k)].seq->pending();
    backend_.forward(k, f.ids, f.n, f.pos, f.ring);
    held_.wrote(k, f.ids, f.n, f.pos, f.ring, keeps_prefix(k));
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
  BatchOptions options_;
  std::vector<Slot> slots_;
  HeldPrefixes held_;           // what each slot's rings hold from position 0
  std::vector<SeqToken> rows_;  // this step's decode rows
  std::vector<int> active_;     // slots running a request this step
  bool more_ = true;            // next() may still give requests
  BatchStats stats_;
};

}  // namespace

BatchStats generate_batch(Backend& backend, const BatchEvents& events, const std::atomic<bool>* stop,
                          const BatchOptions& options) {
  Scheduler scheduler(backend, events, stop, options);
  const BatchStats stats = scheduler.run();
  backend.settle();
  return stats;
}

}  // namespace gpt2
