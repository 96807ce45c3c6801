// gpt2-dump-logits: runs a model on given token ids with any backend and writes what a
// comparison with another implementation needs (tools/hf_compare.py uses it against Hugging
// Face): the last position's logits as raw little-endian float32, and the greedy continuation
// with the top-2 margin of every step, as one JSON object on stdout.
//
//   gpt2-dump-logits -m DIR --ids 2061,318,509 [--device auto|cpu|cuda] [--dtype fp32|fp16|bf16|int8]
//                    [--kv-dtype fp32|fp16|bf16|int8] [--out logits.f32] [--steps N] [--no-cache]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "app/backend_choice.h"
#include "base/error.h"
#include "engine/backend.h"
#include "model/model.h"

namespace {

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "error: %s\nusage: gpt2-dump-logits -m DIR --ids 1,2,3 [--device auto|cpu|cuda] "
               "[--dtype fp32|fp16|bf16|int8] [--kv-dtype fp32|fp16|bf16|int8] [--out FILE] [--steps N] [--no-cache]\n",
               why.c_str());
  std::exit(2);
}

gpt2::ComputeDType parse_dtype(const std::string& flag, const std::string& d) {
  using gpt2::ComputeDType;
  if (d == "fp32") return ComputeDType::F32;
  if (d == "fp16") return ComputeDType::F16;
  if (d == "bf16") return ComputeDType::BF16;
  if (d == "int8") return ComputeDType::Int8;
  usage(flag + " " + d);
}

std::vector<int> parse_ids(const std::string& s) {
  std::vector<int> ids;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) {
    try {
      size_t used = 0;
      ids.push_back(std::stoi(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      usage("--ids: \"" + item + "\" is not a token id");
    }
  }
  if (ids.empty()) usage("--ids is empty");
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace gpt2;
  std::string model_dir, out_path, ids_arg;
  BackendOptions options;
  int steps = 0;
  bool cache = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "-m" || a == "--model") model_dir = value();
    else if (a == "--ids") ids_arg = value();
    else if (a == "--out") out_path = value();
    else if (a == "--steps") steps = std::atoi(value().c_str());
    else if (a == "--no-cache") cache = false;
    else if (a == "--device") {
      const std::string d = value();
      options.device = d == "cpu" ? Device::Cpu : d == "cuda" ? Device::Cuda : d == "auto" ? Device::Auto
                                                                                            : (usage("--device " + d), Device::Auto);
    } else if (a == "--dtype") {
      options.dtype = parse_dtype(a, value());
    } else if (a == "--kv-dtype") {
      options.kv_dtype = parse_dtype(a, value());
    } else usage("unknown argument " + a);
  }
  if (model_dir.empty() || ids_arg.empty()) usage("-m and --ids are required");
  const std::vector<int> prompt = parse_ids(ids_arg);
  try {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    const Model model = load_model(model_dir);
    std::string note;
    auto backend = make_backend(model, options, &note);
    if (!note.empty()) std::fprintf(stderr, "gpt2-dump-logits: %s\n", note.c_str());
    const auto t1 = clock::now();
    const int V = model.config.vocab_size, cap = backend->kv_capacity();
    if (int(prompt.size()) + steps > std::min(cap, model.config.n_positions))
      throw Error("prompt + steps exceed the context");
    for (int id : prompt)
      if (id < 0 || id >= V) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");

    std::vector<int> tokens = prompt;
    const KvRing ring{cap, 0};
    backend->forward(tokens.data(), int(tokens.size()), 0, ring);
    std::vector<float> logits(static_cast<size_t>(V));
    backend->read_logits(logits.data());
    const auto t2 = clock::now();
    if (!out_path.empty()) {
      std::ofstream f(out_path, std::ios::binary | std::ios::trunc);
      f.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * sizeof(float)));
      if (!f) throw Error("cannot write " + out_path);
    }

    SamplingParams greedy;
    greedy.temperature = 0;
    std::vector<int> generated;
    std::vector<double> margins;
    for (int s = 0; s < steps; ++s) {
      if (s > 0) backend->read_logits(logits.data());  // the step just run (s == 0: the prompt's)
      std::vector<float> top(logits);
      std::partial_sort(top.begin(), top.begin() + 2, top.end(), std::greater<float>());
      margins.push_back(double(top[0]) - double(top[1]));
      const int next = backend->sample(greedy, 0.0);
      generated.push_back(next);
      tokens.push_back(next);
      if (s + 1 < steps) {
        if (cache)
          backend->forward(&tokens.back(), 1, int(tokens.size()) - 1, ring);
        else
          backend->forward(tokens.data(), int(tokens.size()), 0, ring);
      }
    }
    const auto t3 = clock::now();
    const BackendInfo& info = backend->info();
    nlohmann::json j;
    j["device"] = info.device;
    j["device_name"] = info.device_name;
    j["dtype"] = compute_dtype_name(info.dtype);
    j["vocab_size"] = V;
    j["prompt_ids"] = prompt;
    j["greedy"] = generated;
    j["top2_margins"] = margins;
    j["logits_file"] = out_path;
    j["load_ms"] = std::chrono::duration<double, std::milli>(t1 - t0).count();
    j["prefill_ms"] = std::chrono::duration<double, std::milli>(t2 - t1).count();
    j["steps_ms"] = std::chrono::duration<double, std::milli>(t3 - t2).count();
    j["weight_bytes"] = info.weight_bytes;
    j["kv_bytes"] = info.kv_bytes;
    j["kv_dtype"] = compute_dtype_name(info.kv_dtype);
    j["peak_device_bytes"] = info.peak_device_bytes;
    std::cout << j.dump() << "\n";
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
