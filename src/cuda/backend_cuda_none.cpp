// The CUDA backend's entry points in a build without the CUDA Toolkit (CMake links this file
// instead of backend_cuda.cpp): no device is ever usable, and make_backend falls back to the CPU.
#include "base/error.h"
#include "cuda/backend_cuda.h"

namespace gpt2 {

bool cuda_device_usable(std::string* why) {
  if (why) *why = "this gpt2-gen was built without CUDA; rebuild where the CUDA Toolkit is installed";
  return false;
}

bool cuda_dtype_supported(ComputeDType, std::string* why) { return cuda_device_usable(why); }

std::string cuda_build_info() { return "not compiled in (CPU only)"; }

std::unique_ptr<Backend> make_cuda_backend(const Model&, const BackendOptions&) {
  throw Error("this gpt2-gen was built without CUDA; rebuild where the CUDA Toolkit is installed");
}

}  // namespace gpt2
