// Helpers shared by the GoogleTest binaries: where the reference data and test models are.
#pragma once
#include <string>
#include <vector>

namespace gpt2::test {

std::string env_or(const char* name, const std::string& fallback);
std::string shared_dir();        // ../shared: goldens and the GPT-2 tokenizer files
std::string test_models_dir();   // build/test-models: the tiny golden converted by the fixture
std::string tiny_model(const std::string& dtype = "fp32");  // test_models_dir()/tiny-<dtype>
std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);
std::string temp_dir();          // a fresh directory, removed at exit

}  // namespace gpt2::test
