// --num-beams N > 1: beam search (src/engine/beam.h) from the command line. The text is
// printed when the search ends (no streaming); --json gives every returned sequence with its
// tokens, score and finish reason; --explain and --profile add what the beams cost: the K/V held,
// the bytes the reorder copies per step (no K/V; the history tables' ints) and its time against
// the forward's.
#pragma once
#include <atomic>
#include <vector>

#include "app/cli.h"
#include "engine/backend.h"
#include "engine/beam.h"
#include "engine/generator.h"

namespace gpt2 {

class Tokenizer;

// Refuses what beam search does not take, one line each: --num-return-sequences above
// --num-beams (also with one beam), and with N > 1 sampling flags (beam sampling is not
// supported), --batch and --context-shift.
void check_beam_cli(const CliOptions& o);

BeamOptions beam_options(const CliOptions& o);

struct BeamRunInputs {
  Backend& backend;
  const Tokenizer& tok;
  const std::vector<int>& prompt;
  bool empty_prompt = false;  // the prompt is the <|endoftext|> put there for an empty one
  double load_ms = 0;
};

// The search, its output and its reports. Returns the exit code.
int run_beam(const CliOptions& o, const BeamRunInputs& in, const GenerationOptions& gen,
             const std::atomic<bool>* interrupted);

}  // namespace gpt2
