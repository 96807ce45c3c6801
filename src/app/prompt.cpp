#include "app/prompt.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "base/error.h"
#include "text/tokenizer.h"

namespace gpt2 {

std::vector<int> parse_prompt_ids(const std::string& text, int vocab_size) {
  std::vector<int> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    const std::string tok = b == std::string::npos ? "" : item.substr(b, e - b + 1);
    char* end = nullptr;
    errno = 0;
    const long long v = tok.empty() ? -1 : std::strtoll(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || errno == ERANGE)
      throw Error("--prompt-ids: \"" + tok + "\" is not a token id (expected e.g. 2061,318,509)");
    if (v < 0 || v >= vocab_size)
      throw Error("--prompt-ids: token id " + tok + " is outside the vocabulary [0, " +
                  std::to_string(vocab_size) + ")");
    ids.push_back(int(v));
  }
  if (ids.empty()) throw Error("--prompt-ids is empty (expected e.g. 2061,318,509)");
  return ids;
}

std::string read_prompt_text(const CliOptions& o) {
  if (o.prompt) return *o.prompt;
  if (o.prompt_file.empty()) return "";
  std::ostringstream ss;
  if (o.prompt_file == "-") {
    ss << std::cin.rdbuf();  // a closed stdin reads as an empty prompt
    return ss.str();
  }
  struct stat st{};
  if (stat(o.prompt_file.c_str(), &st) != 0)
    throw Error("--prompt-file " + o.prompt_file + ": " + std::strerror(errno));
  if (S_ISDIR(st.st_mode)) throw Error("--prompt-file " + o.prompt_file + " is a directory, not a file");
  std::ifstream in(o.prompt_file, std::ios::binary);
  if (!in) throw Error("--prompt-file " + o.prompt_file + ": cannot open for reading");
  ss << in.rdbuf();
  return ss.str();
}

std::vector<int> prompt_tokens(const CliOptions& o, const std::string& text, const Tokenizer& tokenizer,
                               int vocab_size) {
  if (o.prompt_ids) return parse_prompt_ids(*o.prompt_ids, vocab_size);
  return tokenizer.encode(text, !o.no_special);
}

}  // namespace gpt2
