// The machine's fp32 GEMM rate on the shapes of one batched decode step, measured by the library
// the CPU's rows path calls (fast::matmul: oneDNN's sgemm when the build has it), for
// --benchmark --parallel: issue 23's goal at B = 16 is a step that reaches 70% of this rate.
//
// One "step" is what a decode step of B sequences multiplies: per layer x (B, C) by qkv (3C, C),
// proj (C, C), fc (H, C) and fc_proj (C, H), then the LM head (V, C), every matrix distinct and
// fp32 (the model's fp32 footprint: the rate a step could reach reading fp32 weights).
#pragma once
#include <string>
#include <vector>

#include "model/config.h"

namespace gpt2 {

struct GemmRate {
  int rows = 0;             // B
  double flops = 0;         // 2 B (n_layer (4C^2 + 2CH) + C V): linear and LM head, as explain's step_cost
  double best_ms = 0;       // the fastest of the timed repetitions of the whole step
  double gflop_per_s() const { return best_ms > 0 ? flops / best_ms / 1e6 : 0; }
};

class GemmStepBench {
 public:
  // Allocates the step's fp32 matrices (every weight matrix of the model: 4 n_params-ish bytes).
  explicit GemmStepBench(const GPT2Config& config);
  // One untimed step, then `repetitions` timed ones on B = rows input rows.
  GemmRate measure(int rows, int repetitions) const;
  static std::string library();  // "oneDNN 2.6" or "none (plain loops)"

 private:
  struct Matrix {
    std::vector<float> w;  // (out, in)
    int out = 0, in = 0;
  };
  GPT2Config config_;
  std::vector<Matrix> matrices_;  // in the order the step runs them
  mutable std::vector<float> x_, y_;
};

}  // namespace gpt2
