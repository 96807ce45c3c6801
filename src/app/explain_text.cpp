// explain_text(): the stderr side of --explain. Steps 1-4 are drawn like the classic K/V
// cache figures, Q x K^T = scores for one head, one glyph per cell (at most kMaxCells a side):
//   █ computed new this step, ▒ recomputed (computed in an earlier step too),
//   ░ read from the K/V cache, · masked (a key after the query).
#include <algorithm>
#include <cstdio>

#include "app/explain.h"
#include "app/report.h"

namespace gpt2 {
namespace {

constexpr int kMaxCells = 16;  // a side longer than this is drawn compressed
constexpr int kDiagramSteps = 4;
const char* const kNew = "█";
const char* const kRecomputed = "▒";
const char* const kCached = "░";
const char* const kMasked = "·";

// "1.23 G": a count with an SI prefix.
std::string format_count(double x) {
  char buf[32];
  const char* units[] = {"", " k", " M", " G", " T", " P"};
  int u = 0;
  while (x >= 1000 && u < 5) x /= 1000, ++u;
  std::snprintf(buf, sizeof buf, u ? "%.3g%s" : "%.0f%s", x, units[u]);
  return buf;
}

// Cell i of `cells` covering `n` items stands for its last item (so a new last row shows).
int last_item(int i, int cells, int n) { return int((long long)(i + 1) * n / cells) - 1; }
int first_item(int i, int cells, int n) { return int((long long)i * n / cells); }
int cells_for(int n) { return std::min(n, kMaxCells); }

// One head's Q (t x hd), K^T (hd x L) and scores (t x L) as rows of glyphs.
struct Diagram {
  std::vector<std::string> q, kt, scores;
  int q_width = 4, kt_width = 0, scores_width = 0;
};

Diagram draw(const ExplainStep& s) {
  const int t = s.call.tokens, pos = s.call.pos, L = s.call.context();
  const int first_new = L - s.new_tokens;  // positions >= first_new were never computed before
  auto computed = [&](int p) { return p >= first_new ? kNew : kRecomputed; };
  Diagram d;
  const int rows = cells_for(t), cols = cells_for(L);
  d.kt_width = d.scores_width = cols;
  for (int r = 0; r < rows; ++r) {
    const int query = pos + last_item(r, rows, t);
    std::string q, sc;
    for (int i = 0; i < d.q_width; ++i) q += computed(query);
    for (int c = 0; c < cols; ++c) sc += first_item(c, cols, L) > query ? kMasked : computed(query);
    d.q.push_back(q);
    d.scores.push_back(sc);
  }
  std::string kt;
  for (int c = 0; c < cols; ++c) {
    const int key = last_item(c, cols, L);
    kt += key < pos ? kCached : computed(key);
  }
  d.kt.assign(4, kt);
  return d;
}

std::string pad(const std::string& glyphs, int width, int used) {
  return glyphs + std::string(size_t(std::max(0, width - used)), ' ');
}

std::string diagram_text(const ExplainModel& m, const ExplainStep& s, const char* mode_label) {
  const int t = s.call.tokens, L = s.call.context(), hd = m.head_dim();
  char buf[512];
  std::string out;
  const std::string where = t == 1 ? "position " + std::to_string(s.call.pos)
                                   : "positions " + std::to_string(s.call.pos) + ".." + std::to_string(L - 1);
  std::snprintf(buf, sizeof buf, "explain: step %d %s: %d token%s computed at %s, attending over L = %d\n", s.step,
                mode_label, t, t == 1 ? "" : "s", where.c_str(), L);
  out += buf;
  const Diagram d = draw(s);
  const std::string hq = "Q " + std::to_string(t) + "x" + std::to_string(hd);
  const std::string hk = "K^T " + std::to_string(hd) + "x" + std::to_string(L);
  const std::string hs = "scores " + std::to_string(t) + "x" + std::to_string(L);
  const int wq = std::max<int>(d.q_width, int(hq.size())), wk = std::max<int>(d.kt_width, int(hk.size()));
  out += "    " + pad(hq, wq, int(hq.size())) + "   " + pad(hk, wk, int(hk.size())) + "   " + hs +
         "   (one head; x " + std::to_string(m.n_head) + " heads x " + std::to_string(m.n_layer) + " layers" +
         (std::max(t, L) > kMaxCells ? "; at most " + std::to_string(kMaxCells) + " cells a side drawn" : "") + ")\n";
  const size_t rows = std::max(d.q.size(), d.kt.size());
  const size_t op_row = (std::min(d.q.size(), d.kt.size()) - 1) / 2;  // "x" and "=" beside a row of all three
  for (size_t r = 0; r < rows; ++r) {
    const bool mid = r == op_row;
    out += "    " + (r < d.q.size() ? pad(d.q[r], wq, d.q_width) : std::string(size_t(wq), ' '));
    out += mid ? " x " : "   ";
    out += r < d.kt.size() ? pad(d.kt[r], wk, d.kt_width) : std::string(size_t(wk), ' ');
    out += mid ? " = " : "   ";
    out += (r < d.scores.size() ? d.scores[r] : "") + "\n";
  }
  const StepCost& c = s.cost;
  std::snprintf(buf, sizeof buf, "    FLOPs %s (linear %s, attention %s, lm_head %s); bytes %s (weights %s, K/V read %s, written %s)\n",
                format_count(c.flops()).c_str(), format_count(c.linear).c_str(), format_count(c.attention).c_str(),
                format_count(c.lm_head).c_str(), format_bytes(size_t(c.bytes())).c_str(),
                format_bytes(size_t(c.weights)).c_str(), format_bytes(size_t(c.kv_read)).c_str(),
                format_bytes(size_t(c.kv_write)).c_str());
  out += buf;
  if (s.ms >= 0) {
    std::snprintf(buf, sizeof buf, "    K/V cache held %s; measured %.3f ms: %.2f GFLOP/s, %.2f GB/s\n",
                  format_bytes(size_t(s.kv_held)).c_str(), s.ms, c.flops() / s.ms / 1e6, c.bytes() / s.ms / 1e6);
    out += buf;
  }
  return out;
}

// The steps at 10%, 20%, ..., 100% of the run (every step when there are fewer than 10).
std::vector<size_t> decile_steps(size_t n) {
  std::vector<size_t> idx;
  for (int k = 1; k <= 10; ++k) {
    const size_t i = (size_t(k) * n + 9) / 10;  // ceil(k n / 10), 1-based
    if (i >= 1 && (idx.empty() || idx.back() != i - 1)) idx.push_back(i - 1);
  }
  return idx;
}

std::string table_text(const ExplainRun& run) {
  std::string out = "explain: " + std::string(run.mode()) + ", one row per 10% of the " +
                    std::to_string(run.steps.size()) + " steps\n"
                    "| step |    t |    L | FLOPs    | attention | bytes     | K/V held  |       ms | GFLOP/s |   GB/s |\n"
                    "|------|------|------|----------|-----------|-----------|-----------|----------|---------|--------|\n";
  char buf[256];
  for (size_t i : decile_steps(run.steps.size())) {
    const ExplainStep& s = run.steps[i];
    std::snprintf(buf, sizeof buf, "| %4d | %4d | %4d | %-8s | %-9s | %-9s | %-9s | %8.3f | %7.2f | %6.2f |\n",
                  s.step, s.call.tokens, s.call.context(), format_count(s.cost.flops()).c_str(),
                  format_count(s.cost.attention).c_str(), format_bytes(size_t(s.cost.bytes())).c_str(),
                  format_bytes(size_t(s.kv_held)).c_str(), s.ms, s.cost.flops() / s.ms / 1e6,
                  s.cost.bytes() / s.ms / 1e6);
    out += buf;
  }
  return out;
}

std::string comparison_text(const ExplainRun& run, const ExplainRun& other) {
  const ExplainRun& cache = run.use_cache ? run : other;
  const ExplainRun& none = run.use_cache ? other : run;
  const StepCost a = cache.total(), b = none.total();
  auto time = [](const ExplainRun& r) {
    char buf[64];
    if (!r.measured) return std::string("not run");
    std::snprintf(buf, sizeof buf, "%.1f ms", r.total_ms());
    return std::string(buf);
  };
  char buf[512];
  std::string out = "explain: totals over " + std::to_string(run.steps.size()) +
                    " steps (FLOPs and bytes from the arithmetic, time measured)\n"
                    "|       | with the cache | without the cache | without / with   |\n"
                    "|-------|----------------|-------------------|------------------|\n";
  auto ratio = [](double x, const char* how) {
    char r[64];
    std::snprintf(r, sizeof r, "%.2fx %s", x, how);
    return std::string(r);
  };
  std::snprintf(buf, sizeof buf, "| FLOPs | %-14s | %-17s | %-16s |\n| bytes | %-14s | %-17s | %-16s |\n",
                format_count(a.flops()).c_str(), format_count(b.flops()).c_str(),
                ratio(b.flops() / a.flops(), "predicted").c_str(), format_bytes(size_t(a.bytes())).c_str(),
                format_bytes(size_t(b.bytes())).c_str(), ratio(b.bytes() / a.bytes(), "predicted").c_str());
  out += buf;
  const bool both_timed = cache.measured && none.measured && cache.total_ms() > 0;
  std::snprintf(buf, sizeof buf, "| time  | %-14s | %-17s | %-16s |\n", time(cache).c_str(), time(none).c_str(),
                both_timed ? ratio(none.total_ms() / cache.total_ms(), "measured").c_str() : "-");
  out += buf;
  out += "explain: the FLOPs ratio predicts the time ratio where compute bounds a step, the bytes ratio where "
         "memory bandwidth does; not counted: LayerNorm, GELU, softmax, embeddings, biases, sampling (the time "
         "has them)\n";
  if (!other.measured)
    out += "explain: the " + std::string(other.mode()) + " column is the arithmetic only; "
           "--benchmark --explain measures both modes\n";
  return out;
}

}  // namespace

std::string explain_text(const ExplainModel& m, const ExplainRun& run, const ExplainRun& other) {
  if (run.steps.empty()) return "explain: no steps (nothing was generated)\n";
  std::string out = std::string("explain: legend ") + kNew + " computed new  " + kRecomputed + " recomputed  " +
                    kCached + " read from the K/V cache  " + kMasked + " masked (causal)\n";
  for (const ExplainRun* r : {&run, &other}) {
    if (!r->measured) continue;
    const char* label = r->use_cache ? "(with the cache)" : "(without the cache)";
    for (size_t i = 0; i < r->steps.size() && i < kDiagramSteps; ++i) out += diagram_text(m, r->steps[i], label);
  }
  for (const ExplainRun* r : {&run, &other})
    if (r->measured) out += table_text(*r);
  return out + comparison_text(run, other);
}

}  // namespace gpt2
