// Stop strings (--stop): generation ends as soon as the generated text contains one of them,
// as in llama.cpp's server and the OpenAI API. The text arrives piece by piece (what the
// StreamDecoder releases for each token); push() returns what can be shown now. It holds back
// only a tail that could still become the start of a stop string, and never shows the stop
// string or anything after it, so a stop string split over several tokens, or inside a
// character whose bytes span tokens, is never partly printed.
#pragma once
#include <string>
#include <vector>

namespace gpt2 {

class StopStrings {
 public:
  // `stops`: non-empty strings (the CLI refuses empty ones); none = never stops.
  explicit StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Appends generated text; returns the part that is safe to show. After a match, "".
  std::string push(const std::string& text);
  // At the end of generation (no match): the held-back tail, which can no longer match.
  std::string release();

  bool matched() const { return matched_; }
  const std::string& match() const { return match_; }  // the stop string found

 private:
  std::vector<std::string> stops_;
  std::string held_;  // pushed, not yet shown
  bool matched_ = false;
  std::string match_;
};

}  // namespace gpt2
