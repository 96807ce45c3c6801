// libFuzzer target: the config.json parser. On success, the derived sizes must be computable
// without overflow (UBSan) and the documented invariants must hold. Only gpt2::Error is an
// expected failure; anything else is a finding.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string_view>

#include "base/error.h"
#include "model/config.h"

namespace {
[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_config: property violated: %s\n", what);
  __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const gpt2::GPT2Config c =
        gpt2::parse_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz-config.json");
    using L = gpt2::ConfigLimits;
    if (c.vocab_size < 1 || c.vocab_size > L::kMaxVocab) violated("vocab_size out of bounds");
    if (c.n_positions < 1 || c.n_positions > L::kMaxPositions) violated("n_positions out of bounds");
    if (c.n_embd < 1 || c.n_embd > L::kMaxEmbd) violated("n_embd out of bounds");
    if (c.n_layer < 1 || c.n_layer > L::kMaxLayers) violated("n_layer out of bounds");
    if (c.n_head < 1 || c.n_inner < 1) violated("n_head or n_inner not positive");
    const int hs = c.head_dim();
    if (hs < 1 || hs * c.n_head != c.n_embd) violated("n_embd is not n_head * head_dim");
    const int64_t params = c.n_params();
    if (params < 1 || params > L::kMaxParams) violated("n_params out of bounds");
    if (int64_t(c.n_layer) * c.n_positions * c.n_embd > L::kMaxKvElements) violated("K/V cache too large");
    if (c.eos_token_id < 0 || c.eos_token_id >= c.vocab_size) violated("eos_token_id outside the vocabulary");
    if (!std::isfinite(c.layer_norm_epsilon) || !(c.layer_norm_epsilon > 0.0f) || c.layer_norm_epsilon > 1.0f)
      violated("layer_norm_epsilon is not a positive float in (0, 1]");
  } catch (const gpt2::Error&) {
  }
  return 0;
}
