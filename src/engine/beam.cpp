#include "engine/beam.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "base/error.h"
#include "engine/beam_candidates.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// transformers adds this to the scores of candidates it must not pick (a beam that just ended
// cannot run on, unless too few others are left).
constexpr double kExcluded = -1.0e9;

struct Running {
  std::vector<int> tokens;  // the prompt and the generated tokens: the processors' context
  double score = 0;         // summed log-probabilities of the generated tokens
};

// One search over one backend; run() once.
class BeamSearch {
 public:
  BeamSearch(Backend& backend, const std::vector<int>& prompt, const GenerationOptions& gen, const BeamOptions& beams,
             const BeamStopRule& stop_rule)
      : backend_(backend), gen_(gen), opt_(beams), stop_rule_(stop_rule), P_(int(prompt.size())) {
    if (prompt.empty()) throw Error("internal: beam search needs a non-empty prompt");
    check_prompt_fits(prompt.size(), backend.context_window());
    // As Sequence does: a token may be generated while the context (prompt and tokens before
    // it) fits the window, so at most window - P + 1 of them.
    const int by_context = backend.context_window() - P_ + 1;
    max_len_ = std::min(gen.max_new_tokens, by_context);
    context_limited_ = by_context < gen.max_new_tokens;
    running_.push_back(Running{prompt, 0.0});
  }

  BeamResult run(int vocab, const std::atomic<bool>* stop) {
    V_ = vocab;
    logits_.resize(size_t(opt_.num_beams) * size_t(V_));
    BeamResult r;
    if (max_len_ <= 0) {
      r.sequences.push_back(BeamSequence{{}, 0.0, context_limited_ ? FinishReason::Context : FinishReason::Length});
      return r;
    }
    for (int step = 0;; ++step) {
      Clock::time_point t = Clock::now();
      forward(step);
      r.timing.forward_ms.push_back(ms_since(t));
      r.timing.context.push_back(P_ + step);
      t = Clock::now();
      const bool go_on = advance(select());
      r.timing.select_ms.push_back(ms_since(t));
      const bool interrupted = go_on && stop && stop->load();
      t = Clock::now();
      if (go_on && !interrupted && gen_.use_cache) backend_.reorder(parents_.data(), opt_.num_beams, P_ + cur_ - 1);
      r.timing.reorder_ms.push_back(ms_since(t));
      if (interrupted) {
        finish_running_as(FinishReason::Interrupted);
        r.interrupted = true;
      }
      if (!go_on || interrupted) break;
    }
    backend_.settle();
    const size_t k = std::min(hyps_.size(), size_t(opt_.num_return_sequences));
    r.sequences.assign(hyps_.begin(), hyps_.begin() + long(k));
    return r;
  }

 private:
  // Computes the running beams' next-token logits: the prompt once into sequence 0 at step 0;
  // then, with the cache, the N new tokens in one decode_batch() (their histories reordered at
  // the end of the previous step), without it each beam's whole sequence from position 0.
  void forward(int step) {
    const KvRing ring{backend_.kv_capacity(), 0};
    if (step == 0) {
      const std::vector<int>& prompt = running_[0].tokens;
      backend_.forward(0, prompt.data(), P_, 0, ring);
    } else if (gen_.use_cache) {
      rows_.clear();
      for (int j = 0; j < int(running_.size()); ++j)
        rows_.push_back(SeqToken{j, running_[size_t(j)].tokens.back(), P_ + cur_ - 1, ring});
      backend_.decode_batch(rows_.data(), int(rows_.size()));
    } else {
      for (int j = 0; j < int(running_.size()); ++j) {
        const std::vector<int>& t = running_[size_t(j)].tokens;
        backend_.forward(j, t.data(), int(t.size()), 0, ring);
      }
    }
  }

  // The best 2N continuations of the running beams (beam_candidates.h).
  const std::vector<BeamCandidate>& select() {
    std::vector<BeamRow> rows;
    for (int j = 0; j < int(running_.size()); ++j) {
      float* l = logits_.data() + size_t(j) * size_t(V_);
      backend_.read_logits(l, j);
      const Running& b = running_[size_t(j)];
      rows.push_back(BeamRow{l, b.score, b.tokens.data(), int(b.tokens.size())});
    }
    select_candidates(rows, V_, gen_.sampling.penalties, 2 * opt_.num_beams, scratch_, candidates_);
    return candidates_;
  }

  // Why candidate c ends its beam at length L, or Length when it does not (ends = false).
  FinishReason ending(const BeamCandidate& c, int L, bool* ends) {
    *ends = true;
    if (!gen_.ignore_eos && c.id == gen_.eos_id) return FinishReason::Eos;
    if (stop_rule_) {
      generated_.assign(running_[size_t(c.beam)].tokens.begin() + P_, running_[size_t(c.beam)].tokens.end());
      generated_.push_back(c.id);
      if (stop_rule_(generated_)) return FinishReason::Stop;
    }
    if (L == max_len_) return context_limited_ ? FinishReason::Context : FinishReason::Length;
    *ends = false;
    return FinishReason::Length;
  }

  double length_normalized(double sum, int L) const { return sum / std::pow(double(L), double(opt_.length_penalty)); }

  // Takes a hypothesis into the N best (a later one ranks after an equal earlier one).
  void add_hypothesis(const std::vector<int>& tokens, double score, FinishReason finish) {
    BeamSequence h{std::vector<int>(tokens.begin() + P_, tokens.end()), score, finish};
    auto at = std::upper_bound(hyps_.begin(), hyps_.end(), score,
                               [](double s, const BeamSequence& x) { return s > x.score; });
    hyps_.insert(at, std::move(h));
    if (int(hyps_.size()) > opt_.num_beams) hyps_.pop_back();
  }

  // The step after selection: hypotheses, the next running beams and their parents, and whether
  // the search goes on.
  bool advance(const std::vector<BeamCandidate>& cands) {
    const int N = opt_.num_beams, L = cur_ + 1;
    std::vector<char> ends(cands.size());
    std::vector<double> adjusted(cands.size());
    bool all_end = true;
    for (size_t k = 0; k < cands.size(); ++k) {
      bool e = false;
      const FinishReason why = ending(cands[k], L, &e);
      ends[k] = e;
      all_end = all_end && e;
      adjusted[k] = cands[k].score + (e ? kExcluded : 0.0);
      if (e && int(k) < N) {  // only the first N candidates may finish (transformers' top_num_beam_mask)
        std::vector<int> tokens = running_[size_t(cands[k].beam)].tokens;
        tokens.push_back(cands[k].id);
        add_hypothesis(tokens, length_normalized(cands[k].score, L), why);
      }
    }
    cur_ = L;
    if (all_end) return false;
    // The next running beams: the best N by score, those that just ended after all others.
    std::vector<int> order(cands.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return adjusted[size_t(a)] > adjusted[size_t(b)]; });
    std::vector<Running> next;
    parents_.assign(size_t(N), 0);
    for (int j = 0; j < N; ++j) {
      const BeamCandidate& c = cands[size_t(order[size_t(j)])];
      Running b{running_[size_t(c.beam)].tokens, adjusted[size_t(order[size_t(j)])]};
      b.tokens.push_back(c.id);
      next.push_back(std::move(b));
      parents_[size_t(j)] = c.beam;
    }
    running_ = std::move(next);
    return !search_done();
  }

  // transformers' stop of the whole search once N hypotheses exist: early_stopping true stops
  // at once; otherwise when the best running beam, judged at the current length (false, or a
  // length_penalty <= 0) or at the longest allowed one ("never"), cannot beat the worst of them.
  bool search_done() {
    if (int(hyps_.size()) < opt_.num_beams) return false;
    if (opt_.early_stopping == EarlyStopping::True) return true;
    const bool longest = opt_.early_stopping == EarlyStopping::Never && opt_.length_penalty > 0.0f;
    const double best = length_normalized(running_[0].score, longest ? max_len_ : cur_);
    return !(best > hyps_.back().score);
  }

  void finish_running_as(FinishReason why) {
    for (const Running& b : running_) add_hypothesis(b.tokens, length_normalized(b.score, cur_), why);
  }

  Backend& backend_;
  const GenerationOptions& gen_;
  const BeamOptions& opt_;
  const BeamStopRule& stop_rule_;
  const int P_;  // prompt tokens
  int V_ = 0;   // vocabulary
  int max_len_ = 0;  // generated tokens allowed
  bool context_limited_ = false;
  int cur_ = 0;      // tokens generated by every running beam
  std::vector<Running> running_;  // running_[j] is backend sequence j
  std::vector<int> parents_;      // (N) the last step's reorder
  std::vector<BeamSequence> hyps_;  // finished, best first, at most N
  std::vector<float> logits_;       // (N, V)
  std::vector<SeqToken> rows_;
  std::vector<BeamCandidate> candidates_;
  CandidateScratch scratch_;
  std::vector<int> generated_;
};

}  // namespace

const char* early_stopping_name(EarlyStopping e) {
  switch (e) {
    case EarlyStopping::False: return "false";
    case EarlyStopping::True: return "true";
    case EarlyStopping::Never: return "never";
  }
  return "?";
}

void check_beam_options(const BeamOptions& b, const GenerationOptions& gen, int backend_seqs) {
  if (b.num_beams < 1) throw Error("--num-beams must be >= 1, got " + std::to_string(b.num_beams));
  if (b.num_return_sequences < 1 || b.num_return_sequences > b.num_beams)
    throw Error("--num-return-sequences must be in [1, --num-beams = " + std::to_string(b.num_beams) + "], got " +
                std::to_string(b.num_return_sequences));
  if (backend_seqs < b.num_beams)
    throw Error("internal: beam search of " + std::to_string(b.num_beams) + " beams on a backend of " +
                std::to_string(backend_seqs) + " sequences");
  if (!gen.sampling.greedy())
    throw Error("beam search does not sample (beam sampling is not supported): use --temperature 0");
}

BeamResult beam_search(Backend& backend, const std::vector<int>& prompt, const GenerationOptions& gen,
                       const BeamOptions& beams, const BeamStopRule& stop_rule, const std::atomic<bool>* stop) {
  check_beam_options(beams, gen, backend.n_seqs());
  BeamSearch search(backend, prompt, gen, beams, stop_rule);
  return search.run(backend.vocab_size(), stop);
}

GenerationResult BeamResult::as_generation() const {
  GenerationResult g;
  if (!sequences.empty()) {
    g.generated = sequences[0].tokens;
    g.finish = sequences[0].finish;
  }
  for (size_t i = 0; i < timing.forward_ms.size(); ++i) {
    const double ms = timing.forward_ms[i] + timing.select_ms[i] + timing.reorder_ms[i];
    g.token_ms.push_back(ms);
    (i == 0 ? g.prefill_ms : g.decode_ms) += ms;
  }
  return g;
}

}  // namespace gpt2
