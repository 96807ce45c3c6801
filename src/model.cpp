#include "model.h"

#include <sys/stat.h>

#include <set>

#include "error.h"

namespace gpt2 {

std::string model_config_path(const std::string& dir) { return dir + "/config.json"; }
std::string model_weights_path(const std::string& dir) { return dir + "/model.safetensors"; }

void bind_tensors(Model& m) {
  const GPT2Config& c = m.config;
  const SafetensorsFile& f = m.file;
  const int64_t C = c.n_embd, H = c.n_inner;
  std::set<std::string> expected;
  DType dtype{};
  bool first = true;

  auto need = [&](const std::string& name, std::vector<int64_t> shape) -> const TensorView* {
    expected.insert(name);
    const TensorView* t = f.find(name);
    if (!t) {
      std::string hint;
      if (f.find("transformer.wte.weight") || f.find("wte.weight"))
        hint = " (this is a Hugging Face checkpoint: convert it with tools/convert_weights.py)";
      throw Error(f.source() + ": tensor \"" + name + "\" is missing" + hint);
    }
    TensorView want = *t;
    want.shape = shape;
    if (t->shape != shape)
      throw Error(f.source() + ": tensor \"" + name + "\" has shape " + t->shape_str() +
                  " but config.json implies " + want.shape_str());
    if (!is_float(t->dtype))
      throw Error(f.source() + ": tensor \"" + name + "\" is " + dtype_name(t->dtype) +
                  "; weights must be F32, F16 or BF16");
    if (first) { dtype = t->dtype; first = false; }
    if (t->dtype != dtype)
      throw Error(f.source() + ": tensor \"" + name + "\" is " + dtype_name(t->dtype) +
                  " but the others are " + dtype_name(dtype) + " (one dtype per file)");
    return t;
  };

  m.wte = need("wte", {c.vocab_size, C});
  m.wpe = need("wpe", {c.n_positions, C});
  m.ln_f_w = need("ln_f.weight", {C});
  m.ln_f_b = need("ln_f.bias", {C});
  m.layers.clear();
  for (int l = 0; l < c.n_layer; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    LayerTensors t{};
    t.ln_1_w = need(p + "ln_1.weight", {C});
    t.ln_1_b = need(p + "ln_1.bias", {C});
    t.qkv_w = need(p + "attn.qkv.weight", {3 * C, C});
    t.qkv_b = need(p + "attn.qkv.bias", {3 * C});
    t.proj_w = need(p + "attn.proj.weight", {C, C});
    t.proj_b = need(p + "attn.proj.bias", {C});
    t.ln_2_w = need(p + "ln_2.weight", {C});
    t.ln_2_b = need(p + "ln_2.bias", {C});
    t.fc_w = need(p + "mlp.fc.weight", {H, C});
    t.fc_b = need(p + "mlp.fc.bias", {H});
    t.fc_proj_w = need(p + "mlp.proj.weight", {C, H});
    t.fc_proj_b = need(p + "mlp.proj.bias", {C});
    m.layers.push_back(t);
  }
  for (const TensorView& t : f.tensors())
    if (!expected.count(t.name))
      throw Error(f.source() + ": unexpected tensor \"" + t.name + "\" (config.json says n_layer=" +
                  std::to_string(c.n_layer) + "; is the config from another model?)");
}

Model load_model(const std::string& dir) {
  struct stat st{};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw Error("model directory \"" + dir + "\" not found; convert a model first, e.g. "
                "`python3 tools/convert_weights.py gpt2` (writes models/gpt2), or pass -m DIR");
  Model m;
  m.dir = dir;
  m.config = load_config(model_config_path(dir));
  m.file = SafetensorsFile::open(model_weights_path(dir));
  bind_tensors(m);
  return m;
}

}  // namespace gpt2
