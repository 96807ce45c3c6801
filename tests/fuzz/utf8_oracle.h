// An independent UTF-8 reader for the tokenizer fuzzers: Python's
// bytes.decode("utf-8", "replace"), one U+FFFD per maximal invalid subpart (Unicode table
// 3-7 and its "maximal subpart" practice), written separately from src/text/unicode.cpp so that
// the fuzzer checks the tokenizer against something it does not share code with.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace fuzz {

// Appends the replace-decoding of `s` to `out`; returns the number of U+FFFD it inserted
// for invalid bytes (0: `s` is valid UTF-8).
inline size_t utf8_replace(std::string_view s, std::string& out) {
  size_t replaced = 0;
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(char(c));
      ++i;
      continue;
    }
    int need;                          // continuation bytes after the lead byte
    unsigned lo = 0x80, hi = 0xBF;     // allowed range of the first continuation byte
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else {  // 0x80..0xC1, 0xF5..0xFF: never the start of a character
      out += "\xEF\xBF\xBD";
      ++replaced;
      ++i;
      continue;
    }
    size_t j = i + 1;
    int k = 0;
    for (; k < need && j < n; ++k, ++j) {
      const unsigned b = static_cast<unsigned char>(s[j]);
      if (b < (k == 0 ? lo : 0x80u) || b > (k == 0 ? hi : 0xBFu)) break;
    }
    if (k == need) {
      out.append(s.substr(i, size_t(need) + 1));
    } else {
      out += "\xEF\xBF\xBD";  // bytes i..j-1 are one maximal subpart
      ++replaced;
    }
    i = j;
  }
  return replaced;
}

inline bool utf8_valid(std::string_view s) {
  std::string scratch;
  scratch.reserve(s.size() + 8);
  return utf8_replace(s, scratch) == 0;
}

}  // namespace fuzz
