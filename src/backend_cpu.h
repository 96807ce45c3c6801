// The CPU reference backend: GPT-2 in plain fp32, read as the model's definition.
#pragma once
#include <memory>

#include "backend.h"

namespace gpt2 {

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

}  // namespace gpt2
