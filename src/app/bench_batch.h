// --benchmark --parallel 1,2,4,...: what batching buys, and what the K/V cache costs, per batch
// size B. As llama.cpp's llama-batched-bench does (its -npl list, "prompt not shared"), batch
// size B runs B requests of the same prompt and length together, so every decode step has exactly
// B rows and the numbers describe the step at B, not the tail of a queue. Each B runs with the
// cache and with --no-cache (every sequence recomputes its whole context each step), greedy,
// ignoring <|endoftext|>, through the engine's continuous batching (generate_batch(), a backend of
// B sequences made for that B), one warm-up and then --runs timed runs each.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "app/cli.h"
#include "engine/backend.h"
#include "model/model.h"

namespace gpt2 {

struct BatchBenchSetup {
  const Model* model = nullptr;
  BackendOptions backend;  // n_seqs is set per batch size
  std::string model_dir;
  std::vector<int> prompt;
  double load_ms = 0, tokenize_ms = 0;
};

// Prints the table to stdout (stderr when the JSON goes to stdout) and writes the JSON (schema
// "gpt2-gen-batch-benchmark/1", tools/README.md) to --json FILE or stdout. `session` (the
// one-sequence backend the run opened) is released first: each batch size makes its own.
// Returns the exit code: 1 when any request's tokens differ from the first one's.
int run_batch_benchmark(std::unique_ptr<Backend>& session, const BatchBenchSetup& setup, const CliOptions& options);

}  // namespace gpt2
