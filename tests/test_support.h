// Helpers shared by the GoogleTest binaries: where the reference data and test models are.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace gpt2::test {

std::string env_or(const char* name, const std::string& fallback);
std::string shared_dir();        // ../shared: goldens and the GPT-2 tokenizer files
std::string test_models_dir();   // build/test-models: the tiny golden converted by the fixture
std::string tiny_model(const std::string& dtype = "fp32");  // test_models_dir()/tiny-<dtype>
// The tiny model (fp32) with a 2063-token vocabulary (tests/make_small_vocab_model.py): the
// backend's mechanics tests on the CUDA emulator, ~10x faster; token ids must be < 2063.
std::string small_vocab_model();
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);
std::string temp_dir();          // a fresh directory, removed at exit

// Makes `path` a FIFO nobody writes into and returns the message of the gpt2::Error that
// `load` throws ("" if none). Opening such a FIFO the plain way blocks forever: if `load` has
// not returned after 10 s, a writer opens and closes the FIFO so that it returns, and the
// message starts with "blocked", so the caller's check fails instead of hanging.
std::string error_loading_fifo(const std::string& path, const std::function<void()>& load);

// Logits against a reference, accumulated over calls: the largest absolute error and the NMSE.
struct LogitsError {
  double max_abs = 0, err2 = 0, ref2 = 0;
  void add(const std::vector<float>& got, const std::vector<float>& ref) {
    for (size_t i = 0; i < ref.size(); ++i) {
      const double d = double(got[i]) - ref[i];
      max_abs = std::fmax(max_abs, std::fabs(d));
      err2 += d * d;
      ref2 += double(ref[i]) * ref[i];
    }
  }
  double nmse() const { return err2 / ref2; }
};

// n token ids of a seeded xorshift sequence over GPT-2's vocabulary: prompts distinct enough
// that every prefix of them counts (the prompt cache's and the prefix reuse's tests).
inline std::vector<int> seeded_tokens(int n, int seed) {
  std::vector<int> ids;
  uint32_t x = 2463534242u + uint32_t(seed);
  for (int i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    ids.push_back(int(x % 50257));
  }
  return ids;
}

// GPT2_GPU_TEST_QUICK=1 (used under compute-sanitizer and on cuda-emu, the CPU emulation)
// keeps the sizes small.
inline bool quick() {
  const char* v = std::getenv("GPT2_GPU_TEST_QUICK");
  return v && *v && std::strcmp(v, "0") != 0;
}
// `full`, or `small` in quick mode.
inline int quick_or(int small, int full) { return quick() ? small : full; }

}  // namespace gpt2::test
