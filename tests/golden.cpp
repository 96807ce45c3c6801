#include "golden.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/generator.h"

#include "model/safetensors.h"
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
  const auto proc = nlohmann::json::parse(read_file(dir + "/reference_processors.json"));
  for (const auto& c : proc["cases"]) {
    GoldenProcessed p;
    const auto& s = c["settings"];
    p.settings = s.dump();
    p.params.repeat_penalty = s.value("repetition_penalty", 1.0f);
    p.params.no_repeat_ngram_size = s.value("no_repeat_ngram_size", 0);
    for (const auto& [key, value] : s.items())
      if (key != "repetition_penalty" && key != "no_repeat_ngram_size")
        throw std::runtime_error("reference_processors.json: unknown setting " + key);
    p.greedy = {c["prompt"].get<std::vector<int>>(), c["new_tokens"].get<std::vector<int>>(),
                c["min_top2_margin"].get<double>()};
    g.processed.push_back(std::move(p));
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

namespace {

std::vector<float> last_logits(Backend& b, size_t V) {
  std::vector<float> v(V);
  b.read_logits(v.data());
  return v;
}

}  // namespace

double expect_last_logits_match(Backend& backend, double tolerance) {
  const KvRing ring{backend.kv_capacity(), 0};
  double worst = 0;
  for (const auto& seq : tiny_golden().sequences) {
    backend.forward(seq.ids.data(), int(seq.ids.size()), 0, ring);
    const std::vector<float> got = last_logits(backend, seq.logits_last.size());
    const double err = max_rel_error(got.data(), seq.logits_last.data(), got.size());
    EXPECT_LE(err, tolerance) << seq.name;
    worst = std::fmax(worst, err);
  }
  return worst;
}

double expect_subset_logits_match(Backend& backend, double tolerance) {
  const Golden& g = tiny_golden();
  const size_t S = g.subset.size();
  const int cap = backend.kv_capacity();
  double worst = 0;
  for (const auto& seq : g.sequences) {
    auto check_row = [&](int t, const char* mode) {
      const std::vector<float> full = last_logits(backend, seq.logits_last.size());
      std::vector<float> got(S);
      for (size_t j = 0; j < S; ++j) got[j] = full[size_t(g.subset[j])];
      const double err = max_rel_error(got.data(), seq.logits_subset.data() + size_t(t) * S, S);
      EXPECT_LE(err, tolerance) << seq.name << " " << mode << " position " << t;
      worst = std::fmax(worst, err);
    };
    for (int t = 0; t < int(seq.ids.size()); ++t) {
      backend.forward(seq.ids.data(), t + 1, 0, KvRing{cap, 0});
      check_row(t, "no-cache");
    }
    const KvRing wrapped{cap, cap - 3};
    for (int t = 0; t < int(seq.ids.size()); ++t) {
      backend.forward(&seq.ids[size_t(t)], 1, t, wrapped);
      check_row(t, "cached");
    }
  }
  return worst;
}

void expect_processed_continuation_matches(Backend& backend, const GoldenProcessed& c, bool cache) {
  GenerationOptions opt;
  opt.use_cache = cache;
  opt.ignore_eos = true;
  opt.sampling.temperature = 0;
  opt.sampling.penalties = c.params;
  opt.max_new_tokens = int(c.greedy.new_tokens.size());
  const GenerationResult r = generate(backend, c.greedy.prompt, opt, nullptr);
  EXPECT_EQ(r.generated, c.greedy.new_tokens)
      << c.settings << ", " << c.greedy.prompt.size() << "-token prompt, " << (cache ? "cache" : "no-cache");
}

}  // namespace gpt2::test
