// The sampling rules: one definition, implemented here for the CPU and mirrored by the CUDA
// sampling kernel (kernels/sampling.cu), which is tested against sample_token().
//
// Given the logits z of the last position (after the logits processors of processors.h:
// penalties and n-gram blocking), a uniform draw u in [0, 1) and the parameters:
//   1. temperature == 0: greedy, argmax z (the lowest id among equal maxima). u is unused.
//   2. Order the ids by z descending (ties: lower id first).
//   3. top_k > 0: keep the first top_k of that order.
//   4. p_i = exp((z_i - z_max) / temperature) over the kept ids (so p of the top id is 1).
//   5. top_p < 1: keep the shortest prefix whose cumulative p reaches top_p * (total p) (a
//      token is kept while the mass before it is < top_p * total; the first is always kept).
//   6. min_p > 0: keep only the ids with p_i >= min_p, i.e. probability >= min_p times the top
//      id's. Steps 5 and 6 each keep a prefix of the order, so together they keep the shorter.
//   7. Renormalise what is kept; return the first id whose cumulative p exceeds u * total.
// This is Hugging Face's order (temperature, top-k, top-p, min-p) and llama.cpp's defaults.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "engine/processors.h"

namespace gpt2 {

struct SamplingParams {
  SamplingParams() = default;
  SamplingParams(float temperature_, int top_k_, float top_p_)
      : temperature(temperature_), top_k(top_k_), top_p(top_p_) {}

  float temperature = 0.8f;  // 0 = greedy
  int top_k = 40;            // 0 = off
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.0f;        // 0 = off
  PenaltyParams penalties;   // processors.h: applied to the logits before this rule

  bool greedy() const { return temperature <= 0.0f; }
};

// The buffers sample_token() orders and weighs the candidates in. A caller that samples every
// token keeps one, so that once it has grown to the vocabulary nothing is allocated per token.
struct SampleScratch {
  std::vector<int> ids;
  std::vector<float> p;
};

// The reference rule above. `logits` holds `vocab` floats.
int sample_token(const float* logits, int vocab, const SamplingParams& params, double u, SampleScratch& scratch);
int sample_token(const float* logits, int vocab, const SamplingParams& params, double u);  // own scratch

// The random stream: one uniform draw per sampled token, the same on every backend, so a
// seed reproduces a generation on the CPU and on the GPU alike.
class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  double uniform() { return double(engine_() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
 private:
  std::mt19937_64 engine_;
};

}  // namespace gpt2
