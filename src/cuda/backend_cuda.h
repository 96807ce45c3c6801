// The CUDA backend: backend_cuda.cpp with kernels/ where nvcc is found (or with tests/cuda_emu,
// the CPU emulation the tests use); backend_cuda_none.cpp, which never finds a device, elsewhere.
#pragma once
#include <memory>
#include <string>

#include "engine/backend.h"

namespace gpt2 {

// True when a CUDA device can be used; otherwise `why` says why not (no driver, no device, a
// GPU older than gpt2-gen supports, kernels not built for it).
bool cuda_device_usable(std::string* why);

// True when the CUDA backend computes in `dtype` on the usable device; otherwise `why` says why
// not and what to use instead (bf16 before compute capability 8.0).
bool cuda_dtype_supported(ComputeDType dtype, std::string* why);

// How this build runs CUDA, for --version: "compiled in for sm_90", "not compiled in", or
// "emulated on the CPU" (tests/cuda_emu).
std::string cuda_build_info();

std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options);

}  // namespace gpt2
