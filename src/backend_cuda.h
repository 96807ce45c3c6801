// The CUDA backend (built only when nvcc is found): see backend_cuda.cpp and kernels/.
#pragma once
#include <memory>
#include <string>

#include "backend.h"

namespace gpt2 {

// True when a CUDA device can be used; otherwise `why` says why not (no driver, no device).
bool cuda_device_usable(std::string* why);

std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options);

}  // namespace gpt2
