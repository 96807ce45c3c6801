// Turning the command line's prompt source (text, a file, stdin or token ids) into token ids.
#pragma once
#include <string>
#include <vector>

#include "app/cli.h"

namespace gpt2 {

class Tokenizer;

// "2061,318,509" -> ids, each in [0, vocab_size). Throws gpt2::Error naming the bad entry.
std::vector<int> parse_prompt_ids(const std::string& text, int vocab_size);

// The prompt text from -p, -f FILE or -f - (stdin); empty when none was given.
std::string read_prompt_text(const CliOptions& options);

// The prompt's token ids: --prompt-ids when given, else `text` (from read_prompt_text) encoded.
std::vector<int> prompt_tokens(const CliOptions& options, const std::string& text, const Tokenizer& tokenizer,
                               int vocab_size);

}  // namespace gpt2
