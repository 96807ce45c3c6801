#include "engine/prompt_cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "engine/kv_format.h"

namespace gpt2 {
namespace {

constexpr const char* kFormat = "gpt2-gen-prompt-cache/1";

// FNV-1a, 64 bits: enough to tell models apart (not a defence against a crafted collision: a
// file is data, checked for shape and finiteness whatever its fingerprint says).
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
  }
  void add(const std::string& s) { add(s.data(), s.size() + 1); }  // with the NUL: "ab","c" != "a","bc"
  void add(int64_t v) { add(&v, sizeof v); }
};

// How a K/V tensor holds one position of one layer in the file: as the rings hold it
// (engine/kv_format.h), n_embd elements of a float format, or an int8 row as its raw bytes
// (U8: the values, then the per-head fp32 scales).
struct KvFileRow {
  DType dtype;
  int64_t width;  // the tensor's last dimension
};

KvFileRow kv_file_row(const PromptCacheKey& key) {
  if (key.kv_format == "fp32") return {DType::F32, key.n_embd};
  if (key.kv_format == "fp16") return {DType::F16, key.n_embd};
  if (key.kv_format == "bf16") return {DType::BF16, key.n_embd};
  if (key.kv_format == "int8")
    return {DType::U8, int64_t(kv_row_bytes(ComputeDType::Int8, key.n_embd, key.n_head))};
  throw Error("internal: the prompt cache cannot hold K/V format " + key.kv_format);
}

// Whether a K/V tensor's values are finite: every float, or every int8 row's scales (finite
// and not negative; the int8 values are any byte).
bool kv_finite(const TensorView& t, const PromptCacheKey& key) {
  if (t.dtype != DType::U8) return first_non_finite(t.data, t.numel, t.dtype) < 0;
  const size_t row = size_t(t.shape.back()), rows = size_t(t.numel) / row;
  for (size_t r = 0; r < rows; ++r)
    for (int h = 0; h < key.n_head; ++h) {
      float s;
      std::memcpy(&s, t.data + r * row + kv_q8_scale_offset(key.n_embd, h), sizeof s);
      if (!std::isfinite(s) || s < 0) return false;
    }
  return true;
}

std::string join_ids(const std::vector<int>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

// "464,2068,..." into ids, each in [0, vocab); throws naming the problem.
std::vector<int> parse_ids(const std::string& text, int vocab) {
  std::vector<int> ids;
  size_t i = 0;
  while (i < text.size()) {
    long long v = 0;
    size_t digits = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && digits < 10; ++i, ++digits) v = v * 10 + (text[i] - '0');
    if (digits == 0 || v >= vocab) throw Error("its ids are not token ids of this model");
    ids.push_back(int(v));
    if (i < text.size() && text[i++] != ',') throw Error("its ids are not a comma-separated list");
    if (i == text.size() && text.back() == ',') throw Error("its ids end with a comma");
  }
  return ids;
}

const std::string& field(const SafetensorsFile& f, const char* name) {
  const auto it = f.metadata().find(name);
  if (it == f.metadata().end()) throw Error(std::string("it has no \"") + name + "\" in its metadata");
  return it->second;
}

void expect(const SafetensorsFile& f, const char* name, const std::string& want, const char* what) {
  const std::string& got = field(f, name);
  if (got != want) throw Error(std::string("it was written for ") + what + " " + got + ", this run has " + want);
}

}  // namespace

std::string model_fingerprint(const GPT2Config& c, const SafetensorsFile& weights) {
  Fnv f;
  f.add(std::string(kFormat));
  for (int64_t v : {c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head, c.n_inner, c.eos_token_id})
    f.add(v);
  f.add(&c.layer_norm_epsilon, sizeof c.layer_norm_epsilon);
  for (const TensorView& t : weights.tensors()) {
    f.add(t.name);
    f.add(std::string(dtype_name(t.dtype)));
    for (int64_t d : t.shape) f.add(d);
    constexpr size_t kSamples = 16, kSampleBytes = 64;
    for (size_t s = 0; s < kSamples && t.nbytes > 0; ++s) {
      const size_t len = std::min(kSampleBytes, t.nbytes);
      const size_t at = (t.nbytes - len) * s / (kSamples - 1);  // 0 .. nbytes - len
      f.add(t.data + at, len);
    }
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(f.h));
  return hex;
}

PromptCacheKey prompt_cache_key(const Model& model, const Backend& backend) {
  const BackendInfo& info = backend.info();
  PromptCacheKey k;
  k.model = model_fingerprint(model.config, model.file);
  k.device = info.device;
  k.dtype = compute_dtype_name(info.dtype);
  k.kv_format = compute_dtype_name(info.kv_dtype);
  k.n_layer = model.config.n_layer;
  k.n_embd = model.config.n_embd;
  k.n_head = model.config.n_head;
  k.vocab_size = model.config.vocab_size;
  k.max_tokens = backend.context_window();
  return k;
}

PromptCacheImage prompt_cache_image(const PromptCacheKey& key, const std::vector<int>& ids) {
  const KvFileRow row = kv_file_row(key);
  const size_t n = ids.size(), bytes = size_t(key.n_layer) * n * size_t(row.width) * dtype_size(row.dtype);
  nlohmann::json h;
  h["__metadata__"] = {{"format", kFormat}, {"model", key.model}, {"device", key.device}, {"dtype", key.dtype},
                       {"kv_format", key.kv_format}, {"n_tokens", std::to_string(n)}, {"ids", join_ids(ids)}};
  const std::vector<int64_t> shape = {key.n_layer, int64_t(n), row.width};
  h["k"] = {{"dtype", dtype_name(row.dtype)}, {"shape", shape}, {"data_offsets", {0, bytes}}};
  h["v"] = {{"dtype", dtype_name(row.dtype)}, {"shape", shape}, {"data_offsets", {bytes, 2 * bytes}}};
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  PromptCacheImage img;
  const uint64_t len = header.size();
  img.bytes.assign(8 + header.size() + 2 * bytes, '\0');
  for (int i = 0; i < 8; ++i) img.bytes[size_t(i)] = char((len >> (8 * i)) & 0xff);  // little-endian
  std::memcpy(&img.bytes[8], header.data(), header.size());
  img.k_at = 8 + header.size();
  img.v_at = img.k_at + bytes;
  return img;
}

CachedPrompt read_prompt_cache(const SafetensorsFile& f, const PromptCacheKey& key) {
  expect(f, "format", kFormat, "format");
  expect(f, "model", key.model, "model");
  expect(f, "device", key.device, "device");
  expect(f, "dtype", key.dtype, "--dtype");
  expect(f, "kv_format", key.kv_format, "K/V format");
  CachedPrompt c;
  c.ids = parse_ids(field(f, "ids"), key.vocab_size);
  const int64_t n = int64_t(c.ids.size());
  if (field(f, "n_tokens") != std::to_string(n)) throw Error("its n_tokens does not count its ids");
  if (n < 1 || n > key.max_tokens)
    throw Error("it holds " + std::to_string(n) + " tokens, outside [1, " + std::to_string(key.max_tokens) + "]");
  const KvFileRow row = kv_file_row(key);
  const std::vector<int64_t> shape = {key.n_layer, n, row.width};
  const TensorView* t[2] = {f.find("k"), f.find("v")};
  for (const TensorView* x : t) {
    if (!x || x->dtype != row.dtype || x->shape != shape)
      throw Error("its K/V tensors are not " + std::string(dtype_name(row.dtype)) + " [" + std::to_string(key.n_layer) +
                  ", " + std::to_string(n) + ", " + std::to_string(row.width) + "]");
    if (!kv_finite(*x, key)) throw Error("its K/V holds NaN or Inf");
  }
  if (f.tensors().size() != 2) throw Error("it holds tensors other than k and v");
  c.k = t[0]->data;
  c.v = t[1]->data;
  return c;
}

int reusable_prefix(const std::vector<int>& cached, const std::vector<int>& prompt) {
  const size_t limit = std::min(cached.size(), prompt.empty() ? 0 : prompt.size() - 1);
  size_t n = 0;
  while (n < limit && cached[n] == prompt[n]) ++n;
  return int(n);
}

PromptCacheLoad load_prompt_cache(const std::string& path, const PromptCacheKey& key, const std::vector<int>& prompt,
                                  Backend& backend, const KvRing& ring, std::string* note) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    *note = "prompt cache " + path + ": none yet";
    return {};
  }
  try {
    const SafetensorsFile file = SafetensorsFile::open(path);
    const CachedPrompt c = read_prompt_cache(file, key);
    const int n = reusable_prefix(c.ids, prompt);
    if (n > 0) backend.write_kv(0, prompt.data(), 0, n, ring, c.k, c.v, int(c.ids.size()));
    *note = "prompt cache " + path + ": reused " + std::to_string(n) + " of " + std::to_string(prompt.size()) +
            " prompt tokens";
    return {n, c.ids == prompt};
  } catch (const Error& e) {
    std::string why = e.what();
    if (why.rfind(path + ": ", 0) == 0) why = why.substr(path.size() + 2);  // the parser names the file itself
    *note = "prompt cache " + path + " ignored: " + why;
    return {};
  }
}

}  // namespace gpt2
