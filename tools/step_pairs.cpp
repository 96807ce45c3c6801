// bench-step-pairs: the CPU decode step under two settings, A and B, timed in pairs in one
// process, so that a noisy, shared machine slows both alike. Each setting has a backend of its
// own, prefilled to its context; then each pair runs one step of A and one of B (the order
// alternating), each step at the same position, so the work never changes.
//
//   bench-step-pairs MODEL_DIR A B [--pairs N] [--threads T]
//   A, B: WEIGHTS/KV@CONTEXT, e.g. fp16/fp16@51 and fp16/fp16@951 (weights and K/V formats:
//         fp32, fp16, bf16, int8; the context the step attends over, 1 to the model's window)
//
// Prints one JSON line: each setting's median and mean step (ms), B over A as the ratio of the
// medians, of the means and the median of the pairs' ratios, and in how many pairs B was faster.
// What it is for: the cost of a long context (issue 24: the last 10% of a 1000-token run against
// the first 10%) and A/B comparisons that end-to-end runs on a busy machine cannot resolve.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/backend_cpu.h"
#include "model/model.h"

namespace gpt2 {
namespace {

struct Setting {
  std::string text;
  ComputeDType weights = ComputeDType::F16, kv = ComputeDType::F32;
  int context = 0;
};

ComputeDType parse_dtype(const std::string& s, const std::string& spec) {
  if (s == "fp32") return ComputeDType::F32;
  if (s == "fp16") return ComputeDType::F16;
  if (s == "bf16") return ComputeDType::BF16;
  if (s == "int8") return ComputeDType::Int8;
  throw std::runtime_error("setting '" + spec + "': unknown format '" + s + "'; use fp32, fp16, bf16 or int8");
}

Setting parse_setting(const std::string& spec) {
  const size_t slash = spec.find('/'), at = spec.find('@');
  if (slash == std::string::npos || at == std::string::npos || at < slash)
    throw std::runtime_error("setting '" + spec + "': write WEIGHTS/KV@CONTEXT, e.g. fp16/fp16@951");
  Setting s;
  s.text = spec;
  s.weights = parse_dtype(spec.substr(0, slash), spec);
  s.kv = parse_dtype(spec.substr(slash + 1, at - slash - 1), spec);
  const std::string ctx = spec.substr(at + 1);
  char* end = nullptr;
  const long c = std::strtol(ctx.c_str(), &end, 10);
  if (ctx.empty() || *end != '\0' || c < 1 || c > 1 << 20)
    throw std::runtime_error("setting '" + spec + "': the context must be a positive whole number");
  s.context = int(c);
  return s;
}

// A backend of the setting, prefilled with context - 1 arbitrary tokens: its step then runs at
// position context - 1 and attends over `context` positions.
std::unique_ptr<Backend> prepared(const Model& model, const Setting& s, int threads) {
  BackendOptions o;
  o.dtype = s.weights;
  o.kv_dtype = s.kv;
  o.threads = threads;
  auto b = make_cpu_backend(model, o);
  if (s.context > b->kv_capacity())
    throw std::runtime_error("setting '" + s.text + "': the context is longer than the model's window (" +
                             std::to_string(b->kv_capacity()) + ")");
  std::vector<int> ids(size_t(s.context - 1));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int((i * 7919) % 50000);
  if (!ids.empty()) b->forward(ids.data(), int(ids.size()), 0, KvRing{b->kv_capacity(), 0});
  return b;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double mean(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m += x;
  return m / double(v.size());
}

int run(int argc, char** argv) {
  if (argc < 4) throw std::runtime_error("usage: bench-step-pairs MODEL_DIR A B [--pairs N] [--threads T]");
  int pairs = 150, threads = 0;
  for (int i = 4; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (i + 1 >= argc || (flag != "--pairs" && flag != "--threads"))
      throw std::runtime_error("unknown or incomplete option '" + flag + "'; use --pairs N or --threads T");
    const int v = std::atoi(argv[i + 1]);
    if (v < 1) throw std::runtime_error(flag + " needs a positive whole number");
    (flag == "--pairs" ? pairs : threads) = v;
  }
  const Setting set[2] = {parse_setting(argv[2]), parse_setting(argv[3])};
  const Model model = load_model(argv[1]);
  std::unique_ptr<Backend> b[2] = {prepared(model, set[0], threads), prepared(model, set[1], threads)};
  const int token = 262;
  auto step = [&](int k) {
    const auto t0 = std::chrono::steady_clock::now();
    b[k]->forward(&token, 1, set[k].context - 1, KvRing{b[k]->kv_capacity(), 0});
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int w = 0; w < 3; ++w) step(0), step(1);
  std::vector<double> ms[2], ratio;
  int b_faster = 0;
  for (int p = 0; p < pairs; ++p) {
    double t[2];
    const int first = p % 2;
    t[first] = step(first);
    t[1 - first] = step(1 - first);
    ms[0].push_back(t[0]), ms[1].push_back(t[1]), ratio.push_back(t[1] / t[0]);
    b_faster += t[1] < t[0];
  }
  std::printf(
      "{\"a\": \"%s\", \"b\": \"%s\", \"pairs\": %d, \"a_median_ms\": %.3f, \"b_median_ms\": %.3f, "
      "\"a_mean_ms\": %.3f, \"b_mean_ms\": %.3f, \"b_over_a_medians\": %.4f, \"b_over_a_means\": %.4f, "
      "\"b_over_a_median_pair\": %.4f, \"b_faster_pairs\": %d}\n",
      set[0].text.c_str(), set[1].text.c_str(), pairs, median(ms[0]), median(ms[1]), mean(ms[0]), mean(ms[1]),
      median(ms[1]) / median(ms[0]), mean(ms[1]) / mean(ms[0]), median(ratio), b_faster);
  return 0;
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  try {
    return gpt2::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-step-pairs: %s\n", e.what());
    return 2;
  }
}
