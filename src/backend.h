// The interface both backends implement (CPU reference: backend_cpu.cpp; CUDA:
// backend_cuda.cpp). A backend owns the model's weights in its own memory and precision,
// the per-layer K/V rings, and the activations: all allocated once, at construction.
//
// The generator drives it with forward() calls; a backend keeps nothing between calls except
// what forward() wrote into the K/V rings, so `--no-cache` (recompute the whole context every
// step) is the same forward() on the whole window with nothing read from before.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kv_ring.h"
#include "sampler.h"

namespace gpt2 {

struct Model;

enum class Device { Auto, Cpu, Cuda };
enum class ComputeDType { F32, F16, BF16 };
const char* compute_dtype_name(ComputeDType d);  // "fp32", "fp16", "bf16"

struct BackendOptions {
  Device device = Device::Auto;
  // Unset: fp16 on CUDA, fp32 on the CPU (which always computes in fp32).
  bool dtype_set = false;
  ComputeDType dtype = ComputeDType::F32;
  int kv_capacity = 0;  // slots per layer; 0 = the model's n_positions
  int max_tokens_per_forward = 0;  // largest n passed to forward(); 0 = kv_capacity
};

struct BackendInfo {
  std::string device;       // "cpu" or "cuda"
  std::string device_name;  // "NVIDIA H200", or the CPU's model name
  ComputeDType dtype = ComputeDType::F32;
  size_t weight_bytes = 0;  // in the backend's memory, as stored there
  size_t kv_bytes = 0;      // K and V rings of all layers
  size_t activation_bytes = 0;
  size_t peak_device_bytes = 0;  // CUDA: peak device memory in use by the process; CPU: 0
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Runs `n` tokens `ids` at context positions [pos, pos + n) through the model, writing their
  // keys and values into ring slots ring.slot(pos..pos+n-1) of every layer and attending over
  // positions [0, pos + i] for token i. Keeps the logits of the last token (only those are
  // computed). Requires 1 <= n <= max_tokens_per_forward and pos + n <= ring.capacity.
  virtual void forward(const int* ids, int n, int pos, const KvRing& ring) = 0;

  // The next token from the last logits by the rule of sampler.h, with uniform draw u.
  virtual int sample(const SamplingParams& params, double u) = 0;

  // Copies the last logits (vocab_size floats) to `out` (tests, --dump).
  virtual void read_logits(float* out) = 0;

  virtual const BackendInfo& info() const = 0;
  virtual int kv_capacity() const = 0;
};

// Makes the backend `options.device` asks for. Auto: CUDA when built with it and a device is
// usable, else the CPU; `note` receives a one-line explanation of a fallback. Throws
// gpt2::Error for --device cuda without a usable device.
std::unique_ptr<Backend> make_backend(const Model& model, const BackendOptions& options,
                                      std::string* note);

}  // namespace gpt2
