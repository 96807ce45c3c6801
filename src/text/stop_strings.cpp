#include "text/stop_strings.h"

#include <algorithm>

namespace gpt2 {

std::string StopStrings::push(const std::string& text) {
  if (matched_) return "";
  held_ += text;
  // The earliest match (the first listed stop string among matches at the same place). Every
  // earlier byte was shown only once no stop string could start there, so none starts before.
  size_t at = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t i = held_.find(s);
    if (i < at) {
      at = i;
      match_ = s;
    }
  }
  if (at != std::string::npos) {
    matched_ = true;
    std::string shown = held_.substr(0, at);
    held_.clear();
    return shown;
  }
  // Hold back the longest tail of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_)
    for (size_t len = std::min(s.size() - 1, held_.size()); len > keep; --len)
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
  std::string shown = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return shown;
}

std::string StopStrings::release() {
  std::string rest;
  rest.swap(held_);
  return matched_ ? "" : rest;
}

}  // namespace gpt2
