#include "engine/batch.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "engine/held_prefixes.h"
#include "engine/sequence.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;

// Prefills of at most this many tokens wait to run together (fill()): a rest after a shared
// prefix, a short prompt. The CPU backend runs such chunks as rows of one pass (the row-by-row
// kernels it uses for prompts this short anyway).
constexpr int kShortPrefill = 16;

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
    waiting_.reserve(slots_.size());
    chunks_.reserve(slots_.size());
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

  // Free slots take the next requests, each prompt prefilled after its shared prefix (if any),
  // its first token taken. A long prefill runs at once, so that the requests admitted after it
  // can share its prompt; short ones (a prompt's rest after a shared prefix) wait and run
  // together in one prefill_batch(), one pass over the weights for all of them.
  void fill() {
    do admit();
    while (prefill_waiting() && more_ && !stopping());  // a request done at its first token frees its slot
  }

  void admit() {
    waiting_.clear();
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
        if (s.seq->pending().n <= kShortPrefill) {
          waiting_.push_back(k);
        } else {
          forward_alone(k);
          take(k);
        }
      }
    }
  }

  // The waiting short prefills of admit(), in one prefill_batch(); then their first tokens.
  // Returns whether a request finished there (its slot is free again).
  bool prefill_waiting() {
    if (waiting_.empty()) return false;
    chunks_.clear();
    for (int k : waiting_) {
      const PendingForward& f = slots_[size_t(k)].seq->pending();
      chunks_.push_back(SeqChunk{k, f.ids, f.n, f.pos, f.ring});
    }
    backend_.prefill_batch(chunks_.data(), int(chunks_.size()));
    for (const SeqChunk& c : chunks_) held_.wrote(c.seq, c.ids, c.n, c.pos, c.ring, keeps_prefix(c.seq));
    bool freed = false;
    for (int k : waiting_) {
      take(k);
      freed = freed || !slots_[size_t(k)].seq;
    }
    return freed;
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
  std::vector<int> waiting_;     // slots whose short prefill waits for fill()'s prefill_batch()
  std::vector<SeqChunk> chunks_;  // their prefills
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
