// --benchmark: the classic KV-cache demonstration done properly. The same prompt, settings,
// device and dtype run with the cache and with --no-cache, one warm-up and then `runs` timed
// runs each, greedy and ignoring <|endoftext|> so every run generates exactly
// --max-new-tokens. Model load and tokenization are timed separately and excluded.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/cli.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "model/config.h"

namespace gpt2 {

struct BenchSetup {
  std::string model_dir;
  GPT2Config config;
  std::vector<int> prompt;
  double load_ms = 0;
  double tokenize_ms = 0;
};

// Runs both modes, prints the summary and table to stdout, writes the JSON (schema
// "gpt2-gen-benchmark/1", see tools/README.md) to --json FILE or stdout. Returns the exit code.
int run_benchmark(Backend& backend, const BenchSetup& setup, const CliOptions& options);

// A benchmark's output, for both kinds: the table to stdout and the JSON to --json FILE
// (atomically), or, with --json alone, the JSON to stdout and the table to stderr.
void write_benchmark_output(const std::string& table, const nlohmann::json& j, const CliOptions& options);

// Summary statistics of one mode's runs (exposed for tests).
struct ModeSummary {
  double total_s_mean = 0, total_s_std = 0;      // std: population, like numpy.std
  double prefill_ms_mean = 0, prefill_ms_std = 0;
  double decode_tps_mean = 0, decode_tps_std = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0;      // per-token decode latency, all runs pooled
  double first_10pct_ms = 0, last_10pct_ms = 0;   // mean latency of the first/last tenth of decode tokens
};
ModeSummary summarize(const std::vector<GenerationResult>& runs);

// The statistics both benchmarks report, by one definition each (tools/benchmark_schema.py
// restates them): the mean, the population std (numpy.std), the nearest-rank percentile q in
// [0, 100] of values sorted ascending.
double mean_of(const std::vector<double>& v);
double population_std(const std::vector<double>& v);
double nearest_rank_percentile(const std::vector<double>& sorted, double q);

}  // namespace gpt2
