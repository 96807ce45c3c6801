// Bulk access to the C++ tokenizer for tests/test_tokenizer_diff.py, which compares it with
// tiktoken and Hugging Face tokenizers on many strings (one process, not one per string).
//
//   tokenize_lines DIR encode [--no-special]   stdin: one text per line, hex-encoded bytes
//                                              stdout: its ids, space-separated, one line each
//   tokenize_lines DIR stream                  stdin: ids, space-separated, one sequence a line
//                                              stdout: what StreamDecoder emitted for each id
//                                              and then finish(), hex, comma-separated
// DIR holds vocab.json and merges.txt. Hex keeps any bytes (invalid UTF-8, NUL, newlines)
// intact through the pipe.
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "base/error.h"
#include "text/tokenizer.h"

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  throw std::runtime_error(std::string("not a hex digit: ") + c);
}

std::string from_hex(const std::string& hex) {
  if (hex.size() % 2) throw std::runtime_error("odd-length hex line");
  std::string bytes(hex.size() / 2, '\0');
  for (size_t i = 0; i < bytes.size(); ++i)
    bytes[i] = char(hex_digit(hex[2 * i]) * 16 + hex_digit(hex[2 * i + 1]));
  return bytes;
}

std::string to_hex(const std::string& bytes) {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (unsigned char b : bytes) {
    hex += digits[b >> 4];
    hex += digits[b & 15];
  }
  return hex;
}

void encode_lines(const gpt2::Tokenizer& tok, bool parse_special) {
  std::string line, out;
  while (std::getline(std::cin, line)) {
    out.clear();
    for (int id : tok.encode(from_hex(line), parse_special)) {
      if (!out.empty()) out += ' ';
      out += std::to_string(id);
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

void stream_lines(const gpt2::Tokenizer& tok) {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream ids(line);
    gpt2::StreamDecoder decoder(tok);
    std::string out;
    for (int id; ids >> id;) out += to_hex(decoder.push(id)) + ',';
    out += to_hex(decoder.finish()) + '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() < 2 || (args[1] != "encode" && args[1] != "stream")) {
    std::fprintf(stderr, "usage: tokenize_lines DIR encode [--no-special] | tokenize_lines DIR stream\n");
    return 2;
  }
  try {
    const gpt2::Tokenizer tok = gpt2::Tokenizer::load(args[0]);
    if (args[1] == "encode")
      encode_lines(tok, !(args.size() > 2 && args[2] == "--no-special"));
    else
      stream_lines(tok);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenize_lines: %s\n", e.what());
    return 1;
  }
  return 0;
}
