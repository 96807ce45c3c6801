// GPT-2's byte-level BPE tokenizer: exactly the ids OpenAI's encoder produces (the goldens in
// ../shared/golden/tokenizer are tiktoken's), and a streaming decoder that never splits a
// UTF-8 character.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace gpt2 {

class Tokenizer {
 public:
  static constexpr int kEndOfText = 50256;
  static constexpr std::string_view kEndOfTextText = "<|endoftext|>";

  // Loads vocab.json and merges.txt from `dir`. `expected_vocab` (the model's vocab_size; 0 =
  // don't check) must equal the number of vocab entries. Throws gpt2::Error naming the file.
  static Tokenizer load(const std::string& dir, int expected_vocab = 0);
  // The same from in-memory file contents (tests and the fuzzer).
  static Tokenizer from_strings(std::string_view vocab_json, std::string_view merges_txt,
                                int expected_vocab = 0);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text -> ids. With parse_special, each "<|endoftext|>" in the text becomes 50256;
  // without, it is encoded as ordinary text.
  //
  // Any bytes encode, and decode(encode(text)) == text byte for byte, always. Valid UTF-8
  // gets exactly tiktoken's (OpenAI's) ids. Invalid UTF-8 is not an error and is not
  // replaced: GPT-2's byte-level BPE has a token for every byte, so it is encoded as is.
  // For splitting, each byte that is not part of a well-formed UTF-8 character (a stray
  // continuation byte, a truncated or overlong sequence, an encoded surrogate, 0xF5..0xFF)
  // counts as one character of the "other" class, the class of punctuation. So the ids are
  // those of GPT-2's pattern splitting text.decode("utf-8", "surrogateescape") in Python
  // (each invalid byte becomes a lone surrogate, which is "other"), then tiktoken's BPE on
  // each piece's original bytes; tests/test_tokenizer_diff.py checks exactly that. NUL and
  // other control characters are ordinary "other" characters. Callers that want to warn
  // about invalid UTF-8 can check with gpt2::is_valid_utf8 (unicode.h).
  std::vector<int> encode(std::string_view text, bool parse_special = true) const;

  // Ids -> the bytes they stand for (may end inside a UTF-8 character). Ids outside the
  // vocabulary throw gpt2::Error.
  std::string decode(const std::vector<int>& ids) const;
  const std::string& token_bytes(int id) const;
  int vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Turns a stream of ids into text that only ever breaks between whole UTF-8 characters: a
// partial character is held back until the token completing it arrives. Everything it
// returns is valid UTF-8: a byte sequence that can no longer become a character is replaced
// by U+FFFD, one per maximal invalid subpart (Unicode's recommendation, as Python's
// bytes.decode("utf-8", "replace") does), so the concatenated output of push() and finish()
// equals that decode of all the tokens' bytes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tok_(tokenizer) {}
  // The text that became complete with this token (possibly empty). Throws gpt2::Error for
  // an id outside the vocabulary.
  std::string push(int id);
  // Whatever is still held back at the end (a cut-short character becomes U+FFFD).
  std::string finish();

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

}  // namespace gpt2
