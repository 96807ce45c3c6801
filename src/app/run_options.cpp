#include "app/run_options.h"

#include <random>

namespace gpt2 {
namespace {

// A --dtype / --kv-dtype value (the CLI checked it is one of these four).
ComputeDType dtype_named(const std::string& name) {
  return name == "fp16"   ? ComputeDType::F16
         : name == "bf16" ? ComputeDType::BF16
         : name == "int8" ? ComputeDType::Int8
                          : ComputeDType::F32;
}

}  // namespace

BackendOptions backend_options(const CliOptions& o) {
  BackendOptions b;
  b.device = o.device == "cpu" ? Device::Cpu : o.device == "cuda" ? Device::Cuda : Device::Auto;
  if (!o.dtype.empty()) b.dtype = dtype_named(o.dtype);
  if (!o.kv_dtype.empty()) b.kv_dtype = dtype_named(o.kv_dtype);
  b.threads = o.threads;
  b.kv_capacity = o.ctx_size;
  b.n_seqs = !o.batch_file.empty() ? o.parallel : o.num_beams;  // beams are sequences 0..N-1
  return b;
}

GenerationOptions generation_options(const CliOptions& o, const GPT2Config& cfg, uint64_t seed) {
  GenerationOptions g;
  g.max_new_tokens = o.max_new_tokens;
  g.use_cache = !o.no_cache;
  g.ignore_eos = o.ignore_eos;
  g.context_shift = o.context_shift;
  g.sampling = SamplingParams{o.temperature, o.top_k, o.top_p};
  g.sampling.min_p = o.min_p;
  g.sampling.penalties = {o.repeat_penalty, o.repeat_last_n, o.presence_penalty, o.frequency_penalty,
                          o.no_repeat_ngram_size};
  g.seed = seed;
  g.eos_id = cfg.eos_token_id;
  return g;
}

uint64_t run_seed(const CliOptions& o) {
  return o.seed ? *o.seed : std::random_device{}() * 0x9e3779b97f4a7c15ull ^ std::random_device{}();
}

}  // namespace gpt2
