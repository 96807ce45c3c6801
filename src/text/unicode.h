// The little Unicode the tokenizer needs: reading UTF-8 strictly (with the Unicode
// standard's "maximal subpart" rule for what counts as one invalid sequence) and sorting
// code points into the four classes of GPT-2's pre-tokenizer pattern.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace gpt2 {

// The classes GPT-2's pattern distinguishes: \p{L}, \p{N}, \s (Unicode White_Space), and
// everything else (punctuation, symbols, marks, controls, unassigned, invalid bytes).
enum class CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

// The class of a code point (0..0x10FFFF), by Unicode 16.0, the version tiktoken and
// Hugging Face tokenizers use (see tools/gen_unicode_tables.py).
CharClass char_class(uint32_t cp);

struct Utf8Read {
  enum Status : uint8_t {
    kValid,      // a complete, well-formed character of `length` bytes
    kInvalid,    // `length` bytes (the maximal subpart, >= 1) that no continuation can fix
    kTruncated,  // the `length` bytes up to the end are the start of a well-formed character
  };
  Status status;
  uint8_t length;
  uint32_t cp;  // meaningful for kValid only
};

// Reads the sequence starting at p (p < end). Well-formed means Unicode's table 3-7: no
// overlong forms, no surrogates, nothing above U+10FFFF.
Utf8Read read_utf8(const unsigned char* p, const unsigned char* end);

// True when every byte of `text` belongs to a well-formed UTF-8 character.
bool is_valid_utf8(std::string_view text);

// Appends `bytes` to `out` as valid UTF-8: each invalid maximal subpart becomes U+FFFD,
// exactly like Python's bytes.decode("utf-8", "replace"). When `hold_truncated_tail`, a
// final character that is cut short is not appended; returns how many bytes of `bytes`
// were consumed (all of them otherwise).
size_t append_utf8_replacing_invalid(std::string_view bytes, bool hold_truncated_tail,
                                     std::string& out);

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

}  // namespace gpt2
