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
  // without, it is encoded as ordinary text. Invalid UTF-8 is encoded byte for byte (GPT-2's
  // byte-level BPE covers every byte), see README.
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
// partial character is held back until the token completing it arrives.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tok_(tokenizer) {}
  // The text that became complete with this token (possibly empty).
  std::string push(int id);
  // Whatever is still held back at the end, each invalid byte replaced by U+FFFD.
  std::string finish();

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

}  // namespace gpt2
