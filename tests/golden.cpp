#include "golden.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "safetensors.h"
#include "test_support.h"

namespace gpt2::test {
namespace {

std::vector<float> floats(const SafetensorsFile& f, const std::string& name) {
  const TensorView* t = f.find(name);
  if (!t) throw std::runtime_error("golden tensor missing: " + name);
  std::vector<float> v(size_t(t->numel));
  t->to_float(v.data());
  return v;
}

Golden load() {
  const std::string dir = shared_dir() + "/golden/tiny-gpt2";
  Golden g;
  const auto ref = nlohmann::json::parse(read_file(dir + "/reference.json"));
  const SafetensorsFile logits = SafetensorsFile::open(dir + "/reference_logits.safetensors");
  for (float v : floats(logits, "vocab_subset")) g.subset.push_back(int(v));
  for (const auto& s : ref["sequences"]) {
    GoldenSequence seq;
    seq.name = s["name"].get<std::string>();
    seq.ids = s["input_ids"].get<std::vector<int>>();
    seq.logits_last = floats(logits, seq.name + "_logits_last");
    seq.logits_subset = floats(logits, seq.name + "_logits_subset");
    g.sequences.push_back(std::move(seq));
  }
  for (const auto& r : ref["greedy"]) {
    g.greedy.push_back({r["prompt"].get<std::vector<int>>(), r["new_tokens"].get<std::vector<int>>(),
                        r["min_top2_margin"].get<double>()});
  }
  return g;
}

}  // namespace

const Golden& tiny_golden() {
  static const Golden g = load();
  return g;
}

double max_rel_error(const float* a, const float* b, size_t n) {
  double max_diff = 0, max_ref = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(a[i])) return INFINITY;
    max_diff = std::fmax(max_diff, std::fabs(double(a[i]) - b[i]));
    max_ref = std::fmax(max_ref, std::fabs(double(b[i])));
  }
  return max_diff / max_ref;
}

}  // namespace gpt2::test
