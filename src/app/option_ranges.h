// The range of every numeric generation setting, stated once: the command line's validators
// (cli.cpp) and --batch's per-request fields (batch_requests.cpp) both check against these.
#pragma once

namespace gpt2 {

struct Range {
  double lo, hi;
  bool open_lo;       // lo itself excluded
  const char* words;  // "in [0, 100]", for messages ("must be in [0, 100], got 101")
  bool contains(double v) const { return (open_lo ? v > lo : v >= lo) && v <= hi; }
};

namespace ranges {
inline constexpr Range kMaxNewTokens{0, 1e9, false, ">= 0"};
inline constexpr Range kTemperature{0, 100, false, "in [0, 100]"};
inline constexpr Range kTopK{0, 1e9, false, ">= 0"};
inline constexpr Range kTopP{0, 1, true, "in (0, 1]"};
inline constexpr Range kMinP{0, 1, false, "in [0, 1]"};
inline constexpr Range kRepeatPenalty{0, 1e6, true, "> 0"};
inline constexpr Range kRepeatLastN{0, 1e9, false, ">= 0"};
inline constexpr Range kPresencePenalty{-100, 100, false, "in [-100, 100]"};
inline constexpr Range kFrequencyPenalty{-100, 100, false, "in [-100, 100]"};
inline constexpr Range kNoRepeatNgramSize{0, 1e9, false, ">= 0"};
inline constexpr Range kParallel{1, 1024, false, "in [1, 1024]"};
inline constexpr Range kNumBeams{1, 64, false, "in [1, 64]"};
inline constexpr Range kLengthPenalty{-100, 100, false, "in [-100, 100]"};
}  // namespace ranges

}  // namespace gpt2
