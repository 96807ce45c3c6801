// A GPT-2 model directory: config.json + model.safetensors (+ vocab.json, merges.txt for the
// tokenizer). load_model() validates that the weight file holds exactly the tensors the
// config implies, with the right shapes and finite values, and exposes them per layer. The
// tensors stay in the mapped file; each backend copies them into its own memory and precision.
//
// The tensors are listed once, in for_each_model_tensor() and for_each_layer_tensor() below
// (llm.c's ParameterTensors): the loader's checks, the CPU backend's copies and the CUDA
// backend's memory plan and upload are loops over those lists. Names in the file (written by
// tools/convert_weights.py, whose list is tools/gpt2_format.py; C = n_embd, H = n_inner):
//   wte [V, C]   wpe [P, C]   ln_f.weight, ln_f.bias [C]
//   h.{l}.ln_1.weight, .bias [C]         h.{l}.ln_2.weight, .bias [C]
//   h.{l}.attn.qkv.weight  [3C, C]  .bias [3C]    (rows: q for all heads, then k, then v)
//   h.{l}.attn.proj.weight [C, C]   .bias [C]
//   h.{l}.mlp.fc.weight    [H, C]   .bias [H]
//   h.{l}.mlp.proj.weight  [C, H]   .bias [C]
// Linear weights are [out, in] (torch.nn.Linear's layout): the converter transposes Hugging
// Face's Conv1D [in, out]. The names differ from Hugging Face's on purpose, so an unconverted
// checkpoint is refused instead of being read with transposed square matrices.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/safetensors.h"

namespace gpt2 {

// A tensor's shape as a rule over the config: [d0] or [d0, d1]. Matrices (rank 2) are the
// weights a backend may keep in a lower precision; vectors (LayerNorm parameters, biases)
// stay fp32.
struct ShapeRule {
  enum Dim { None, V, P, C, C3, H };
  Dim d0 = None, d1 = None;

  std::vector<int64_t> dims(const GPT2Config& c) const;
  int64_t numel(const GPT2Config& c) const;
  bool is_matrix() const { return d1 != None; }
};

// The model-level tensors: visit(name in the file, shape rule, the member of each of `ts`).
template <typename Visit, typename... Ts>
void for_each_model_tensor(Visit&& visit, Ts&... ts) {
  using S = ShapeRule;
  visit("wte", S{S::V, S::C}, ts.wte...);  // also the LM head (tied)
  visit("wpe", S{S::P, S::C}, ts.wpe...);
  visit("ln_f.weight", S{S::C}, ts.ln_f_w...);
  visit("ln_f.bias", S{S::C}, ts.ln_f_b...);
}

// The tensors of one transformer block, named in the file after the prefix "h.{l}.".
template <typename Visit, typename... Ls>
void for_each_layer_tensor(Visit&& visit, Ls&... ls) {
  using S = ShapeRule;
  visit("ln_1.weight", S{S::C}, ls.ln_1_w...);
  visit("ln_1.bias", S{S::C}, ls.ln_1_b...);
  visit("attn.qkv.weight", S{S::C3, S::C}, ls.qkv_w...);
  visit("attn.qkv.bias", S{S::C3}, ls.qkv_b...);
  visit("attn.proj.weight", S{S::C, S::C}, ls.attn_proj_w...);
  visit("attn.proj.bias", S{S::C}, ls.attn_proj_b...);
  visit("ln_2.weight", S{S::C}, ls.ln_2_w...);
  visit("ln_2.bias", S{S::C}, ls.ln_2_b...);
  visit("mlp.fc.weight", S{S::H, S::C}, ls.fc_w...);
  visit("mlp.fc.bias", S{S::H}, ls.fc_b...);
  visit("mlp.proj.weight", S{S::C, S::H}, ls.fc_proj_w...);
  visit("mlp.proj.bias", S{S::C}, ls.fc_proj_b...);
}

struct LayerTensors {
  const TensorView *ln_1_w, *ln_1_b;            // (C)
  const TensorView *qkv_w, *qkv_b;              // (3C, C), (3C)
  const TensorView *attn_proj_w, *attn_proj_b;  // (C, C), (C)
  const TensorView *ln_2_w, *ln_2_b;            // (C)
  const TensorView *fc_w, *fc_b;                // (H, C), (H)
  const TensorView *fc_proj_w, *fc_proj_b;      // (C, H), (C)
};

struct Model {
  Model() = default;
  Model(const Model&) = delete;  // the views point into `file`: moving is fine, copying is not
  Model(Model&&) = default;
  Model& operator=(Model&&) = default;

  std::string dir;
  GPT2Config config;
  SafetensorsFile file;
  const TensorView* wte = nullptr;  // (V, C), also the LM head
  const TensorView* wpe = nullptr;  // (P, C)
  const TensorView* ln_f_w = nullptr;
  const TensorView* ln_f_b = nullptr;
  std::vector<LayerTensors> layers;
};

// Paths inside a model directory.
std::string model_config_path(const std::string& dir);
std::string model_weights_path(const std::string& dir);

// Loads and validates a converted model directory. Throws gpt2::Error with one line naming
// the file and the tensor, and, for a missing directory, how to convert a model.
Model load_model(const std::string& dir);

// Checks that `file` holds exactly the tensors `config` implies, each of one float dtype and
// free of NaN and Inf (used by load_model and the fuzzer); fills the views in `model`.
void bind_tensors(Model& model);

}  // namespace gpt2
