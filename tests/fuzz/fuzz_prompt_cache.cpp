// libFuzzer target: the prompt-cache file (engine/prompt_cache.h). Parses the input as an
// in-memory safetensors image and checks it against a fixed small key (1 layer, 8 channels,
// vocab 16, at most 8 tokens, fp32 K/V: tests/fuzz/make_corpus.py writes seeds of exactly this
// key); when it is accepted, reads every K and V byte it claims (an out-of-bounds claim trips
// ASan) and checks what read_prompt_cache() promises. Only gpt2::Error is an expected failure.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/error.h"
#include "engine/prompt_cache.h"
#include "model/safetensors.h"

namespace {

gpt2::PromptCacheKey small_key() {
  gpt2::PromptCacheKey k;
  k.model = "0123456789abcdef";
  k.device = "cpu";
  k.dtype = "fp32";
  k.kv_format = "fp32";
  k.n_layer = 1;
  k.n_embd = 8;
  k.vocab_size = 16;
  k.max_tokens = 8;
  return k;
}

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_prompt_cache: property violated: %s\n", what);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const gpt2::SafetensorsFile f = gpt2::SafetensorsFile::parse(data, size, "fuzz-input");
    const gpt2::PromptCacheKey key = small_key();
    const gpt2::CachedPrompt c = gpt2::read_prompt_cache(f, key);
    const size_t n = c.ids.size();
    if (n < 1 || n > size_t(key.max_tokens)) violated("a token count outside [1, max_tokens]");
    for (int id : c.ids)
      if (id < 0 || id >= key.vocab_size) violated("an id outside the vocabulary");
    const size_t bytes = size_t(key.n_layer) * n * size_t(key.n_embd) * sizeof(float);
    for (const uint8_t* p : {c.k, c.v}) {
      if (p < data || p + bytes > data + size) violated("K/V outside the image");
      for (size_t i = 0; i < bytes; i += 4) {
        float x;
        std::memcpy(&x, p + i, 4);
        if (!(x == x) || x - x != 0.0f) violated("a non-finite K/V value was accepted");
      }
    }
    const std::vector<int> prompt(c.ids.begin(), c.ids.end());
    if (gpt2::reusable_prefix(c.ids, prompt) != int(n) - 1) violated("the same prompt does not reuse n - 1 tokens");
  } catch (const gpt2::Error&) {
  }
  return 0;
}
