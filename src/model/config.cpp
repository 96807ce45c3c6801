#include "model/config.h"

#include <limits>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file_io.h"

namespace gpt2 {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error(source + ": " + what);
}

int read_int(const json& j, const char* key, const std::string& source, int lo, int hi) {
  auto it = j.find(key);
  if (it == j.end()) fail(source, std::string("missing key \"") + key + "\"");
  if (!it->is_number_integer())
    fail(source, std::string("\"") + key + "\" must be an integer, got " + it->dump());
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi)
    fail(source, std::string("\"") + key + "\" = " + std::to_string(v) + " is outside [" +
                     std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(v);
}

}  // namespace

int64_t GPT2Config::n_params() const {
  const int64_t C = n_embd, V = vocab_size, P = n_positions, H = n_inner;
  const int64_t per_layer = 2 * 2 * C                 // ln_1, ln_2
                            + C * 3 * C + 3 * C       // qkv
                            + C * C + C               // attention projection
                            + C * H + H + H * C + C;  // MLP
  return V * C + P * C + n_layer * per_layer + 2 * C;
}

GPT2Config parse_config(std::string_view json_text, const std::string& source) {
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(source, "not valid JSON");
  if (!j.is_object()) fail(source, "must be a JSON object");

  using L = ConfigLimits;
  GPT2Config c;
  c.vocab_size = read_int(j, "vocab_size", source, 1, L::kMaxVocab);
  // Hugging Face writes both n_positions and n_ctx in older configs; they are the same fact.
  c.n_positions = read_int(j, j.contains("n_positions") ? "n_positions" : "n_ctx", source, 1,
                           L::kMaxPositions);
  c.n_embd = read_int(j, "n_embd", source, 1, L::kMaxEmbd);
  c.n_layer = read_int(j, "n_layer", source, 1, L::kMaxLayers);
  c.n_head = read_int(j, "n_head", source, 1, L::kMaxEmbd);
  if (c.n_embd % c.n_head != 0)
    fail(source, "n_embd (" + std::to_string(c.n_embd) + ") is not divisible by n_head (" +
                     std::to_string(c.n_head) + ")");
  if (j.contains("n_inner") && !j["n_inner"].is_null())
    c.n_inner = read_int(j, "n_inner", source, 1, 4 * L::kMaxEmbd);
  else
    c.n_inner = 4 * c.n_embd;

  if (j.contains("layer_norm_epsilon")) {
    const json& e = j["layer_norm_epsilon"];
    // Checked again as a float: a tiny positive double (1e-50) would round to an epsilon of 0.
    if (!e.is_number() || !(e.get<double>() > 0.0) || e.get<double>() > 1.0 || !(e.get<float>() > 0.0f))
      fail(source, "\"layer_norm_epsilon\" must be a number in (0, 1], got " + e.dump());
    c.layer_norm_epsilon = e.get<float>();
  }
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null())
    c.eos_token_id = read_int(j, "eos_token_id", source, 0, c.vocab_size - 1);
  else
    c.eos_token_id = c.vocab_size - 1;

  if (j.contains("activation_function")) {
    const json& a = j["activation_function"];
    // gelu_pytorch_tanh is the same tanh approximation under another name.
    if (!a.is_string() || (a != "gelu_new" && a != "gelu_pytorch_tanh"))
      fail(source, "activation_function " + a.dump() + " is not supported (GPT-2 uses gelu_new)");
  }
  for (const char* flag : {"scale_attn_by_inverse_layer_idx", "add_cross_attention"}) {
    if (j.contains(flag) && j[flag].is_boolean() && j[flag].get<bool>())
      fail(source, std::string("\"") + flag + "\": true is not supported by gpt2-gen");
  }

  if (c.n_params() > L::kMaxParams)
    fail(source, "the model would have " + std::to_string(c.n_params()) +
                     " parameters, more than gpt2-gen accepts (" + std::to_string(L::kMaxParams) + ")");
  if (int64_t(c.n_layer) * c.n_positions * c.n_embd > L::kMaxKvElements)
    fail(source, "n_layer * n_positions * n_embd is too large for a K/V cache");
  return c;
}

GPT2Config load_config(const std::string& path) {
  std::string text, why;
  if (!read_regular_file(path, &text, &why)) throw Error(path + ": cannot read the model's config.json: " + why);
  return parse_config(text, path);
}

}  // namespace gpt2
