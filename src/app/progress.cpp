#include "app/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "app/report.h"

namespace gpt2 {
namespace {

constexpr double kRedrawMs = 100;  // at most ten redraws a second

std::string seconds_text(double ms) {
  char buf[32];
  const double s = ms / 1000;
  if (s < 100) std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 6000) std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, int(s) / 60 % 60);
  return buf;
}

}  // namespace

bool progress_wanted(bool quiet) { return !quiet && isatty(STDERR_FILENO) == 1; }

double progress_min_seconds() {
  const char* env = std::getenv("GPT2_PROGRESS_MIN_S");
  if (!env || !*env) return 3.0;
  char* end = nullptr;
  const double v = std::strtod(env, &end);
  return end && *end == '\0' && v >= 0 ? v : 3.0;
}

TokenTrend TokenTrend::fit(const std::vector<double>& token_ms) {
  TokenTrend t;
  const size_t n = token_ms.size() > 1 ? token_ms.size() - 1 : 0;  // decode tokens 1..n
  if (n == 0) return t;
  double mean_i = 0, mean_y = 0;
  for (size_t i = 1; i <= n; ++i) mean_i += double(i), mean_y += token_ms[i];
  mean_i /= double(n);
  mean_y /= double(n);
  double sxy = 0, sxx = 0;
  for (size_t i = 1; i <= n; ++i) {
    sxy += (double(i) - mean_i) * (token_ms[i] - mean_y);
    sxx += (double(i) - mean_i) * (double(i) - mean_i);
  }
  // A falling trend is noise (no mode gets faster per token): predict the mean instead.
  t.b = sxx > 0 && sxy > 0 ? sxy / sxx : 0;
  t.a = mean_y - t.b * mean_i;
  t.valid = true;
  return t;
}

double TokenTrend::sum(long long from, long long to) const {
  if (to <= from) return 0;
  const double count = double(to - from);
  const double s = count * a + b * count * double(from + to - 1) / 2;
  return s > 0 ? s : 0;
}

Progress::Progress(bool enabled, double min_expected_s) : enabled_(enabled), min_expected_ms_(1000 * min_expected_s) {}

void Progress::begin_run(const std::string& label, int k, int runs, int n_tokens) {
  if (label != label_) finished_run_ms_.clear();
  else if (!token_ms_.empty()) {
    double ms = 0;
    for (double x : token_ms_) ms += x;
    finished_run_ms_.push_back(ms);
  }
  label_ = label;
  k_ = k;
  runs_ = runs;
  n_ = n_tokens;
  token_ms_.clear();
  start_ = last_tick_ = clock::now();
}

double Progress::eta_ms() const {
  const TokenTrend trend = TokenTrend::fit(token_ms_);
  if (!trend.valid) return -1;
  const long long done = (long long)token_ms_.size();
  double run_ms = token_ms_[0] + trend.sum(1, n_);
  if (!finished_run_ms_.empty()) {
    run_ms = 0;
    for (double x : finished_run_ms_) run_ms += x;
    run_ms /= double(finished_run_ms_.size());
  }
  return trend.sum(done, n_) + double(runs_ - k_) * run_ms;
}

void Progress::tick() {
  const clock::time_point now = clock::now();
  token_ms_.push_back(std::chrono::duration<double, std::milli>(now - last_tick_).count());
  last_tick_ = now;
  if (!enabled_) return;
  const double elapsed = std::chrono::duration<double, std::milli>(now - start_).count();
  const double eta = eta_ms();
  if (!shown_ && elapsed + (eta > 0 ? eta : 0) < min_expected_ms_) return;
  if (shown_ && std::chrono::duration<double, std::milli>(now - last_draw_).count() < kRedrawMs &&
      int(token_ms_.size()) < n_)
    return;
  shown_ = true;
  last_draw_ = now;
  draw();
}

void Progress::draw() {
  std::string text = "\r\033[K" + label_;
  if (runs_ > 0) text += k_ == 0 ? ": warm-up" : ": run " + std::to_string(k_) + "/" + std::to_string(runs_);
  text += ", token " + std::to_string(token_ms_.size()) + "/" + std::to_string(n_);
  text += ", " + seconds_text(std::chrono::duration<double, std::milli>(last_tick_ - start_).count()) + " elapsed";
  const double eta = eta_ms();
  if (eta >= 0) text += ", ETA " + seconds_text(eta);
  std::fputs(text.c_str(), stderr);
  std::fflush(stderr);
}

void Progress::clear() {
  if (!shown_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
}

void Progress::line(const std::string& text) {
  if (!enabled_) return;
  clear();
  std::fputs((text + "\n").c_str(), stderr);
  if (shown_) draw();
  else std::fflush(stderr);
}

std::string no_cache_estimate_line(const std::vector<double>& first_token_ms, int n_tokens, int runs) {
  const TokenTrend trend = TokenTrend::fit(first_token_ms);
  const double run_ms = (first_token_ms.empty() ? 0 : first_token_ms[0]) + trend.sum(1, n_tokens);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "gpt2-gen: benchmark no-cache: about %s estimated for the warm-up and %s of %d tokens "
                "(from the first %zu steps: token i takes %.2f + %.3f i ms)",
                seconds_text(double(runs + 1) * run_ms).c_str(), count_of(runs, "run").c_str(), n_tokens,
                first_token_ms.size(), trend.a, trend.b);
  return buf;
}

}  // namespace gpt2
