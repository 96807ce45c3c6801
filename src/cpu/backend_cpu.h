// The CPU backend: GPT-2 read as the model's definition, on the fast kernels of cpu_fast.h
// (weights in their stored precision or --dtype's, fp32 arithmetic).
#pragma once
#include <memory>

#include "engine/backend.h"

namespace gpt2 {

// The machine's physical cores (hyperthreads not counted): the default of -t/--threads.
int physical_cores();

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

}  // namespace gpt2
