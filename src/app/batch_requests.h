// --batch FILE: one request per line, read and checked. A line is a prompt in plain text, or a
// JSON object whose fields are the command line's long flag names with `_` for `-`
// ({"prompt": "...", "id": 7, "max_new_tokens": 32, "temperature": 0, "stop": ["\n"], ...}), or
// `prompt_ids` for token ids. A field left out takes the command line's value; an unknown field
// or a bad value is an error naming the line. Blank lines are skipped.
#pragma once
#include <cstdint>
#include <istream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/cli.h"
#include "engine/generator.h"

namespace gpt2 {

class Tokenizer;
struct GPT2Config;

struct BatchLine {
  long number = 0;              // the line's number in the file, from 1
  nlohmann::json id;            // the request's "id", or its line number
  std::vector<int> prompt;      // token ids; <|endoftext|> when the line gives no prompt
  bool empty_prompt = false;    // the line gave no prompt
  GenerationOptions options;
  std::vector<std::string> stop;
};

class BatchReader {
 public:
  // `defaults`: the command line, whose values fields left out take. `window`: the context
  // window a prompt must fit.
  BatchReader(std::istream& in, const CliOptions& defaults, const Tokenizer& tokenizer, const GPT2Config& config,
              int window);

  // The next request; false at the end of the input. Throws gpt2::Error("--batch line N: ...")
  // for a bad line.
  bool next(BatchLine& line);

 private:
  BatchLine parse(const std::string& text, long number) const;
  void apply_field(const std::string& key, const nlohmann::json& value, BatchLine& line, CliOptions& o) const;

  std::istream& in_;
  const CliOptions& defaults_;
  const Tokenizer& tokenizer_;
  const GPT2Config& config_;
  int window_;
  long number_ = 0;
};

}  // namespace gpt2
