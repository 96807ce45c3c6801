#include "app/explain.h"

#include <algorithm>

#include "base/error.h"
#include "engine/kv_format.h"

namespace gpt2 {

ExplainModel explain_model(const GPT2Config& config, const BackendInfo& info, int kv_capacity) {
  ExplainModel m;
  m.n_layer = config.n_layer;
  m.n_head = config.n_head;
  m.n_embd = config.n_embd;
  m.n_inner = config.n_inner;
  m.vocab_size = config.vocab_size;
  m.weight_bytes = double(info.weight_bytes);
  m.kv_ring_bytes = double(info.kv_bytes);
  m.kv_format = compute_dtype_name(info.kv_dtype);
  // A row in the rings' format: whole bytes per row, not per element (int8 rows end in scales).
  const size_t row = kv_row_bytes(info.kv_dtype, config.n_embd, config.n_head);
  m.kv_row_bytes = double(row);
  if (info.kv_bytes != size_t(2) * size_t(config.n_layer) * size_t(kv_capacity) * row)
    throw Error("internal: K/V rings of " + std::to_string(info.kv_bytes) + " bytes are not 2 x n_layer x " +
                std::to_string(kv_capacity) + " rows of " + std::to_string(row) + " bytes");
  return m;
}

double scored_pairs(const ForwardCall& f) {
  const double t = f.tokens, pos = f.pos;
  return t * pos + t * (t + 1) / 2;  // query i (0-based) scores pos + i + 1 keys
}

StepCost step_cost(const ExplainModel& m, const ForwardCall& f) {
  const double C = m.n_embd, H = m.n_inner, layers = m.n_layer, r = m.kv_row_bytes;
  StepCost c;
  c.linear = 2 * double(f.tokens) * (4 * C * C + 2 * C * H) * layers;
  c.attention = 4 * C * scored_pairs(f) * layers;
  c.lm_head = 2 * C * double(m.vocab_size);
  c.weights = m.weight_bytes;
  c.kv_read = 2 * layers * double(f.context()) * r;
  c.kv_write = 2 * layers * double(f.tokens) * r;
  return c;
}

double kv_held_bytes(const ExplainModel& m, const ForwardCall& f, bool use_cache) {
  return use_cache ? 2.0 * m.n_layer * double(f.context()) * m.kv_row_bytes : 0.0;
}

std::vector<ForwardCall> other_mode_forwards(const std::vector<ForwardCall>& forwards, bool use_cache) {
  std::vector<ForwardCall> other;
  for (size_t i = 0; i < forwards.size(); ++i) {
    const int L = forwards[i].context();
    // With the cache, a context that did not grow by one token is the prompt or a shift.
    const bool recompute = i == 0 || L != forwards[i - 1].context() + 1;
    const bool other_uses_cache = !use_cache;
    other.push_back(other_uses_cache && !recompute ? ForwardCall{1, L - 1} : ForwardCall{L, 0});
  }
  return other;
}

StepCost ExplainRun::total() const {
  StepCost t;
  for (const ExplainStep& s : steps) {
    t.linear += s.cost.linear;
    t.attention += s.cost.attention;
    t.lm_head += s.cost.lm_head;
    t.weights += s.cost.weights;
    t.kv_read += s.cost.kv_read;
    t.kv_write += s.cost.kv_write;
  }
  return t;
}

double ExplainRun::total_ms() const {
  double ms = 0;
  for (const ExplainStep& s : steps) ms += s.ms;
  return ms;
}

ExplainRun explain_run(const ExplainModel& m, const std::vector<ForwardCall>& forwards,
                       const std::vector<double>& ms, bool use_cache) {
  if (!ms.empty() && ms.size() != forwards.size())
    throw Error("internal: explain_run needs one time per forward");
  ExplainRun run;
  run.use_cache = use_cache;
  run.measured = !ms.empty();
  for (size_t i = 0; i < forwards.size(); ++i) {
    ExplainStep s;
    s.step = int(i) + 1;
    s.call = forwards[i];
    s.new_tokens = i == 0 ? forwards[i].tokens : 1;
    s.cost = step_cost(m, forwards[i]);
    s.kv_held = kv_held_bytes(m, forwards[i], use_cache);
    s.ms = run.measured ? ms[i] : -1;
    run.steps.push_back(s);
  }
  return run;
}

ExplainPair explain_generation(const ExplainModel& m, const GenerationResult& r, bool use_cache) {
  return {explain_run(m, r.forwards, r.token_ms, use_cache),
          explain_run(m, other_mode_forwards(r.forwards, use_cache), {}, !use_cache)};
}

ExplainRun explain_runs(const ExplainModel& m, const std::vector<GenerationResult>& runs, bool use_cache) {
  if (runs.empty()) return explain_run(m, {}, {}, use_cache);
  std::vector<double> mean_ms(runs.front().token_ms.size(), 0.0);
  for (const GenerationResult& r : runs) {
    if (r.forwards != runs.front().forwards || r.token_ms.size() != mean_ms.size())
      throw Error("internal: --benchmark runs of one mode made different forward passes");
    for (size_t i = 0; i < mean_ms.size(); ++i) mean_ms[i] += r.token_ms[i] / double(runs.size());
  }
  return explain_run(m, runs.front().forwards, mean_ms, use_cache);
}

namespace {

// a / b, or null when b is 0 (an empty run).
nlohmann::json ratio(double a, double b) { return b > 0 ? nlohmann::json(a / b) : nlohmann::json(); }

nlohmann::json cost_json(const StepCost& c) {
  return {{"flops", {{"linear", c.linear}, {"attention", c.attention}, {"lm_head", c.lm_head}, {"total", c.flops()}}},
          {"bytes", {{"weights", c.weights}, {"kv_read", c.kv_read}, {"kv_write", c.kv_write}, {"total", c.bytes()}}}};
}

// GFLOP/s and GB/s of `c` done in `ms` (FLOPs / ms / 1e6 = GFLOP/s).
void add_rates(nlohmann::json& j, const StepCost& c, double ms) {
  j["ms"] = ms;
  j["gflop_per_s"] = ms > 0 ? c.flops() / ms / 1e6 : 0.0;
  j["gb_per_s"] = ms > 0 ? c.bytes() / ms / 1e6 : 0.0;
}

nlohmann::json step_json(const ExplainModel& m, const ExplainStep& s, bool measured) {
  const int t = s.call.tokens, L = s.call.context(), hd = m.head_dim();
  nlohmann::json j = {{"step", s.step},
                      {"tokens_computed", t},
                      {"position", s.call.pos},
                      {"context", L},
                      {"new_tokens", s.new_tokens},
                      {"shapes", {{"q", {t, hd}}, {"k_t", {hd, L}}, {"scores", {t, L}},
                                  {"heads", m.n_head}, {"layers", m.n_layer}}},
                      {"kv_cache_bytes", s.kv_held}};
  j.update(cost_json(s.cost));
  if (measured) add_rates(j, s.cost, s.ms);
  return j;
}

nlohmann::json mode_json(const ExplainModel& m, const ExplainRun& run) {
  nlohmann::json steps = nlohmann::json::array();
  double peak_held = 0, tokens = 0;
  for (const ExplainStep& s : run.steps) {
    steps.push_back(step_json(m, s, run.measured));
    peak_held = std::max(peak_held, s.kv_held);
    tokens += s.call.tokens;
  }
  nlohmann::json totals = {{"steps", run.steps.size()}, {"tokens_computed", tokens}, {"kv_cache_bytes_peak", peak_held}};
  totals.update(cost_json(run.total()));
  if (run.measured) add_rates(totals, run.total(), run.total_ms());
  return {{"mode", run.mode()}, {"measured", run.measured}, {"per_step", steps}, {"totals", totals}};
}

}  // namespace

nlohmann::json explain_json(const ExplainModel& m, const ExplainRun& run, const ExplainRun& other) {
  const ExplainRun& cache = run.use_cache ? run : other;
  const ExplainRun& no_cache = run.use_cache ? other : run;
  const bool both_timed = run.measured && other.measured;
  nlohmann::json j = mode_json(m, run);
  j["schema"] = "gpt2-gen-explain/1";
  j["model"] = {{"n_layer", m.n_layer}, {"n_head", m.n_head}, {"n_embd", m.n_embd}, {"n_inner", m.n_inner},
                {"head_dim", m.head_dim()}, {"vocab_size", m.vocab_size}, {"weight_bytes", m.weight_bytes},
                {"kv_format", m.kv_format}, {"kv_row_bytes", m.kv_row_bytes},
                {"kv_bytes_per_element", m.kv_row_bytes / m.n_embd}, {"kv_ring_bytes", m.kv_ring_bytes}};
  j["other_mode"] = mode_json(m, other);
  j["comparison"] = {{"flops_ratio", ratio(no_cache.total().flops(), cache.total().flops())},
                     {"bytes_ratio", ratio(no_cache.total().bytes(), cache.total().bytes())},
                     {"time_ratio", both_timed ? ratio(no_cache.total_ms(), cache.total_ms()) : nlohmann::json()}};
  return j;
}

}  // namespace gpt2
