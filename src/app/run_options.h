// The command line's values turned into the engine's settings: one conversion, used by a single
// run, --benchmark and every --batch request (whose fields override a copy of CliOptions).
#pragma once
#include <cstdint>

#include "app/cli.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "model/config.h"

namespace gpt2 {

BackendOptions backend_options(const CliOptions& o);
GenerationOptions generation_options(const CliOptions& o, const GPT2Config& cfg, uint64_t seed);

// The seed of a run: --seed when given, else random from the system's entropy.
uint64_t run_seed(const CliOptions& o);

}  // namespace gpt2
