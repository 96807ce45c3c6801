// libFuzzer target: the tokenizer's encode, decode and streaming decode, with the real GPT-2
// files (loaded once from $GPT2_TOKENIZER_DIR, default ../shared/gpt2-tokenizer as configured
// by CMake). Properties checked for every input, any bytes:
//   - every id is in [0, vocab); without special parsing, 50256 never appears;
//   - decode(encode(x)) == x byte for byte, with and without special parsing (tokenizer.h);
//   - with special parsing, one 50256 per non-overlapping "<|endoftext|>", and the same ids
//     as without when the text has none;
//   - StreamDecoder fed the ids one by one emits only valid UTF-8 (so no chunk ends inside a
//     character), and the chunks plus finish() equal x for valid UTF-8 input and Python's
//     x.decode("utf-8", "replace") otherwise (tokenizer.h's contract).
// Only gpt2::Error is an expected failure (and none is expected here); anything else is a
// finding, and a violated property traps.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "text/tokenizer.h"
#include "utf8_oracle.h"

#ifndef GPT2_DEFAULT_TOKENIZER_DIR
#define GPT2_DEFAULT_TOKENIZER_DIR "../shared/gpt2-tokenizer"
#endif

namespace {

std::unique_ptr<gpt2::Tokenizer> g_tok;

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_tokenizer_encode: property violated: %s\n", what);
  __builtin_trap();
}

void check_ids(const std::vector<int>& ids, bool allow_eot) {
  const int vocab = g_tok->vocab_size();
  for (int id : ids) {
    if (id < 0 || id >= vocab) violated("id outside the vocabulary");
    if (!allow_eot && id == gpt2::Tokenizer::kEndOfText) violated("50256 without special parsing");
  }
}

size_t count_eot(std::string_view text) {
  size_t n = 0;
  for (size_t pos = 0; (pos = text.find(gpt2::Tokenizer::kEndOfTextText, pos)) != std::string_view::npos;
       pos += gpt2::Tokenizer::kEndOfTextText.size())
    ++n;
  return n;
}

void check_stream(const std::vector<int>& ids, std::string_view text) {
  gpt2::StreamDecoder dec(*g_tok);
  std::string all;
  for (int id : ids) {
    const std::string chunk = dec.push(id);
    if (!fuzz::utf8_valid(chunk)) violated("StreamDecoder::push emitted invalid UTF-8 (split character?)");
    all += chunk;
  }
  const std::string rest = dec.finish();
  if (!fuzz::utf8_valid(rest)) violated("StreamDecoder::finish emitted invalid UTF-8");
  all += rest;
  std::string expected;
  fuzz::utf8_replace(text, expected);  // == text when text is valid UTF-8
  if (all != expected) violated("streamed text differs from the (replace-)decoded input");
  // finish() leaves nothing held back: a second call returns nothing.
  if (!dec.finish().empty()) violated("finish() twice returned text");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* env = std::getenv("GPT2_TOKENIZER_DIR");
  const std::string dir = env && *env ? env : GPT2_DEFAULT_TOKENIZER_DIR;
  try {
    g_tok = std::make_unique<gpt2::Tokenizer>(gpt2::Tokenizer::load(dir));
  } catch (const gpt2::Error& e) {
    std::fprintf(stderr, "fuzz_tokenizer_encode: cannot load the GPT-2 tokenizer from %s (set "
                 "GPT2_TOKENIZER_DIR): %s\n", dir.c_str(), e.what());
    std::exit(2);
  }
  if (g_tok->vocab_size() != 50257) {
    std::fprintf(stderr, "fuzz_tokenizer_encode: %s is not GPT-2's tokenizer\n", dir.c_str());
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const std::vector<int> plain = g_tok->encode(text, /*parse_special=*/false);
    check_ids(plain, /*allow_eot=*/false);
    if (g_tok->decode(plain) != text) violated("decode(encode(x, false)) != x");
    if (text.empty() != plain.empty()) violated("empty text <=> no ids");
    if (plain.size() > text.size()) violated("more ids than bytes");

    const std::vector<int> special = g_tok->encode(text, /*parse_special=*/true);
    check_ids(special, /*allow_eot=*/true);
    if (g_tok->decode(special) != text) violated("decode(encode(x, true)) != x");
    size_t eots = 0;
    for (int id : special) eots += id == gpt2::Tokenizer::kEndOfText;
    if (eots != count_eot(text)) violated("one 50256 per <|endoftext|> with special parsing");
    if (eots == 0 && special != plain) violated("special parsing changed a text without <|endoftext|>");

    for (int id : plain)
      if (g_tok->decode({id}) != g_tok->token_bytes(id)) violated("decode({id}) != token_bytes(id)");

    check_stream(plain, text);
    if (eots > 0) check_stream(special, text);
  } catch (const gpt2::Error& e) {
    // Documented as impossible for encode/decode of in-range ids: report it.
    std::fprintf(stderr, "fuzz_tokenizer_encode: unexpected gpt2::Error: %s\n", e.what());
    __builtin_trap();
  }
  return 0;
}
