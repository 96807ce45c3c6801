#include "engine/backend.h"

#include "base/error.h"

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

}  // namespace gpt2
