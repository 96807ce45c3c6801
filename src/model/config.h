// GPT2Config: the hyper-parameters of a GPT-2 model, read from the model directory's
// config.json (the converter's output, or a Hugging Face config.json: same keys).
// This struct is the single source of truth for every shape in the program.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt2 {

struct GPT2Config {
  int vocab_size = 0;     // V: 50257 for every OpenAI GPT-2
  int n_positions = 0;    // P: learned positions, the context length (1024)
  int n_embd = 0;         // C: channels
  int n_layer = 0;        // L: transformer blocks
  int n_head = 0;         // NH: attention heads; C % NH == 0
  int n_inner = 0;        // MLP hidden width, 4*C unless the config says otherwise
  float layer_norm_epsilon = 1e-5f;
  int eos_token_id = 50256;

  int head_dim() const { return n_embd / n_head; }  // HS = C / NH
  // Number of parameters (embeddings counted once: the LM head is tied to wte).
  int64_t n_params() const;
};

// Parses config.json text; `source` names the file in error messages. Validates every field
// (positive, n_embd % n_head == 0, activation gelu_new, sizes within sane bounds so that an
// absurd config is refused before anything is allocated). Throws gpt2::Error.
GPT2Config parse_config(std::string_view json_text, const std::string& source);
GPT2Config load_config(const std::string& path);

// Upper bounds that keep every derived size (weights, K/V ring, activations) far from
// overflowing and from asking for terabytes; GPT-2 XL is well inside them.
struct ConfigLimits {
  static constexpr int kMaxVocab = 1 << 20;
  static constexpr int kMaxPositions = 1 << 16;
  static constexpr int kMaxEmbd = 1 << 15;
  static constexpr int kMaxLayers = 1024;
  static constexpr int64_t kMaxParams = int64_t(20) * 1000 * 1000 * 1000;  // 20 B
  static constexpr int64_t kMaxKvElements = int64_t(1) << 33;              // per K or V, all layers
};

}  // namespace gpt2
