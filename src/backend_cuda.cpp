// Placeholder until the CUDA backend lands (issue 4).
#include "backend_cuda.h"
#include "error.h"
namespace gpt2 {
bool cuda_device_usable(std::string* why) { if (why) *why = "the CUDA backend is not implemented yet"; return false; }
std::unique_ptr<Backend> make_cuda_backend(const Model&, const BackendOptions&) { throw Error("CUDA backend not implemented yet"); }
}  // namespace gpt2
