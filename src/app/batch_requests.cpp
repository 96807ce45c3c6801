#include "app/batch_requests.h"

#include <cmath>

#include "app/option_ranges.h"
#include "app/prompt.h"
#include "app/run_options.h"
#include "base/error.h"
#include "model/config.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace gpt2 {
namespace {

using nlohmann::json;

double number_field(const json& v, const std::string& key, const Range& r) {
  if (!v.is_number()) throw Error("field \"" + key + "\" must be a number, got " + v.dump());
  const double x = v.get<double>();
  if (!r.contains(x)) throw Error("field \"" + key + "\" must be " + r.words + ", got " + v.dump());
  return x;
}

int int_field(const json& v, const std::string& key, const Range& r) {
  const double x = number_field(v, key, r);
  if (x != std::floor(x)) throw Error("field \"" + key + "\" must be a whole number, got " + v.dump());
  return int(x);
}

bool bool_field(const json& v, const std::string& key) {
  if (!v.is_boolean()) throw Error("field \"" + key + "\" must be true or false, got " + v.dump());
  return v.get<bool>();
}

std::string text_field(const json& v, const std::string& key) {
  if (!v.is_string()) throw Error("field \"" + key + "\" must be a string, got " + v.dump());
  return v.get<std::string>();
}

// "stop": a string or an array of them, each non-empty valid UTF-8 (as --stop).
std::vector<std::string> stop_field(const json& v) {
  std::vector<std::string> out;
  for (const json& s : v.is_array() ? v : json::array({v})) {
    const std::string text = text_field(s, "stop");
    if (text.empty() || !is_valid_utf8(text)) throw Error("field \"stop\": each entry must be non-empty valid UTF-8");
    out.push_back(text);
  }
  return out;
}

// "prompt_ids": [1, 2, 3] as the text form --prompt-ids parses ("1,2,3").
std::string ids_field(const json& v, int vocab_size) {
  if (!v.is_array()) throw Error("field \"prompt_ids\" must be an array of token ids, got " + v.dump());
  std::string text;
  for (const json& id : v) {
    if (!id.is_number_integer() || id.get<long long>() < 0 || id.get<long long>() >= vocab_size)
      throw Error("field \"prompt_ids\": " + id.dump() + " is not a token id in [0, " + std::to_string(vocab_size) + ")");
    text += (text.empty() ? "" : ",") + id.dump();
  }
  if (text.empty()) throw Error("field \"prompt_ids\" is empty; leave it out to start from <|endoftext|>");
  return text;
}

}  // namespace

BatchReader::BatchReader(std::istream& in, const CliOptions& defaults, const Tokenizer& tokenizer,
                         const GPT2Config& config, int window)
    : in_(in), defaults_(defaults), tokenizer_(tokenizer), config_(config), window_(window) {}

bool BatchReader::next(BatchLine& line) {
  std::string text;
  while (std::getline(in_, text)) {
    ++number_;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    try {
      line = parse(text, number_);
    } catch (const Error& e) {
      throw Error("--batch line " + std::to_string(number_) + ": " + e.what());
    }
    return true;
  }
  if (in_.bad()) throw Error("--batch: reading line " + std::to_string(number_ + 1) + " failed");
  return false;
}

void BatchReader::apply_field(const std::string& key, const json& v, BatchLine& line, CliOptions& o) const {
  if (key == "id") line.id = v;
  else if (key == "prompt") o.prompt = text_field(v, key);
  else if (key == "prompt_ids") o.prompt_ids = ids_field(v, config_.vocab_size);
  else if (key == "max_new_tokens") o.max_new_tokens = int_field(v, key, ranges::kMaxNewTokens);
  else if (key == "temperature") o.temperature = float(number_field(v, key, ranges::kTemperature));
  else if (key == "top_k") o.top_k = int_field(v, key, ranges::kTopK);
  else if (key == "top_p") o.top_p = float(number_field(v, key, ranges::kTopP));
  else if (key == "min_p") o.min_p = float(number_field(v, key, ranges::kMinP));
  else if (key == "repeat_penalty") o.repeat_penalty = float(number_field(v, key, ranges::kRepeatPenalty));
  else if (key == "repeat_last_n") o.repeat_last_n = int_field(v, key, ranges::kRepeatLastN);
  else if (key == "presence_penalty") o.presence_penalty = float(number_field(v, key, ranges::kPresencePenalty));
  else if (key == "frequency_penalty") o.frequency_penalty = float(number_field(v, key, ranges::kFrequencyPenalty));
  else if (key == "no_repeat_ngram_size") o.no_repeat_ngram_size = int_field(v, key, ranges::kNoRepeatNgramSize);
  else if (key == "ignore_eos") o.ignore_eos = bool_field(v, key);
  else if (key == "context_shift") o.context_shift = bool_field(v, key);
  else if (key == "no_cache") o.no_cache = bool_field(v, key);
  else if (key == "no_special") o.no_special = bool_field(v, key);
  else if (key == "stop") o.stop = stop_field(v);
  else if (key == "seed") {
    if (!v.is_number_unsigned()) throw Error("field \"seed\" must be a whole number >= 0, got " + v.dump());
    o.seed = v.get<uint64_t>();
  } else {
    throw Error("unknown field \"" + key +
                "\" (fields are the long flag names with _ for -, e.g. max_new_tokens, and prompt_ids)");
  }
}

BatchLine BatchReader::parse(const std::string& text, long number) const {
  BatchLine line;
  line.number = number;
  line.id = number;
  CliOptions o = defaults_;
  o.prompt.reset();
  o.prompt_ids.reset();
  o.prompt_file.clear();
  const size_t first = text.find_first_not_of(" \t");
  if (text[first] == '{') {
    json j;
    try {
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw Error(std::string("not valid JSON (") + e.what() + "); a line is plain text or one JSON object");
    }
    if (!j.is_object()) throw Error("a JSON line must be one object");
    for (const auto& [key, value] : j.items()) apply_field(key, value, line, o);
    if (o.prompt && o.prompt_ids) throw Error("give \"prompt\" or \"prompt_ids\", not both");
  } else {
    o.prompt = text;
  }
  line.prompt = prompt_tokens(o, o.prompt ? *o.prompt : "", tokenizer_, config_.vocab_size);
  line.empty_prompt = line.prompt.empty();
  if (line.empty_prompt) line.prompt.push_back(config_.eos_token_id);  // start from <|endoftext|>
  check_prompt_fits(line.prompt.size(), window_);
  line.options = generation_options(o, config_, run_seed(o));
  line.stop = o.stop;
  return line;
}

}  // namespace gpt2
