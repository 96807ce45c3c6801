#include "app/bench.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "app/beam_run.h"
#include "app/explain.h"
#include "app/progress.h"
#include "app/report.h"
#include "base/error.h"
#include "cpu/membw.h"
#include "engine/beam.h"

namespace gpt2 {
namespace {

double mean(const std::vector<double>& v) { return mean_of(v); }
double stddev(const std::vector<double>& v) { return population_std(v); }
double percentile(const std::vector<double>& sorted, double q) { return nearest_rank_percentile(sorted, q); }

double total_s(const GenerationResult& r) { return (r.prefill_ms + r.decode_ms) / 1000.0; }

struct Mode {
  const char* name;
  const char* label;  // as the classic demonstration prints it
  bool use_cache;
  std::vector<GenerationResult> runs;
  ModeSummary summary;
};

nlohmann::json mode_json(const Mode& m, const BackendInfo& info) {
  nlohmann::json runs = nlohmann::json::array();
  for (const GenerationResult& r : m.runs)
    runs.push_back({{"total_s", total_s(r)},
                    {"prefill_ms", r.prefill_ms},
                    {"decode_ms", r.decode_ms},
                    {"decode_tokens_per_s", r.decode_tokens_per_s()},
                    {"token_ms", r.token_ms},
                    {"generated_ids", r.generated}});
  const ModeSummary& s = m.summary;
  return {{"name", m.name},
          {"kv_cache", m.use_cache},
          {"kv_dtype", compute_dtype_name(info.kv_dtype)},
          {"kv_cache_bytes", info.kv_bytes},
          {"weight_bytes", info.weight_bytes},
          {"activation_bytes", info.activation_bytes},
          {"peak_memory_bytes", info.peak_device_bytes ? info.peak_device_bytes : peak_host_bytes()},
          {"runs", runs},
          {"summary",
           {{"total_s_mean", s.total_s_mean}, {"total_s_std", s.total_s_std},
            {"prefill_ms_mean", s.prefill_ms_mean}, {"prefill_ms_std", s.prefill_ms_std},
            {"decode_tokens_per_s_mean", s.decode_tps_mean}, {"decode_tokens_per_s_std", s.decode_tps_std},
            {"p50_ms", s.p50_ms}, {"p90_ms", s.p90_ms}, {"p99_ms", s.p99_ms},
            {"first_10pct_ms", s.first_10pct_ms}, {"last_10pct_ms", s.last_10pct_ms}}}};
}

std::string table(const std::vector<Mode>& modes, const BackendInfo& info) {
  std::string out =
      "| mode     | prefill ms      | decode tokens/s   | p50 ms  | p90 ms  | p99 ms  | first 10% ms | last 10% ms | KV cache        | peak memory |\n"
      "|----------|-----------------|-------------------|---------|---------|---------|--------------|-------------|-----------------|-------------|\n";
  char buf[512];
  for (const Mode& m : modes) {
    const ModeSummary& s = m.summary;
    std::snprintf(buf, sizeof buf,
                  "| %-8s | %7.2f ± %-5.2f | %8.1f ± %-6.1f | %7.3f | %7.3f | %7.3f | %12.3f | %11.3f | %4s %10s | %11s |\n",
                  m.name, s.prefill_ms_mean, s.prefill_ms_std, s.decode_tps_mean, s.decode_tps_std, s.p50_ms,
                  s.p90_ms, s.p99_ms, s.first_10pct_ms, s.last_10pct_ms, compute_dtype_name(info.kv_dtype),
                  format_bytes(info.kv_bytes).c_str(),
                  format_bytes(info.peak_device_bytes ? info.peak_device_bytes : peak_host_bytes()).c_str());
    out += buf;
  }
  return out;
}

// Counts a run's tokens for the progress line; during the no-cache warm-up, once its first
// steps are timed, prints the estimate of the whole no-cache benchmark if it is long.
TokenCallback progress_ticker(Progress& progress, const Mode& m, int run, const CliOptions& o) {
  const int estimate_after = std::min(8, o.max_new_tokens);
  return [&progress, &m, run, &o, estimate_after](int) {
    progress.tick();
    if (!m.use_cache && run == 0 && int(progress.token_ms().size()) == estimate_after) {
      const std::vector<double>& first = progress.token_ms();
      const TokenTrend trend = TokenTrend::fit(first);
      const double total_s = double(o.runs + 1) * (first[0] + trend.sum(1, o.max_new_tokens)) / 1000;
      if (total_s >= progress_min_seconds()) progress.line(no_cache_estimate_line(first, o.max_new_tokens, o.runs));
    }
    return true;
  };
}

// --explain: each mode's steps with their mean times, on stderr and into each mode's JSON.
void add_explain(nlohmann::json& j, const std::vector<Mode>& modes, const ExplainModel& em, bool quiet) {
  const ExplainRun cache = explain_runs(em, modes[0].runs, true), no_cache = explain_runs(em, modes[1].runs, false);
  if (!quiet) std::cerr << explain_text(em, cache, no_cache);
  j["modes"][0]["explain"] = explain_json(em, cache, no_cache);
  j["modes"][1]["explain"] = explain_json(em, no_cache, cache);
}

// The CPU's decode floor (its decode is bound by how fast the weights stream in): the bytes a
// decode step must read (every weight once, and the K/V rings up to the mean context of the
// run) over the measured read bandwidth. Appends the line to `out` and the record to `j`.
void add_bandwidth_floor(nlohmann::json& j, std::string& out, const BackendInfo& info, const BenchSetup& setup,
                         int new_tokens, const Mode& cache) {
  const ReadBandwidth bw = measure_read_bandwidth();
  const GPT2Config& c = setup.config;
  const double mean_context = double(setup.prompt.size()) + new_tokens / 2.0;
  const double kv_read = 2.0 * c.n_layer * c.n_embd * sizeof(float) * mean_context;
  const double bytes = double(info.decode_weight_bytes) + kv_read;
  const double floor_tps = bw.gb_per_s * 1e9 / bytes, pct = 100.0 * cache.summary.decode_tps_mean / floor_tps;
  char buf[400];
  std::snprintf(buf, sizeof buf,
                "memory read bandwidth %.1f GB/s (%d threads, %s buffer); a decode step reads %.1f MB "
                "(weights %.1f MB + K/V): floor %.1f tokens/s, reached %.0f%%\n",
                bw.gb_per_s, bw.threads, format_bytes(bw.buffer_bytes).c_str(), bytes / 1e6,
                double(info.decode_weight_bytes) / 1e6, floor_tps, pct);
  out += std::string("\n") + buf;
  j["memory_bandwidth"] = {{"read_gb_per_s", bw.gb_per_s}, {"threads", bw.threads}, {"buffer_bytes", bw.buffer_bytes},
                            {"decode_bytes_per_token", bytes}, {"floor_tokens_per_s", floor_tps}, {"floor_reached_pct", pct}};
}

// "greedy", or the beam search each run makes (its decode tokens/s are then steps/s).
std::string beams_label(const CliOptions& o) {
  if (o.num_beams <= 1) return "greedy";
  return "beam search of " + std::to_string(o.num_beams) + " beams (the best beam's tokens; a step advances all)";
}

}  // namespace

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / double(v.size());
}

double population_std(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return v.empty() ? 0 : std::sqrt(s / double(v.size()));
}

double nearest_rank_percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const size_t rank = size_t(std::ceil(q / 100.0 * double(sorted.size())));
  return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

ModeSummary summarize(const std::vector<GenerationResult>& runs) {
  ModeSummary s;
  std::vector<double> totals, prefills, tps, latencies, first, last;
  for (const GenerationResult& r : runs) {
    totals.push_back(total_s(r));
    prefills.push_back(r.prefill_ms);
    tps.push_back(r.decode_tokens_per_s());
    const std::vector<double> decode(r.token_ms.begin() + (r.token_ms.empty() ? 0 : 1), r.token_ms.end());
    latencies.insert(latencies.end(), decode.begin(), decode.end());
    const size_t tenth = std::max<size_t>(1, decode.size() / 10);
    if (!decode.empty()) {
      first.push_back(mean(std::vector<double>(decode.begin(), decode.begin() + long(tenth))));
      last.push_back(mean(std::vector<double>(decode.end() - long(tenth), decode.end())));
    }
  }
  std::sort(latencies.begin(), latencies.end());
  s.total_s_mean = mean(totals);
  s.total_s_std = stddev(totals);
  s.prefill_ms_mean = mean(prefills);
  s.prefill_ms_std = stddev(prefills);
  s.decode_tps_mean = mean(tps);
  s.decode_tps_std = stddev(tps);
  s.p50_ms = percentile(latencies, 50);
  s.p90_ms = percentile(latencies, 90);
  s.p99_ms = percentile(latencies, 99);
  s.first_10pct_ms = mean(first);
  s.last_10pct_ms = mean(last);
  return s;
}

int run_benchmark(Backend& backend, const BenchSetup& setup, const CliOptions& o) {
  GenerationOptions gen;
  gen.max_new_tokens = o.max_new_tokens;
  gen.ignore_eos = true;                  // every run generates exactly max_new_tokens
  gen.sampling.temperature = 0;           // greedy: both modes must produce the same tokens
  gen.context_shift = o.context_shift;
  gen.eos_id = setup.config.eos_token_id;
  const int window = backend.context_window();
  const int needed = int(setup.prompt.size()) + o.max_new_tokens - 1;
  if (!o.context_shift && needed > window)
    throw Error("--benchmark: a " + std::to_string(setup.prompt.size()) + "-token prompt and " +
                std::to_string(o.max_new_tokens) + " new tokens do not fit the " + std::to_string(window) +
                "-token context; lower --max-new-tokens or add --context-shift");
  if (o.max_new_tokens < 1) throw Error("--benchmark needs --max-new-tokens >= 1");

  const BackendInfo& info = backend.info();
  std::vector<Mode> modes = {{"cache", "with KV caching", true, {}, {}},
                             {"no-cache", "without KV caching", false, {}, {}}};
  Progress progress(progress_wanted(o.quiet), 0);
  for (Mode& m : modes) {
    gen.use_cache = m.use_cache;
    if (!o.quiet) std::cerr << "gpt2-gen: benchmark " << m.name << ": warm-up + " << count_of(o.runs, "run") << "\n";
    for (int i = 0; i <= o.runs; ++i) {  // run 0 is the warm-up, discarded
      progress.begin_run(std::string("benchmark ") + m.name, i, o.runs, o.max_new_tokens);
      // --num-beams: one step advances every beam (its "tokens/s" are steps/s).
      GenerationResult r = o.num_beams > 1 ? beam_search(backend, setup.prompt, gen, beam_options(o)).as_generation()
                                           : generate(backend, setup.prompt, gen, progress_ticker(progress, m, i, o));
      if (i > 0) m.runs.push_back(std::move(r));
    }
    m.summary = summarize(m.runs);
  }
  progress.clear();
  const bool identical = modes[0].runs.front().generated == modes[1].runs.front().generated;
  const double speedup = modes[1].summary.total_s_mean / modes[0].summary.total_s_mean;

  char buf[512];
  std::string out;
  std::snprintf(buf, sizeof buf,
                "gpt2-gen benchmark: %s (%s), %s, model %s (%.0fM parameters)\n"
                "prompt %zu tokens, %d new tokens, %s, EOS ignored, %s per mode after a warm-up\n"
                "load %.1f ms and tokenization %.3f ms, excluded from the times below\n\n",
                info.device.c_str(), info.device_name.c_str(), compute_dtype_name(info.dtype),
                setup.model_dir.c_str(), double(setup.config.n_params()) / 1e6, setup.prompt.size(),
                o.max_new_tokens, beams_label(o).c_str(), count_of(o.runs, "run").c_str(), setup.load_ms,
                setup.tokenize_ms);
  out += buf;
  if (!info.device_paths.empty()) out += "device paths: " + info.device_paths + "\n\n";
  for (const Mode& m : modes) {
    std::snprintf(buf, sizeof buf, "%s: %.3f +- %.3f seconds\n", m.label, m.summary.total_s_mean, m.summary.total_s_std);
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "speed-up from the KV cache: %.2fx; same tokens in both modes: %s\n\n", speedup,
                identical ? "yes" : "NO");
  out += buf + table(modes, info);

  nlohmann::json j = {{"schema", "gpt2-gen-benchmark/1"},
                      {"tool", "gpt2-gen"},
                      {"device", info.device},
                      {"device_name", info.device_name},
                      {"dtype", compute_dtype_name(info.dtype)},
                      {"model", setup.model_dir},
                      {"n_params", setup.config.n_params()},
                      {"prompt_ids", setup.prompt},
                      {"max_new_tokens", o.max_new_tokens},
                      {"runs", o.runs},
                      {"load_ms", setup.load_ms},
                      {"tokenize_ms", setup.tokenize_ms},
                      {"device_paths", info.device_paths},
                      {"speedup", speedup},
                      {"tokens_identical", identical},
                      {"modes", {mode_json(modes[0], info), mode_json(modes[1], info)}}};
  if (o.explain) add_explain(j, modes, explain_model(setup.config, info, backend.kv_capacity()), o.quiet);
  if (info.decode_weight_bytes > 0) add_bandwidth_floor(j, out, info, setup, o.max_new_tokens, modes[0]);
  write_benchmark_output(out, j, o);
  return identical ? 0 : 1;
}

void write_benchmark_output(const std::string& table, const nlohmann::json& j, const CliOptions& o) {
  if (o.json && o.json_file.empty()) {
    std::cerr << table;  // stdout carries the JSON
    const std::string text = dump_json(j) + "\n";
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else {
    std::fwrite(table.data(), 1, table.size(), stdout);
    if (o.json) write_file_atomically(o.json_file, dump_json(j, 1) + "\n");
  }
  std::fflush(stdout);
}

}  // namespace gpt2
