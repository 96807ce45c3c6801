// Progress on long work: one line on stderr, redrawn in place ("\r"), only when stderr is a
// terminal and not -q. It shows the mode, run k/N, token i/n, the elapsed time and an ETA from
// the per-token trend measured so far (a least-squares line through the decode tokens' times:
// flat with the cache, growing linearly without it).
#pragma once
#include <chrono>
#include <string>
#include <vector>

namespace gpt2 {

// Progress is drawn only on a terminal, and never with -q.
bool progress_wanted(bool quiet);

// Seconds of expected work before a plain generation shows progress (and before a --benchmark
// announces its no-cache estimate): GPT2_PROGRESS_MIN_S, default 3.
double progress_min_seconds();

// The trend of per-token times: ms(i) = a + b i over decode tokens i >= 1.
struct TokenTrend {
  double a = 0, b = 0;
  bool valid = false;
  static TokenTrend fit(const std::vector<double>& token_ms);  // token_ms[0] (the prefill) is skipped
  double sum(long long from, long long to) const;              // predicted ms of tokens [from, to)
};

class Progress {
 public:
  // `enabled`: stderr is a terminal and not -q. `min_expected_s`: stay hidden until the run's
  // elapsed + predicted remaining time reaches it (0: show from the first token).
  Progress(bool enabled, double min_expected_s);
  ~Progress() { clear(); }

  // Starts a run of `n_tokens` tokens: `label` ("benchmark no-cache", "generating"), run k of
  // `runs` (k = 0: the warm-up; runs = 0: no run counter).
  void begin_run(const std::string& label, int k, int runs, int n_tokens);
  void tick();                                // after each token
  const std::vector<double>& token_ms() const { return token_ms_; }
  void line(const std::string& text);         // a permanent line above the progress line
  void clear();                               // erase the progress line
  bool enabled() const { return enabled_; }

 private:
  using clock = std::chrono::steady_clock;
  double eta_ms() const;
  void draw();

  bool enabled_;
  double min_expected_ms_;
  bool shown_ = false;
  std::string label_;
  int k_ = 0, runs_ = 0, n_ = 0;
  std::vector<double> token_ms_;              // this run's tokens so far
  std::vector<double> finished_run_ms_;       // earlier timed runs of the same label
  clock::time_point start_, last_tick_, last_draw_;
};

// The one line a --benchmark prints before its no-cache runs take long: the total predicted
// for the warm-up and `runs` runs of `n_tokens` tokens from the trend of the first steps.
std::string no_cache_estimate_line(const std::vector<double>& first_token_ms, int n_tokens, int runs);

}  // namespace gpt2
