// A GPT-2 model directory: config.json + model.safetensors (+ vocab.json, merges.txt for the
// tokenizer). load_model() validates that the weight file holds exactly the tensors the
// config implies, with the right shapes, and exposes them per layer. The tensors stay in
// the mapped file; each backend copies them into its own memory and precision.
//
// Tensor names and layouts (written by tools/convert_weights.py; C = n_embd, H = n_inner):
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
#include <string>
#include <vector>

#include "config.h"
#include "safetensors.h"

namespace gpt2 {

struct LayerTensors {
  const TensorView* ln_1_w;   // (C)
  const TensorView* ln_1_b;   // (C)
  const TensorView* qkv_w;    // (3C, C)
  const TensorView* qkv_b;    // (3C)
  const TensorView* proj_w;   // (C, C)
  const TensorView* proj_b;   // (C)
  const TensorView* ln_2_w;   // (C)
  const TensorView* ln_2_b;   // (C)
  const TensorView* fc_w;     // (H, C)
  const TensorView* fc_b;     // (H)
  const TensorView* fc_proj_w;  // (C, H)
  const TensorView* fc_proj_b;  // (C)
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

  DType stored_dtype() const { return wte->dtype; }
  size_t weight_bytes() const { return file.data_bytes(); }
};

// Paths inside a model directory.
std::string model_config_path(const std::string& dir);
std::string model_weights_path(const std::string& dir);

// Loads and validates a converted model directory. Throws gpt2::Error with one line naming
// the file and the tensor, and, for a missing directory, how to convert a model.
Model load_model(const std::string& dir);

// Checks that `file` holds exactly the tensors `config` implies (used by load_model and the
// fuzzer); fills the views in `model`.
void bind_tensors(Model& model);

}  // namespace gpt2
