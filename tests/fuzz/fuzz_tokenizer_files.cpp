// libFuzzer target: the tokenizer's file parsers (vocab.json, merges.txt) and the tables built
// from them. The input is split at its first NUL byte: vocab.json before it, merges.txt after
// (no NUL: all vocab, empty merges). Small vocabularies are fine (expected_vocab 0). When the
// files are accepted, a few fixed strings must encode to in-range ids that decode back to the
// same bytes (a vocabulary is only accepted with a token for each of the 256 bytes), and the
// stream decoder must not fail. Only gpt2::Error from loading is an expected failure.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "text/tokenizer.h"

namespace {

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_tokenizer_files: property violated: %s\n", what);
  __builtin_trap();
}

const std::string_view kSamples[] = {
    "",
    "a",
    "Hello world, it's 2026!",
    "  \n\n\t x<|endoftext|>y <|endoftext|>",
    "caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80",
    std::string_view("\x00\xFF\xC3\x28\xE2\x82", 6),  // NUL, invalid and truncated UTF-8
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view vocab = input.substr(0, nul);
  const std::string_view merges = nul == std::string_view::npos ? std::string_view() : input.substr(nul + 1);

  try {
    const gpt2::Tokenizer tok = gpt2::Tokenizer::from_strings(vocab, merges, /*expected_vocab=*/0);
    const int v = tok.vocab_size();
    if (v < 256) violated("a vocabulary without all 256 byte tokens was accepted");
    for (std::string_view s : kSamples) {
      for (bool special : {false, true}) {
        const std::vector<int> ids = tok.encode(s, special);
        for (int id : ids)
          if (id < 0 || id >= v) violated("id outside the vocabulary");
        if (tok.decode(ids) != s) violated("decode(encode(x)) != x");
        gpt2::StreamDecoder dec(tok);
        size_t streamed = 0;
        for (int id : ids) streamed += dec.push(id).size();
        streamed += dec.finish().size();
        if (s.size() > 0 && streamed == 0) violated("the stream decoder emitted nothing");
      }
    }
  } catch (const gpt2::Error&) {
  }
  return 0;
}
