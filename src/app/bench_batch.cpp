#include "app/bench_batch.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "app/backend_choice.h"
#include "app/batch_run.h"
#include "app/bench.h"
#include "app/explain.h"
#include "app/gemm_rate.h"
#include "app/report.h"
#include "base/error.h"
#include "engine/batch.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// The peak resident memory of one batch size: Linux resets the process's high-water mark when
// "5" is written to /proc/self/clear_refs, and /proc/self/status reports it as VmHWM. Where the
// reset is refused, the peak is the process's since it started (peak_memory_scope says which).
bool reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  return bool(f << "5") && bool(f.flush());
}

size_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;  // kB
  return peak_host_bytes();
}

// One timed batch: B requests of the same prompt and options, all given at once.
struct BatchRecord {
  double wall_ms = 0, decode_ms = 0;   // decode: from the last request's first token to the end
  long tokens = 0, decode_tokens = 0;  // generated; decode_tokens leaves out each first token
  double decode_flops = 0;             // explain's step_cost() of every decode forward
  std::vector<double> ttft_ms;         // (B) each request's first token, from the batch's start
  std::vector<double> token_ms;        // (B * (n - 1)) every request's later tokens' latencies
  std::vector<int> generated;          // request 0's tokens
  bool requests_identical = true;      // every request generated request 0's tokens
  double tokens_per_s() const { return wall_ms > 0 ? 1000.0 * double(tokens) / wall_ms : 0; }
  double decode_tokens_per_s() const { return decode_ms > 0 ? 1000.0 * double(decode_tokens) / decode_ms : 0; }
  double decode_gflop_per_s() const { return decode_ms > 0 ? decode_flops / decode_ms / 1e6 : 0; }
};

BatchRecord run_batch_once(Backend& backend, const std::vector<int>& prompt, const GenerationOptions& gen, int B,
                           const ExplainModel& em, double* kv_held) {
  std::vector<GenerationResult> results(static_cast<size_t>(B));
  BatchRecord rec;
  rec.ttft_ms.assign(size_t(B), -1);
  int given = 0;
  BatchEvents ev;
  ev.next = [&](BatchRequest& r) {
    if (given == B) return false;
    ++given;
    r.prompt = prompt;
    r.options = gen;
    return true;
  };
  const auto t0 = Clock::now();
  ev.on_token = [&](int id, int) {
    if (rec.ttft_ms[size_t(id)] < 0) rec.ttft_ms[size_t(id)] = ms_since(t0);
    return true;
  };
  ev.on_finish = [&](int id, GenerationResult& r) { results[size_t(id)] = std::move(r); };
  BatchOptions options;
  options.prefix_reuse = false;  // B prefills of the prompt, as llama-batched-bench's "prompt not shared"
  generate_batch(backend, ev, nullptr, options);
  rec.wall_ms = ms_since(t0);
  rec.decode_ms = rec.wall_ms - *std::max_element(rec.ttft_ms.begin(), rec.ttft_ms.end());
  rec.generated = results[0].generated;
  *kv_held = 0;
  for (const GenerationResult& r : results) {
    rec.tokens += long(r.generated.size());
    rec.decode_tokens += r.decode_tokens();
    rec.token_ms.insert(rec.token_ms.end(), r.token_ms.begin() + (r.token_ms.empty() ? 0 : 1), r.token_ms.end());
    for (size_t i = 1; i < r.forwards.size(); ++i) rec.decode_flops += step_cost(em, r.forwards[i]).flops();
    if (!r.forwards.empty()) *kv_held += kv_held_bytes(em, r.forwards.back(), gen.use_cache);
    rec.requests_identical = rec.requests_identical && r.generated == rec.generated;
  }
  return rec;
}

// One (batch size, mode) point: its timed runs and what it held.
struct Point {
  int B = 0;
  bool use_cache = true;
  std::vector<BatchRecord> runs;
  size_t kv_ring_bytes = 0, weight_bytes = 0, peak_bytes = 0;
  double kv_held_bytes = 0;
  const char* name() const { return use_cache ? "cache" : "no-cache"; }
};

struct PointSummary {
  double tps_mean = 0, tps_std = 0, decode_tps_mean = 0, decode_tps_std = 0, gflops_mean = 0;
  double p50_ms = 0, p99_ms = 0, ttft_p50_ms = 0, ttft_max_ms = 0;
};

PointSummary summarize_point(const Point& p) {
  std::vector<double> tps, decode_tps, gflops, latencies, ttft;
  for (const BatchRecord& r : p.runs) {
    tps.push_back(r.tokens_per_s());
    decode_tps.push_back(r.decode_tokens_per_s());
    gflops.push_back(r.decode_gflop_per_s());
    latencies.insert(latencies.end(), r.token_ms.begin(), r.token_ms.end());
    ttft.insert(ttft.end(), r.ttft_ms.begin(), r.ttft_ms.end());
  }
  std::sort(latencies.begin(), latencies.end());
  std::sort(ttft.begin(), ttft.end());
  PointSummary s;
  s.tps_mean = mean_of(tps);
  s.tps_std = population_std(tps);
  s.decode_tps_mean = mean_of(decode_tps);
  s.decode_tps_std = population_std(decode_tps);
  s.gflops_mean = mean_of(gflops);
  s.p50_ms = nearest_rank_percentile(latencies, 50);
  s.p99_ms = nearest_rank_percentile(latencies, 99);
  s.ttft_p50_ms = nearest_rank_percentile(ttft, 50);
  s.ttft_max_ms = ttft.empty() ? 0 : ttft.back();
  return s;
}

json point_json(const Point& p, bool peak_reset) {
  json runs = json::array();
  for (const BatchRecord& r : p.runs)
    runs.push_back({{"wall_s", r.wall_ms / 1000}, {"decode_s", r.decode_ms / 1000}, {"tokens", r.tokens},
                    {"decode_tokens", r.decode_tokens}, {"tokens_per_s", r.tokens_per_s()},
                    {"decode_tokens_per_s", r.decode_tokens_per_s()}, {"decode_flops", r.decode_flops},
                    {"decode_gflop_per_s", r.decode_gflop_per_s()}, {"ttft_ms", r.ttft_ms},
                    {"token_ms", r.token_ms}, {"generated_ids", r.generated},
                    {"requests_identical", r.requests_identical}});
  const PointSummary s = summarize_point(p);
  return {{"batch_size", p.B}, {"name", p.name()}, {"kv_cache", p.use_cache}, {"requests", p.B},
          {"kv_ring_bytes", p.kv_ring_bytes}, {"kv_held_bytes", p.kv_held_bytes}, {"weight_bytes", p.weight_bytes},
          {"peak_memory_bytes", p.peak_bytes}, {"peak_memory_scope", peak_reset ? "batch_size" : "process"},
          {"runs", runs},
          {"summary",
           {{"tokens_per_s_mean", s.tps_mean}, {"tokens_per_s_std", s.tps_std},
            {"decode_tokens_per_s_mean", s.decode_tps_mean}, {"decode_tokens_per_s_std", s.decode_tps_std},
            {"decode_gflop_per_s_mean", s.gflops_mean}, {"token_ms_p50", s.p50_ms}, {"token_ms_p99", s.p99_ms},
            {"ttft_ms_p50", s.ttft_p50_ms}, {"ttft_ms_max", s.ttft_max_ms}}}};
}

// The machine's fp32 GEMM rate at each batch size (the CPU only), beside each cache point.
struct GemmPoint {
  GemmRate rate;
  double step_gflop_per_s = 0;  // the cache mode's decode step at the same B
};

std::string table(const std::vector<Point>& points, const std::vector<GemmPoint>& gemm) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "x B=%-2d", points.front().B);  // decode tokens/s over the first size's
  std::string out =
      "|    B | mode     | tokens/s  | decode tok/s | " + std::string(buf) + "| p50 ms  | p99 ms  | TTFT p50 ms | TTFT max ms "
      "| K/V ring   | K/V held   | peak memory | step GFLOP/s | fp32 GEMM GFLOP/s |\n"
      "|------|----------|-----------|--------------|-------|---------|---------|-------------|-------------"
      "|------------|------------|-------------|--------------|-------------------|\n";
  double base[2] = {0, 0};  // the first size's decode tokens/s, per mode
  for (const Point& p : points) {
    const PointSummary s = summarize_point(p);
    double& b1 = base[p.use_cache ? 0 : 1];
    if (b1 == 0) b1 = s.decode_tps_mean;
    std::string gemm_cell = "-";
    for (const GemmPoint& g : gemm)
      if (p.use_cache && g.rate.rows == p.B) {
        std::snprintf(buf, sizeof buf, "%.1f (%.0f%%)", g.rate.gflop_per_s(), 100 * s.gflops_mean / g.rate.gflop_per_s());
        gemm_cell = buf;
      }
    std::snprintf(buf, sizeof buf,
                  "| %4d | %-8s | %9.1f | %12.1f | %5.2f | %7.2f | %7.2f | %11.1f | %11.1f | %10s | %10s | %11s "
                  "| %12.1f | %17s |\n",
                  p.B, p.name(), s.tps_mean, s.decode_tps_mean, b1 > 0 ? s.decode_tps_mean / b1 : 0.0, s.p50_ms,
                  s.p99_ms, s.ttft_p50_ms, s.ttft_max_ms, format_bytes(p.kv_ring_bytes).c_str(),
                  format_bytes(size_t(p.kv_held_bytes)).c_str(), format_bytes(p.peak_bytes).c_str(), s.gflops_mean,
                  gemm_cell.c_str());
    out += buf;
  }
  return out;
}

// Measures one batch size: a backend of B sequences, a short warm-up, then each mode's runs.
void measure_batch_size(const BatchBenchSetup& setup, const CliOptions& o, GenerationOptions gen, int B,
                        bool* peak_reset, std::vector<Point>& points) {
  *peak_reset = reset_peak_rss();
  BackendOptions bo = setup.backend;
  bo.n_seqs = B;
  std::string note;
  std::unique_ptr<Backend> backend = make_backend(*setup.model, bo, &note);
  if (!o.quiet && !note.empty()) std::cerr << "gpt2-gen: B=" << B << ": " << note << "\n";
  const BackendInfo& info = backend->info();
  // The rings of all B sequences: explain_model() finds the bytes per K/V element from their size.
  const ExplainModel em = explain_model(setup.model->config, info, backend->kv_capacity() * B);
  for (bool cache : {true, false}) {
    gen.use_cache = cache;
    Point p;
    p.B = B;
    p.use_cache = cache;
    p.kv_ring_bytes = info.kv_bytes;
    p.weight_bytes = info.weight_bytes;
    if (!o.quiet)
      std::cerr << "gpt2-gen: benchmark B=" << B << " " << p.name() << ": warm-up + " << count_of(o.runs, "run") << "\n";
    GenerationOptions warm = gen;
    warm.max_new_tokens = std::min(2, gen.max_new_tokens);  // the prefill and one decode step
    run_batch_once(*backend, setup.prompt, warm, B, em, &p.kv_held_bytes);
    for (int i = 0; i < o.runs; ++i) p.runs.push_back(run_batch_once(*backend, setup.prompt, gen, B, em, &p.kv_held_bytes));
    points.push_back(std::move(p));
  }
  const size_t peak = info.peak_device_bytes ? info.peak_device_bytes : peak_rss_bytes();
  points[points.size() - 1].peak_bytes = points[points.size() - 2].peak_bytes = peak;
}

}  // namespace

namespace {

// The fp32 GEMM rate at each batch size, by the rows path's library, and the line that puts the
// largest batch size's decode step beside it (issue 23's goal: >= 70% at B = 16).
json add_gemm_rates(const GPT2Config& cfg, const std::vector<Point>& points, int threads, std::vector<GemmPoint>& gemm,
                    std::string& out) {
  const GemmStepBench bench(cfg);
  json rates = json::array();
  for (const Point& p : points) {
    if (!p.use_cache) continue;
    GemmPoint g{bench.measure(p.B, 3), summarize_point(p).gflops_mean};
    rates.push_back({{"batch_size", p.B}, {"flops", g.rate.flops}, {"best_ms", g.rate.best_ms},
                     {"gflop_per_s", g.rate.gflop_per_s()}, {"step_gflop_per_s", g.step_gflop_per_s},
                     {"reached_pct", 100 * g.step_gflop_per_s / g.rate.gflop_per_s()}});
    gemm.push_back(g);
  }
  const GemmPoint& last = gemm.back();
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "fp32 GEMM (%s, %s) on the decode step's shapes at B=%d: %.1f GFLOP/s; the B=%d step with "
                "the cache reached %.1f GFLOP/s, %.0f%% of it\n",
                GemmStepBench::library().c_str(), count_of(threads, "thread").c_str(), last.rate.rows, last.rate.gflop_per_s(), last.rate.rows,
                last.step_gflop_per_s, 100 * last.step_gflop_per_s / last.rate.gflop_per_s());
  out += std::string("\n") + buf;
  return {{"library", GemmStepBench::library()}, {"dtype", "fp32"}, {"threads", threads}, {"rates", rates}};
}

// Request 0's tokens of every run against the first run's; every request against its run's first.
bool all_tokens_identical(const std::vector<Point>& points, std::string* where) {
  const std::vector<int>& reference = points.front().runs.front().generated;
  for (const Point& p : points)
    for (const BatchRecord& r : p.runs)
      if (!r.requests_identical || r.generated != reference) {
        *where = "B=" + std::to_string(p.B) + " " + p.name();
        return false;
      }
  return true;
}

}  // namespace

int run_batch_benchmark(std::unique_ptr<Backend>& session, const BatchBenchSetup& setup, const CliOptions& o) {
  const GPT2Config& cfg = setup.model->config;
  if (o.max_new_tokens < 1) throw Error("--benchmark needs --max-new-tokens >= 1");
  const int window = session->context_window(), capacity = session->kv_capacity();
  if (!o.context_shift && int(setup.prompt.size()) + o.max_new_tokens - 1 > window)
    throw Error("--benchmark: a " + std::to_string(setup.prompt.size()) + "-token prompt and " +
                std::to_string(o.max_new_tokens) + " new tokens do not fit the " + std::to_string(window) +
                "-token context; lower --max-new-tokens or add --context-shift");
  const BackendInfo first = session->info();
  session.reset();  // each batch size makes its own backend of B sequences

  GenerationOptions gen;
  gen.max_new_tokens = o.max_new_tokens;
  gen.ignore_eos = true;         // every request generates exactly max_new_tokens
  gen.sampling.temperature = 0;  // greedy: every request, batch size and mode must agree
  gen.context_shift = o.context_shift;
  gen.eos_id = cfg.eos_token_id;
  std::vector<Point> points;
  bool peak_reset = true;
  for (int B : o.parallel_sizes) {
    bool reset = false;
    measure_batch_size(setup, o, gen, B, &reset, points);
    peak_reset = peak_reset && reset;
  }
  std::string where;
  const bool identical = all_tokens_identical(points, &where);

  char buf[768];
  std::snprintf(buf, sizeof buf,
                "gpt2-gen batched benchmark: %s (%s), %s, %s, model %s (%.0fM parameters)\n"
                "B requests at batch size B, each a %zu-token prompt and %d new tokens, greedy, EOS ignored; K/V "
                "ring of %d positions per sequence; %s per batch size and mode after a warm-up\n"
                "tokens/s: all generated tokens over the batch's wall time; decode: after the last first token; "
                "TTFT from the batch's start (the prompts are prefilled one after another)\n\n",
                first.device.c_str(), first.device_name.c_str(), compute_dtype_name(first.dtype),
                count_of(first.threads, "thread").c_str(), setup.model_dir.c_str(), double(cfg.n_params()) / 1e6, setup.prompt.size(), o.max_new_tokens,
                capacity, count_of(o.runs, "run").c_str());
  std::string head = buf, tail;
  json j = {{"schema", "gpt2-gen-batch-benchmark/1"}, {"tool", "gpt2-gen"}, {"device", first.device},
            {"device_name", first.device_name}, {"dtype", compute_dtype_name(first.dtype)},
            {"threads", first.threads}, {"model", setup.model_dir}, {"n_params", cfg.n_params()},
            {"prompt_ids", setup.prompt}, {"max_new_tokens", o.max_new_tokens}, {"runs", o.runs},
            {"kv_capacity", capacity}, {"load_ms", setup.load_ms}, {"tokenize_ms", setup.tokenize_ms},
            {"batch_sizes", o.parallel_sizes}, {"tokens_identical", identical}, {"entries", json::array()}};
  for (const Point& p : points) j["entries"].push_back(point_json(p, peak_reset));
  std::vector<GemmPoint> gemm;
  if (first.device == "cpu") j["gemm"] = add_gemm_rates(cfg, points, first.threads, gemm, tail);
  std::snprintf(buf, sizeof buf, "same tokens in every request, batch size and mode: %s%s\n",
                identical ? "yes" : "NO, first difference at ", identical ? "" : where.c_str());
  tail += buf;
  const std::string out = head + table(points, gemm) + tail;
  write_benchmark_output(out, j, o);
  return identical ? 0 : 1;
}

}  // namespace gpt2
