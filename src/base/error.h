// The one error type of gpt2-gen. Every bad input (a file, a flag, a prompt) becomes a
// gpt2::Error whose message is a single line naming the problem and what to do; main()
// prints it as "error: <message>" and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>

namespace gpt2 {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace gpt2
