#include "text/unicode_pretokenize.h"

#include <array>

#include "text/unicode.h"

namespace gpt2 {
namespace {

using Byte = unsigned char;

constexpr std::array<CharClass, 128> make_ascii_classes() {
  std::array<CharClass, 128> classes{};  // kOther
  for (int c = 'A'; c <= 'Z'; ++c) classes[c] = CharClass::kLetter;
  for (int c = 'a'; c <= 'z'; ++c) classes[c] = CharClass::kLetter;
  for (int c = '0'; c <= '9'; ++c) classes[c] = CharClass::kNumber;
  for (int c = '\t'; c <= '\r'; ++c) classes[c] = CharClass::kSpace;
  classes[' '] = CharClass::kSpace;
  return classes;
}
constexpr std::array<CharClass, 128> kAsciiClasses = make_ascii_classes();

struct Char {
  CharClass cls;
  size_t length;  // bytes
};

// The character at p: ASCII without a table walk; an invalid byte is one "other" character.
inline Char char_at(const Byte* p, const Byte* end) {
  if (*p < 0x80) return {kAsciiClasses[*p], 1};
  const Utf8Read r = read_utf8(p, end);
  if (r.status != Utf8Read::kValid) return {CharClass::kOther, 1};
  return {char_class(r.cp), r.length};
}

// 's|'t|'re|'ve|'m|'ll|'d: the length of the contraction at p, or 0. Case-sensitive, as in
// OpenAI's pattern (so "IT'S" splits differently from "it's").
size_t contraction_length(const Byte* p, const Byte* end) {
  if (end - p < 2) return 0;
  const Byte a = p[1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (end - p < 3) return 0;
  const Byte b = p[2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

// The end of the run of characters of class `cls` that continues at p.
const Byte* run_end(const Byte* p, const Byte* end, CharClass cls) {
  while (p < end) {
    const Char c = char_at(p, end);
    if (c.cls != cls) break;
    p += c.length;
  }
  return p;
}

// \s+(?!\S)|\s+ at a whitespace character p: a run that reaches the end of the text is one
// piece; otherwise the run's last character is left for the next piece (where a final ' '
// joins the word after it), unless the run is that one character.
const Byte* whitespace_piece_end(const Byte* p, const Byte* end) {
  const Byte* last_char = p;
  int chars = 0;
  while (p < end) {
    const Char c = char_at(p, end);
    if (c.cls != CharClass::kSpace) break;
    last_char = p;
    p += c.length;
    ++chars;
  }
  if (p == end || chars == 1) return p;
  return last_char;
}

}  // namespace

size_t gpt2_piece_end(std::string_view text, size_t pos) {
  const Byte* begin = reinterpret_cast<const Byte*>(text.data());
  const Byte* end = begin + text.size();
  const Byte* p = begin + pos;

  if (*p == '\'') {
    if (const size_t n = contraction_length(p, end)) return pos + n;
  }
  const Char c = char_at(p, end);
  if (c.cls != CharClass::kSpace) return size_t(run_end(p + c.length, end, c.cls) - begin);

  // " ?X+": a single ASCII space joins the letter, number or other run after it.
  if (*p == ' ' && p + 1 < end) {
    const Char next = char_at(p + 1, end);
    if (next.cls != CharClass::kSpace) return size_t(run_end(p + 1 + next.length, end, next.cls) - begin);
  }
  return size_t(whitespace_piece_end(p, end) - begin);
}

}  // namespace gpt2
