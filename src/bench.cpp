#include "bench.h"

#include "error.h"

namespace gpt2 {

int run_benchmark(Backend&, const std::vector<int>&, const GPT2Config&, const GenerationOptions&,
                  const CliOptions&, double) {
  throw Error("--benchmark is not implemented yet");
}

}  // namespace gpt2
