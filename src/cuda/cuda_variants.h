// The CUDA decode path's switchable variants: each one a latency fix that lives next to the
// kernel or launch it replaces until a GPU measurement chooses between them (kernels/README.md,
// "Variants"; tools/gpu_check.sh measures each alone and all together). They are read once, at
// load, from GPT2_CUDA_VARIANTS: a comma-separated list of names from cuda_variant_table(),
// "all", or "none" / unset for today's default path. Plain C++: the CPU build reports them too.
#pragma once
#include <string>
#include <vector>

namespace gpt2 {

struct CudaVariants {
  bool attention_one_round = false;  // attn1: attention_decode with 16-byte K/V loads, one round
  bool gemv_prologue = false;        // prologue: gemv parameters before the PDL wait, 16-byte staging
  bool split_k = false;              // splitk: the 768-row matrices split across warps along K
  bool lm_head_argmax = false;       // lmhead: pipelined LM head with the argmax fused into it
  bool pdl = false;                  // pdl: programmatic dependent launch for every decode kernel
  bool l2_window = false;            // l2: L2 persistence window on the LM head, prefetch of the next matrix
  bool launch_ahead = false;         // ahead: step t+1 queued before the host reads token t
};

struct CudaVariantInfo {
  const char* name;          // as written in GPT2_CUDA_VARIANTS
  bool CudaVariants::*flag;  // the switch it sets
  const char* what;          // one line for --version and the GPU check's table
  // True when the variant changes only when or where work runs, never the arithmetic: its
  // tokens must equal today's path's exactly (the GPU check fails it otherwise).
  bool exact;
};

// Every variant, in the order the GPU check measures them.
const std::vector<CudaVariantInfo>& cuda_variant_table();

// Parses a GPT2_CUDA_VARIANTS value (null or empty: none). Throws gpt2::Error naming an
// unknown entry and listing the known ones.
CudaVariants parse_cuda_variants(const char* list);

// parse_cuda_variants(getenv("GPT2_CUDA_VARIANTS")).
CudaVariants cuda_variants_from_env();

// The enabled names, comma-separated, or "none": what a report or a log line records.
std::string cuda_variants_name(const CudaVariants& v);

// The table as --version prints it (tools/gpu_check.sh reads its variant list from there): a
// heading line, then "  name: what [exact]" per variant.
std::string cuda_variants_help();

}  // namespace gpt2
