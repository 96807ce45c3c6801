// The tokenizer against the goldens in ../shared/golden/tokenizer (tiktoken's ids), the
// streaming decoder, malformed vocab.json / merges.txt, arbitrary bytes, and speed on long
// pieces. The differential tests against tiktoken and Hugging Face are in
// test_tokenizer_diff.py.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "test_support.h"
#include "text/tokenizer.h"

namespace gpt2 {
namespace {

using test::read_file;
using test::shared_dir;

std::string tokenizer_dir() { return shared_dir() + "/gpt2-tokenizer"; }

const Tokenizer& gpt2_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(tokenizer_dir(), 50257);
  return tok;
}

struct GoldenCase {
  std::string text;
  std::vector<int> ids;
  std::vector<int> ids_with_special;  // = ids when the text has no <|endoftext|>
};

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  std::ifstream in(shared_dir() + "/golden/tokenizer/cases.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    GoldenCase c{j.at("text").get<std::string>(), j.at("ids").get<std::vector<int>>(), {}};
    c.ids_with_special = j.contains("ids_with_special") ? j["ids_with_special"].get<std::vector<int>>() : c.ids;
    cases.push_back(std::move(c));
  }
  return cases;
}

// ---------------------------------------------------------------------------------------
// Goldens

TEST(TokenizerGolden, LoadsGpt2Files) {
  EXPECT_EQ(gpt2_tokenizer().vocab_size(), 50257);
  EXPECT_EQ(gpt2_tokenizer().token_bytes(Tokenizer::kEndOfText), "<|endoftext|>");
  EXPECT_EQ(gpt2_tokenizer().token_bytes(220), " ");
}

TEST(TokenizerGolden, EveryCaseEncodesToItsIds) {
  const auto cases = golden_cases();
  ASSERT_GT(cases.size(), 300u);
  for (const GoldenCase& c : cases) {
    EXPECT_EQ(gpt2_tokenizer().encode(c.text, /*parse_special=*/false), c.ids) << c.text;
    EXPECT_EQ(gpt2_tokenizer().encode(c.text, /*parse_special=*/true), c.ids_with_special) << c.text;
  }
}

TEST(TokenizerGolden, EveryCaseDecodesToItsText) {
  for (const GoldenCase& c : golden_cases()) {
    EXPECT_EQ(gpt2_tokenizer().decode(c.ids), c.text);
    EXPECT_EQ(gpt2_tokenizer().decode(c.ids_with_special), c.text);
  }
}

TEST(TokenizerGolden, KvCachingPrompt) {
  EXPECT_EQ(gpt2_tokenizer().encode("What is KV caching?"), (std::vector<int>{2061, 318, 509, 53, 40918, 30}));
}

// Pieces longer than 32 bytes take the tokenizer's heap-based merge, and runs of one symbol
// make every merge a tie between equal pairs. Ids from tiktoken 0.14.0 (`encode_ordinary`,
// an Encoding built from ../shared/gpt2-tokenizer as test_tokenizer_diff.py builds it; Hugging
// Face tokenizers 0.23.3 gave the same ids), pasted here so the C++ test checks them by itself.
std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(TokenizerGolden, LongTieHeavyPiecesMatchTiktoken) {
  const std::vector<int> a8(8, 24794), x12(12, 24223), nl20(20, 628), e20(20, 2634);
  std::vector<int> a40 = {257};
  a40.insert(a40.end(), 9, 24794);
  a40.push_back(46071);
  std::vector<int> ab = {450};
  ab.insert(ab.end(), 17, 397);
  std::vector<int> smile;
  for (int i = 0; i < 9; ++i) smile.insert(smile.end(), {47249, 222});
  const std::vector<std::pair<std::string, std::vector<int>>> cases = {
      {std::string(40, '-'), {3880, 982}},
      {std::string(33, 'a'), [&] { auto v = a8; v.push_back(64); return v; }()},
      {" " + std::string(40, 'a'), a40},
      {std::string(64, '='), {23926}},
      {std::string(37, '!') + "?", {34635, 34635, 34635, 34635, 50184, 30}},
      {" " + repeat("ab", 18), ab},
      {std::string(35, '0'), {25645, 25645, 830}},
      {std::string(40, '\n'), nl20},
      {std::string(100, 'x'), [&] { auto v = x12; v.push_back(12343); return v; }()},
      {std::string(33, '.') + " and " + std::string(47, '_'), {27754, 34617, 290, 220, 10221, 2602, 37405}},
      {repeat("\xc3\xa9", 20), e20},                // e-acute x 20: 40 bytes of letters
      {repeat("\xf0\x9f\x98\x80", 9), smile},      // U+1F600 x 9: 36 bytes
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(gpt2_tokenizer().encode(text, /*parse_special=*/false), ids) << text;
    EXPECT_EQ(gpt2_tokenizer().decode(ids), text);
  }
}

bool is_continuation_byte(char b) { return (static_cast<unsigned char>(b) & 0xC0) == 0x80; }

TEST(TokenizerGolden, StreamingEachCaseGivesItsTextInWholeCharacters) {
  for (const GoldenCase& c : golden_cases()) {
    StreamDecoder decoder(gpt2_tokenizer());
    std::string so_far;
    for (int id : c.ids) {
      so_far += decoder.push(id);
      ASSERT_EQ(so_far, c.text.substr(0, so_far.size())) << c.text;
      // A chunk that ended inside a character would leave a continuation byte next.
      if (so_far.size() < c.text.size()) {
        EXPECT_FALSE(is_continuation_byte(c.text[so_far.size()])) << c.text;
      }
    }
    so_far += decoder.finish();
    EXPECT_EQ(so_far, c.text);
  }
}

// ---------------------------------------------------------------------------------------
// Special token, decoding errors

TEST(Tokenizer, EndOfTextIsSpecialOnlyWhenAsked) {
  const Tokenizer& tok = gpt2_tokenizer();
  EXPECT_EQ(tok.encode("<|endoftext|><|endoftext|>"), (std::vector<int>{50256, 50256}));
  EXPECT_EQ(tok.encode("<|endoftext|>", false), (std::vector<int>{27, 91, 437, 1659, 5239, 91, 29}));
  EXPECT_EQ(tok.encode("<|endoftext|"), tok.encode("<|endoftext|", false));
}

TEST(Tokenizer, IdsOutsideTheVocabularyThrow) {
  const Tokenizer& tok = gpt2_tokenizer();
  EXPECT_THROW(tok.token_bytes(-1), Error);
  EXPECT_THROW(tok.token_bytes(50257), Error);
  EXPECT_THROW(tok.decode({1, 2, 50257}), Error);
  StreamDecoder decoder(tok);
  EXPECT_THROW(decoder.push(1 << 30), Error);
}

int byte_token(const Tokenizer& tok, unsigned char byte) {
  for (int id = 0; id < tok.vocab_size(); ++id)
    if (tok.token_bytes(id) == std::string(1, char(byte))) return id;
  ADD_FAILURE() << "no token for byte " << int(byte);
  return 0;
}

// What the stream decoder emits for these bytes fed one byte token at a time.
std::string stream_bytes(const std::string& bytes) {
  StreamDecoder decoder(gpt2_tokenizer());
  std::string out;
  for (unsigned char b : bytes) out += decoder.push(byte_token(gpt2_tokenizer(), b));
  return out + decoder.finish();
}

TEST(StreamDecoder, HoldsAPartialCharacterUntilItCompletes) {
  StreamDecoder decoder(gpt2_tokenizer());
  const Tokenizer& tok = gpt2_tokenizer();
  EXPECT_EQ(decoder.push(byte_token(tok, 0xE4)), "");
  EXPECT_EQ(decoder.push(byte_token(tok, 0xB8)), "");
  EXPECT_EQ(decoder.push(byte_token(tok, 0xAD)), "\xE4\xB8\xAD");  // 中
  EXPECT_EQ(decoder.finish(), "");
}

TEST(StreamDecoder, ReplacesInvalidBytesLikePythonsReplaceDecoder) {
  // Expected values: bytes.decode("utf-8", "replace") in Python, which follows Unicode's
  // "maximal subpart" recommendation: one U+FFFD per sequence that cannot be completed.
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(stream_bytes("\xE2\x82" "A"), fffd + "A");
  EXPECT_EQ(stream_bytes("\xF0\x9F\x98"), fffd);  // cut short at the end: one U+FFFD
  EXPECT_EQ(stream_bytes("\xC0\x80"), fffd + fffd);
  EXPECT_EQ(stream_bytes("\xED\xA0\x80"), fffd + fffd + fffd);  // an encoded surrogate
  EXPECT_EQ(stream_bytes("\xF4\x90\x80\x80"), fffd + fffd + fffd + fffd);
  EXPECT_EQ(stream_bytes("a\xFF" "b\x80"), "a" + fffd + "b" + fffd);
  EXPECT_EQ(stream_bytes("\xE2\xE2\x82\xAC"), fffd + "\xE2\x82\xAC");
}

// ---------------------------------------------------------------------------------------
// Arbitrary bytes and speed

TEST(Tokenizer, AnyBytesEncodeAndRoundTrip) {
  std::mt19937 rng(42);
  const std::string alphabet = std::string("ab '\n\0", 6) + "\x80\xBF\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xFF<|>endoftext";
  for (int i = 0; i < 3000; ++i) {
    std::string text;
    const int length = int(rng() % 64);
    for (int k = 0; k < length; ++k)
      text += (rng() % 3 == 0) ? char(rng() % 256) : alphabet[rng() % alphabet.size()];
    for (bool special : {false, true}) {
      const std::vector<int> ids = gpt2_tokenizer().encode(text, special);
      EXPECT_EQ(gpt2_tokenizer().decode(ids), text);
    }
  }
}

// Long pieces must not take quadratic time. No timing is asserted (tests never depend on the
// machine's speed): a quadratic BPE would need hours for a 1 MB piece of random letters, so
// CTest's per-test TIMEOUT (tests/CMakeLists.txt) is the guard, and tools/bench_tokenizer.py
// measures the speed. What is checked here is that each input encodes losslessly.
TEST(Tokenizer, OneMegabyteOfAnythingEncodesLosslessly) {
  constexpr size_t kMB = 1 << 20;
  std::mt19937 rng(7);
  std::string letters, bytes, mixed;
  for (size_t i = 0; i < kMB; ++i) letters += char('a' + rng() % 26);
  for (size_t i = 0; i < kMB; ++i) bytes += char(rng() % 256);
  for (const GoldenCase& c : golden_cases())
    if (mixed.size() < kMB) mixed += c.text;
  while (mixed.size() < kMB) mixed += mixed;

  const Tokenizer& tok = gpt2_tokenizer();
  for (const auto& [name, text] :
       std::vector<std::pair<std::string, std::string>>{{"one letter", std::string(kMB, 'a')},
                                                        {"random letters (one piece)", letters},
                                                        {"spaces", std::string(kMB, ' ')},
                                                        {"punctuation", std::string(kMB, '!')},
                                                        {"random bytes", bytes},
                                                        {"the golden texts", mixed}}) {
    const std::vector<int> ids = tok.encode(text);
    EXPECT_EQ(tok.decode(ids), text) << "1 MB of " << name;
    EXPECT_LT(ids.size(), text.size() + 1) << "1 MB of " << name;
  }
}

// ---------------------------------------------------------------------------------------
// Malformed files. A tiny byte-level vocabulary: the 256 byte tokens, then "ab" and "abc".

// GPT-2's spelling of a byte in vocab.json and merges.txt (as UTF-8).
std::string spelled_byte(int b) {
  static const std::vector<int> code_points = [] {
    std::vector<int> cps(256);
    int moved = 256;
    for (int i = 0; i < 256; ++i) {
      const bool printable = (i >= '!' && i <= '~') || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE;
      cps[size_t(i)] = printable ? i : moved++;
    }
    return cps;
  }();
  const int cp = code_points[size_t(b)];
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string byte_entries() {
  std::string json;
  for (int b = 0; b < 256; ++b) {
    std::string key = spelled_byte(b);
    if (key == "\"" || key == "\\") key = "\\" + key;
    json += "\"" + key + "\": " + std::to_string(b) + ", ";
  }
  return json;
}

const std::string kVocab = "{" + byte_entries() + "\"ab\": 256, \"abc\": 257}";
const std::string kMerges = "#version: 0.2\na b\nab c\n";

// Expects from_strings to throw gpt2::Error whose message names `file` and contains `words`.
void expect_rejected(const std::string& vocab, const std::string& merges, const std::string& file,
                     const std::string& words, int expected_vocab = 0) {
  try {
    Tokenizer::from_strings(vocab, merges, expected_vocab);
    ADD_FAILURE() << "accepted; expected an error about: " << words;
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(file), std::string::npos) << message;
    EXPECT_NE(message.find(words), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << "one line: " << message;
    EXPECT_LT(message.size(), 400u) << message;
  }
}

TEST(TokenizerFiles, TinyVocabularyWorks) {
  const Tokenizer tok = Tokenizer::from_strings(kVocab, kMerges, 258);
  EXPECT_EQ(tok.encode("abc"), (std::vector<int>{257}));
  EXPECT_EQ(tok.encode("abcab"), (std::vector<int>{257, 256}));
  EXPECT_EQ(tok.encode("xab"), (std::vector<int>{'x', 256}));
  EXPECT_EQ(tok.vocab_size(), 258);
}

TEST(TokenizerFiles, MergesWithoutVersionLineOrWithCrlfAreAccepted) {
  for (const std::string merges : {"a b\nab c\n", "a b\nab c", "#version: 0.2\r\na b\r\nab c\r\n"}) {
    const Tokenizer tok = Tokenizer::from_strings(kVocab, merges);
    EXPECT_EQ(tok.encode("abc"), (std::vector<int>{257})) << merges;
  }
  // The real merges.txt without its first line gives the same ids.
  std::string merges = read_file(tokenizer_dir() + "/merges.txt");
  merges.erase(0, merges.find('\n') + 1);
  const Tokenizer tok = Tokenizer::from_strings(read_file(tokenizer_dir() + "/vocab.json"), merges);
  EXPECT_EQ(tok.encode("What is KV caching?"), (std::vector<int>{2061, 318, 509, 53, 40918, 30}));
}

TEST(TokenizerFiles, RejectsBrokenJson) {
  expect_rejected(kVocab.substr(0, kVocab.size() / 2), kMerges, "vocab.json", "not valid JSON");
  expect_rejected("", kMerges, "vocab.json", "not valid JSON");
  expect_rejected(kVocab + "}", kMerges, "vocab.json", "not valid JSON");
  expect_rejected("{\"a\": 1,}", kMerges, "vocab.json", "not valid JSON");
}

TEST(TokenizerFiles, RejectsJsonThatIsNotATokenToIdObject) {
  expect_rejected("[1, 2, 3]", kMerges, "vocab.json", "must be a JSON object");
  expect_rejected("42", kMerges, "vocab.json", "must be a JSON object");
  expect_rejected("\"vocab\"", kMerges, "vocab.json", "must be a JSON object");
  expect_rejected("{}", kMerges, "vocab.json", "has no tokens");
  const std::string head = "{" + byte_entries();
  expect_rejected(head + "\"ab\": \"256\"}", kMerges, "vocab.json", "not an integer token id");
  expect_rejected(head + "\"ab\": 256.5}", kMerges, "vocab.json", "not an integer token id");
  expect_rejected(head + "\"ab\": null}", kMerges, "vocab.json", "not an integer token id");
  expect_rejected(head + "\"ab\": {\"x\": 1}}", kMerges, "vocab.json", "not an integer token id");
  expect_rejected(head + "\"ab\": [256]}", kMerges, "vocab.json", "not an integer token id");
}

TEST(TokenizerFiles, RejectsBadIds) {
  const std::string head = "{" + byte_entries();
  expect_rejected(head + "\"ab\": 256, \"abc\": 258}", kMerges, "vocab.json", "outside 0..257");
  expect_rejected(head + "\"ab\": 256, \"abc\": -1}", kMerges, "vocab.json", "outside 0..257");
  expect_rejected(head + "\"ab\": 256, \"abc\": 99999999999999999999}", kMerges, "vocab.json",
                  "not an integer token id");
  expect_rejected(head + "\"ab\": 256, \"abc\": 256}", kMerges, "vocab.json", "given to both");
  expect_rejected(head + "\"ab\": 256, \"ab\": 257}", kMerges, "vocab.json", "appears twice");
}

TEST(TokenizerFiles, RejectsVocabularyWithoutEveryByteOrWithForeignCharacters) {
  // Drop the token of byte 0x21 ('!', id 33) and renumber: no token for that byte.
  std::string no_bang = "{";
  for (int b = 0, id = 0; b < 256; ++b) {
    if (b == '!') continue;
    std::string key = spelled_byte(b);
    if (key == "\"" || key == "\\") key = "\\" + key;
    no_bang += "\"" + key + "\": " + std::to_string(id++) + ", ";
  }
  no_bang += "\"ab\": 255, \"abc\": 256}";
  expect_rejected(no_bang, kMerges, "vocab.json", "no token for the byte 0x21");
  const std::string head = "{" + byte_entries();
  expect_rejected(head + "\"ab\": 256, \"\xE2\x82\xAC\": 257}", kMerges, "vocab.json", "stands for no byte");
  expect_rejected(head + "\"ab\": 256, \"\": 257}", kMerges, "vocab.json", "empty token");
}

TEST(TokenizerFiles, RejectsVocabularySizeThatDisagreesWithTheModel) {
  expect_rejected(kVocab, kMerges, "vocab.json", "vocab_size 50257", 50257);
  try {
    Tokenizer::load(tokenizer_dir(), 50000);
    ADD_FAILURE() << "accepted a vocab_size of 50000";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("50257 tokens"), std::string::npos) << e.what();
  }
}

TEST(TokenizerFiles, RejectsMergeLinesThatAreNotTwoSymbols) {
  expect_rejected(kVocab, "#version: 0.2\nab\n", "merges.txt", "line 2");
  expect_rejected(kVocab, "#version: 0.2\na b c\n", "merges.txt", "not two symbols");
  expect_rejected(kVocab, "#version: 0.2\na  b\n", "merges.txt", "not two symbols");
  expect_rejected(kVocab, "#version: 0.2\n a b\n", "merges.txt", "not two symbols");
  expect_rejected(kVocab, "#version: 0.2\na b\n\nab c\n", "merges.txt", "line 3");
  expect_rejected(kVocab, "#version: 0.2\na\tb\n", "merges.txt", "not two symbols");
}

TEST(TokenizerFiles, RejectsMergesOfUnknownSymbols) {
  expect_rejected(kVocab, "a b\nab x\n", "merges.txt", "merges into \"abx\"");
  expect_rejected(kVocab, "a b\nabc ab\n", "merges.txt", "not in vocab.json");
  expect_rejected(kVocab, "a zz\n", "merges.txt", "names \"zz\"");
  expect_rejected(kVocab, "a \xE2\x82\xAC\n", "merges.txt", "not in vocab.json");
  expect_rejected(kVocab, "a b\na b\n", "merges.txt", "repeats the merge of line 1");
}

TEST(TokenizerFiles, RejectsHugeLinesWithAShortMessage) {
  const std::string huge(1 << 20, 'a');
  expect_rejected(kVocab, "a b\n" + huge + " b\n", "merges.txt", "line 2");
  expect_rejected(kVocab, "a b\n" + huge + "\n", "merges.txt", "line 2");
  expect_rejected("{" + byte_entries() + "\"" + huge + "\": \"x\"}", "", "vocab.json", "is a string");
}

TEST(TokenizerFiles, MissingFilesNameThePath) {
  try {
    Tokenizer::load(test::temp_dir());
    ADD_FAILURE() << "loaded an empty directory";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("vocab.json"), std::string::npos) << e.what();
  }
}

TEST(TokenizerFiles, AFifoIsRefusedWithoutBlocking) {
  for (const std::string name : {"vocab.json", "merges.txt"}) {
    const std::string dir = test::temp_dir();
    test::write_file(dir + "/vocab.json", test::read_file(tokenizer_dir() + "/vocab.json"));
    test::write_file(dir + "/merges.txt", test::read_file(tokenizer_dir() + "/merges.txt"));
    const std::string message = test::error_loading_fifo(dir + "/" + name, [&] { Tokenizer::load(dir, 50257); });
    EXPECT_NE(message.find(name + ": it is not a regular file"), std::string::npos) << message;
    EXPECT_EQ(message.rfind("blocked", 0), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace gpt2
