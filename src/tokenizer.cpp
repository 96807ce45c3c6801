// Placeholder until the tokenizer lands (issue 3).
#include "tokenizer.h"
#include "error.h"
namespace gpt2 {
struct Tokenizer::Impl {};
Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;
Tokenizer Tokenizer::load(const std::string&, int) { throw Error("tokenizer not implemented yet"); }
Tokenizer Tokenizer::from_strings(std::string_view, std::string_view, int) { throw Error("tokenizer not implemented yet"); }
std::vector<int> Tokenizer::encode(std::string_view, bool) const { return {}; }
std::string Tokenizer::decode(const std::vector<int>&) const { return {}; }
const std::string& Tokenizer::token_bytes(int) const { static std::string s; return s; }
int Tokenizer::vocab_size() const { return 0; }
std::string StreamDecoder::push(int) { return {}; }
std::string StreamDecoder::finish() { return {}; }
}  // namespace gpt2
