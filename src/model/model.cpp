#include "model/model.h"

#include <sys/stat.h>

#include <cmath>
#include <set>

#include "base/error.h"

namespace gpt2 {

std::string model_config_path(const std::string& dir) { return dir + "/config.json"; }
std::string model_weights_path(const std::string& dir) { return dir + "/model.safetensors"; }

std::vector<int64_t> ShapeRule::dims(const GPT2Config& c) const {
  auto size = [&c](Dim d) -> int64_t {
    switch (d) {
      case V: return c.vocab_size;
      case P: return c.n_positions;
      case C: return c.n_embd;
      case C3: return 3 * int64_t(c.n_embd);
      case H: return c.n_inner;
      case None: break;
    }
    return 0;
  };
  if (d1 == None) return {size(d0)};
  return {size(d0), size(d1)};
}

int64_t ShapeRule::numel(const GPT2Config& c) const {
  int64_t n = 1;
  for (int64_t d : dims(c)) n *= d;
  return n;
}

namespace {

// Finds tensor `name` and checks it against the config: present, of the rule's shape, of a
// float dtype shared by the whole file. The values are checked last, once the file's layout
// is known to be right.
class TensorChecker {
 public:
  explicit TensorChecker(const Model& m) : m_(m) {}

  const TensorView* need(const std::string& name, const ShapeRule& rule) {
    const SafetensorsFile& f = m_.file;
    expected_.insert(name);
    const TensorView* t = f.find(name);
    if (!t) {
      std::string hint;
      if (f.find("transformer.wte.weight") || f.find("wte.weight"))
        hint = " (this is a Hugging Face checkpoint: convert it with tools/convert_weights.py)";
      refuse(name, "is missing" + hint);
    }
    TensorView want = *t;
    want.shape = rule.dims(m_.config);
    if (t->shape != want.shape)
      refuse(name, "has shape " + t->shape_str() + " but config.json implies " + want.shape_str());
    if (!is_float(t->dtype))
      refuse(name, std::string("is ") + dtype_name(t->dtype) + "; weights must be F32, F16 or BF16");
    if (expected_.size() == 1) dtype_ = t->dtype;
    if (t->dtype != dtype_)
      refuse(name, std::string("is ") + dtype_name(t->dtype) + " but the others are " + dtype_name(dtype_) +
                       " (one dtype per file)");
    bound_.push_back(t);
    return t;
  }

  // Refuses NaN and Inf in any tensor need() found, for both backends alike.
  void refuse_non_finite() const {
    for (const TensorView* t : bound_) {
      const int64_t bad = first_non_finite(t->data, t->numel, t->dtype);
      if (bad >= 0)
        refuse(t->name, std::string("holds ") + (std::isnan(t->at(bad)) ? "NaN" : "Inf") + " at element " +
                            std::to_string(bad) + " (corrupted or badly converted weights)");
    }
  }

  // Refuses any tensor no need() asked for.
  void refuse_unexpected() const {
    for (const TensorView& t : m_.file.tensors())
      if (!expected_.count(t.name))
        throw Error(m_.file.source() + ": unexpected tensor \"" + t.name + "\" (config.json says n_layer=" +
                    std::to_string(m_.config.n_layer) + "; is the config from another model?)");
  }

 private:
  [[noreturn]] void refuse(const std::string& name, const std::string& what) const {
    throw Error(m_.file.source() + ": tensor \"" + name + "\" " + what);
  }

  const Model& m_;
  std::set<std::string> expected_;
  std::vector<const TensorView*> bound_;
  DType dtype_{};
};

}  // namespace

void bind_tensors(Model& m) {
  TensorChecker check(m);
  for_each_model_tensor([&](const char* name, const ShapeRule& rule, const TensorView*& view) {
    view = check.need(name, rule);
  }, m);
  m.layers.assign(size_t(m.config.n_layer), LayerTensors{});
  for (int l = 0; l < m.config.n_layer; ++l) {
    const std::string prefix = "h." + std::to_string(l) + ".";
    for_each_layer_tensor([&](const char* name, const ShapeRule& rule, const TensorView*& view) {
      view = check.need(prefix + name, rule);
    }, m.layers[size_t(l)]);
  }
  check.refuse_unexpected();
  check.refuse_non_finite();
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
