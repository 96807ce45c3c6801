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
    case ComputeDType::Int8: return "int8";
  }
  return "?";
}

Backend::Backend(const GPT2Config& config, const BackendOptions& options)
    : config_(config), capacity_(options.kv_capacity > 0 ? options.kv_capacity : config.n_positions) {}

void Backend::forward(const int* ids, int n, int pos, const KvRing& ring) {
  if (n < 1 || pos < 0 || pos + n > context_window())
    throw Error("internal: forward() of " + std::to_string(n) + " tokens at position " + std::to_string(pos) +
                " does not fit the context");
  if (ring.capacity != capacity_ || ring.start < 0 || ring.start >= capacity_)
    throw Error("internal: forward() with a K/V ring of capacity " + std::to_string(ring.capacity) + ", start " +
                std::to_string(ring.start) + " (the backend's holds " + std::to_string(capacity_) + ")");
  for (int i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= config_.vocab_size)
      throw Error("token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                  std::to_string(config_.vocab_size) + ")");
  forward_impl(ids, n, pos, ring);
  last_ = DecodeStep{ids[n - 1], pos + n - 1, ring};
  forwarded_ = true;
}

DecodeProfile Backend::profile_decode(int steps) {
  if (!forwarded_) throw Error("internal: profile_decode() before any forward()");
  if (steps < 1) throw Error("internal: profile_decode() of " + std::to_string(steps) + " steps");
  return profile_impl(steps, last_);
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
  const bool int8 = options.dtype == ComputeDType::Int8;
  if (cuda_ok && int8 && options.device == Device::Cuda)
    throw Error("--dtype int8 runs on the CPU only; use --device cpu or another --dtype");
  if (cuda_ok && !int8) return make_cuda_backend(model, options);
  if (note) {
    note->clear();
    if (options.device == Device::Auto)
      *note = cuda_ok ? "note: running on the CPU: --dtype int8 is the CPU's only"
                      : "note: running on the CPU: no usable CUDA device: " + why_not_cuda;
  }
  return make_cpu_backend(model, options);
}

}  // namespace gpt2
