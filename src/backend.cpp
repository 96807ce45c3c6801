#include "backend.h"

#include "backend_cpu.h"
#include "backend_cuda.h"
#include "error.h"
#include "model.h"

namespace gpt2 {

const char* compute_dtype_name(ComputeDType d) {
  switch (d) {
    case ComputeDType::F32: return "fp32";
    case ComputeDType::F16: return "fp16";
    case ComputeDType::BF16: return "bf16";
  }
  return "?";
}

std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options, std::string* note) {
  const int n_pos = model.config.n_positions;
  if (options.kv_capacity < 0 || options.kv_capacity > n_pos)
    throw Error("--ctx-size " + std::to_string(options.kv_capacity) + " is outside [1, " +
                std::to_string(n_pos) + "] (the model's n_positions); use 0 for the full context");

  std::string why_not_cuda;
  const bool cuda_ok = options.device != Device::Cpu && cuda_device_usable(&why_not_cuda);
  if (options.device == Device::Cuda && !cuda_ok)
    throw Error("--device cuda: no usable CUDA device: " + why_not_cuda + "; use --device cpu");
  if (cuda_ok) {
    BackendOptions o = options;
    if (!o.dtype_set) o.dtype = ComputeDType::F16;
    return make_cuda_backend(model, o);
  }
  if (note) {
    note->clear();
    if (options.device == Device::Auto) *note = "note: running on the CPU: no usable CUDA device: " + why_not_cuda;
    if (options.dtype_set && options.dtype != ComputeDType::F32)
      *note += std::string(note->empty() ? "note: " : "; ") + "the CPU backend computes in fp32, --dtype " +
               compute_dtype_name(options.dtype) + " applies to CUDA only";
  }
  return make_cpu_backend(model, options);
}

}  // namespace gpt2
