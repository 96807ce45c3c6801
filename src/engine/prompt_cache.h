// The prompt cache (--prompt-cache FILE, llama.cpp's name): a prompt's token ids and K/V, saved
// after its prefill, so that a later run whose prompt starts with the same ids copies their K/V
// into the ring instead of computing it. The file is a safetensors file, read by the parser of
// model/safetensors.h (hardened and fuzzed for the weight files), so no new parser is exposed:
//
//   k, v          [n_layer, n_tokens, n_embd]  in the K/V format: F32, F16 or BF16
//   __metadata__  format "gpt2-gen-prompt-cache/1", model (model_fingerprint()), device, dtype
//                 (the weights' compute dtype), kv_format, n_tokens, ids ("464,2068,...")
//
// Nothing in a file is trusted: read_prompt_cache() checks every field against what this run
// would write, the shapes, the ids and the values' finiteness; any mismatch is a reason to
// ignore the file (a note, never an error: the run prefills from scratch).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "model/model.h"
#include "model/safetensors.h"

namespace gpt2 {

// What a file must say to be used by this run, and what this run writes.
struct PromptCacheKey {
  std::string model;      // model_fingerprint()
  std::string device;     // BackendInfo::device: K/V computed by another backend differs in its last bits
  std::string dtype;      // compute_dtype_name(BackendInfo::dtype)
  std::string kv_format;  // compute_dtype_name(BackendInfo::kv_dtype)
  int n_layer = 0, n_embd = 0, n_head = 0, vocab_size = 0;
  int max_tokens = 0;     // the context window: a longer file cannot be a prompt of this run
};

// 16 hex digits: FNV-1a over the config's fields, each weight tensor's name, dtype and shape,
// and 16 evenly spaced 64-byte samples of its data (the first and last bytes included). A
// content sample, not the file's path or time: a copied or reconverted file of the same weights
// hits; another model of the same shape (another seed, a fine-tune) differs in every sample.
// It reads about 1 KiB per tensor, so it costs microseconds instead of a pass over the weights.
std::string model_fingerprint(const GPT2Config& config, const SafetensorsFile& weights);
PromptCacheKey prompt_cache_key(const Model& model, const Backend& backend);

// The file for `ids`, with its K and V data left zero for the caller to fill in place: each
// (n_layer, ids.size(), row_bytes) bytes at bytes.data() + k_at and + v_at. row_bytes must be
// kv_row_bytes() of key.kv_format (engine/kv_format.h): n_embd elements of fp32, fp16 or bf16
// (tensors of that dtype), or an int8 row's bytes, values then scales (a U8 tensor).
struct PromptCacheImage {
  std::string bytes;
  size_t k_at = 0, v_at = 0;
};
PromptCacheImage prompt_cache_image(const PromptCacheKey& key, const std::vector<int>& ids);

// A file's content once checked: the ids, and the K and V as (n_layer, ids.size(), row) bytes
// inside the file's mapping (possibly unaligned).
struct CachedPrompt {
  std::vector<int> ids;
  const uint8_t* k = nullptr;
  const uint8_t* v = nullptr;
};
// Checks `file` against `key`; throws gpt2::Error with the reason to ignore it.
CachedPrompt read_prompt_cache(const SafetensorsFile& file, const PromptCacheKey& key);

// How many of the prompt's first tokens to take from `cached`: their longest common prefix, but
// never the prompt's last token (it is computed, for the logits). 0: nothing to reuse.
int reusable_prefix(const std::vector<int>& cached, const std::vector<int>& prompt);

// Loads the longest usable prefix of the file at `path` into sequence 0's `ring` (positions
// [0, reused)); reused is 0 when the file is absent, unusable or shares nothing with `prompt`.
// `note` receives one line for the user either way.
struct PromptCacheLoad {
  int reused = 0;
  bool same_prompt = false;  // the file holds exactly `prompt`: saving it again would change nothing
};
PromptCacheLoad load_prompt_cache(const std::string& path, const PromptCacheKey& key, const std::vector<int>& prompt,
                                  Backend& backend, const KvRing& ring, std::string* note);

}  // namespace gpt2
