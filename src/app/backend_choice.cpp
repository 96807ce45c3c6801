#include "app/backend_choice.h"

#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "model/model.h"

namespace gpt2 {

std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options, std::string* note) {
  const int n_pos = model.config.n_positions;
  if (options.kv_capacity < 0 || options.kv_capacity > n_pos)
    throw Error("--ctx-size " + std::to_string(options.kv_capacity) + " is outside [1, " +
                std::to_string(n_pos) + "] (the model's n_positions); use 0 for the full context");

  std::string why_not_cuda;
  const bool cuda_ok = options.device != Device::Cpu && cuda_device_usable(&why_not_cuda);
  if (options.device == Device::Cuda && !cuda_ok)
    throw Error("--device cuda: no usable CUDA device: " + why_not_cuda + "; use --device cpu");
  const bool int8 = options.dtype == ComputeDType::Int8;
  if (cuda_ok && int8 && options.device == Device::Cuda)
    throw Error("--dtype int8 runs on the CPU only; use --device cpu or another --dtype");
  std::string why_not_dtype;  // a dtype this GPU cannot compute in (bf16 before compute capability 8.0)
  const bool dtype_ok = int8 || !options.dtype || !cuda_ok || cuda_dtype_supported(*options.dtype, &why_not_dtype);
  if (!dtype_ok && options.device == Device::Cuda) throw Error(why_not_dtype);
  if (cuda_ok && !int8 && dtype_ok) return make_cuda_backend(model, options);
  if (note) {
    note->clear();
    if (options.device == Device::Auto)
      *note = !cuda_ok ? "note: running on the CPU: no usable CUDA device: " + why_not_cuda
              : int8   ? "note: running on the CPU: --dtype int8 is the CPU's only"
                       : "note: running on the CPU: " + why_not_dtype;
  }
  return make_cpu_backend(model, options);
}

}  // namespace gpt2
