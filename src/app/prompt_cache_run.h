// --prompt-cache FILE and --prompt-cache-ro in a run (the file: engine/prompt_cache.h): the
// modes they do not apply to are refused, the file's usable prefix goes into the ring before
// the prefill, and the prompt's K/V is saved once the prefill has run.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "app/cli.h"
#include "engine/backend.h"
#include "model/model.h"

namespace gpt2 {

// Refuses --prompt-cache with --no-cache (no K/V to reuse) and --benchmark (it times cold
// prefills), and a FILE that is not a regular file or sits in a folder this run cannot write
// (unless --prompt-cache-ro). --batch is refused by the command line. Throws gpt2::Error.
void check_prompt_cache_options(const CliOptions& o);

struct PromptCacheRun {
  int reused = 0;                    // prompt tokens whose K/V came from the file
  std::function<void()> save;        // generate()'s after_prefill: writes FILE; empty: nothing to write
};

// Loads FILE's usable prefix into sequence 0's ring (start 0) and says so in `note`.
PromptCacheRun prepare_prompt_cache(const CliOptions& o, const Model& model, Backend& backend,
                                    const std::vector<int>& prompt, std::string* note);

}  // namespace gpt2
