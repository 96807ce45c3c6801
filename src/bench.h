// --benchmark: the same generation with the K/V cache and with --no-cache, timed.
#pragma once
#include <vector>

#include "backend.h"
#include "cli.h"
#include "config.h"
#include "generator.h"

namespace gpt2 {

int run_benchmark(Backend& backend, const std::vector<int>& prompt, const GPT2Config& config,
                  const GenerationOptions& generation, const CliOptions& options, double load_ms);

}  // namespace gpt2
