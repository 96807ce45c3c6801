#include "cuda/cuda_variants.h"

#include <cstdlib>
#include <sstream>

#include "base/error.h"

namespace gpt2 {

const std::vector<CudaVariantInfo>& cuda_variant_table() {
  static const std::vector<CudaVariantInfo> table = {
      {"attn1", &CudaVariants::attention_one_round, "attention_decode: 16-byte K/V loads, one round, no serial combine",
       false},
      {"prologue", &CudaVariants::gemv_prologue, "gemv: parameters before the PDL wait, input staged in one round",
       false},
      {"splitk", &CudaVariants::split_k, "gemv: 768-row matrices split across warps along K", false},
      {"lmhead", &CudaVariants::lm_head_argmax, "LM head software-pipelined, argmax fused into it", false},
      {"pdl", &CudaVariants::pdl, "programmatic dependent launch for every decode kernel", true},
      {"l2", &CudaVariants::l2_window, "L2 persistence window on the LM head; prefetch of the next matrix", true},
      {"ahead", &CudaVariants::launch_ahead, "step t+1 queued on the device before the host reads token t", true},
  };
  return table;
}

CudaVariants parse_cuda_variants(const char* list) {
  CudaVariants v;
  if (!list) return v;
  std::stringstream in(list);
  std::string name;
  while (std::getline(in, name, ',')) {
    if (name.empty() || name == "none") continue;
    bool known = false;
    for (const CudaVariantInfo& info : cuda_variant_table()) {
      if (name == "all" || name == info.name) {
        v.*info.flag = true;
        known = true;
      }
    }
    if (!known) {
      std::string names = "all, none";
      for (const CudaVariantInfo& info : cuda_variant_table()) names += std::string(", ") + info.name;
      throw Error("GPT2_CUDA_VARIANTS: unknown variant '" + name + "'; use a comma-separated list of " + names);
    }
  }
  return v;
}

CudaVariants cuda_variants_from_env() { return parse_cuda_variants(std::getenv("GPT2_CUDA_VARIANTS")); }

std::string cuda_variants_name(const CudaVariants& v) {
  std::string out;
  for (const CudaVariantInfo& info : cuda_variant_table())
    if (v.*info.flag) out += (out.empty() ? "" : ",") + std::string(info.name);
  return out.empty() ? "none" : out;
}

std::string cuda_variants_help() {
  std::string out = "CUDA decode variants (GPT2_CUDA_VARIANTS=a,b | all | none; default none):";
  for (const CudaVariantInfo& info : cuda_variant_table())
    out += std::string("\n  ") + info.name + ": " + info.what + (info.exact ? " [exact]" : "");
  return out;
}

}  // namespace gpt2
