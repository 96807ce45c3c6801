// What gpt2-gen does once its options are parsed: tokenize, generate, or benchmark.
#pragma once
#include "app/cli.h"

namespace gpt2 {

// Runs the command the options describe; returns the process exit code (0, or 130 after
// Ctrl-C). Throws gpt2::Error for bad input, which main() prints as one line.
int run_app(const CliOptions& options);

}  // namespace gpt2
