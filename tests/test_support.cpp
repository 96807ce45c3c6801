#include "test_support.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "base/error.h"

namespace gpt2::test {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

// The build bakes in where the reference data and the fixture's models are; the environment
// overrides that (tools/gpu_check.sh runs the binaries on another machine).
std::string shared_dir() { return env_or("GPT2_SHARED_DIR", GPT2_DEFAULT_SHARED_DIR); }
std::string test_models_dir() { return env_or("GPT2_TEST_MODELS", GPT2_DEFAULT_TEST_MODELS); }
std::string tiny_model(const std::string& dtype) { return test_models_dir() + "/tiny-" + dtype; }
std::string small_vocab_model() { return test_models_dir() + "/tiny-v2063-fp32"; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

namespace {
struct TempRoot {
  std::filesystem::path path;
  TempRoot() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gpt2-test-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~TempRoot() { std::error_code ec; std::filesystem::remove_all(path, ec); }
};
}  // namespace

std::string temp_dir() {
  static TempRoot root;
  static int counter = 0;
  auto p = root.path / std::to_string(counter++);
  std::filesystem::create_directories(p);
  return p.string();
}

std::string error_loading_fifo(const std::string& path, const std::function<void()>& load) {
  std::filesystem::remove(path);
  if (mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("cannot make the FIFO " + path);
  std::mutex m;
  std::condition_variable cv;
  bool done = false, blocked = false;
  std::thread unblock([&] {
    std::unique_lock<std::mutex> lock(m);
    if (cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; })) return;
    blocked = true;
    lock.unlock();
    const int fd = ::open(path.c_str(), O_WRONLY);  // meets the blocked reader
    if (fd >= 0) ::close(fd);
  });
  std::string message;
  try {
    load();
  } catch (const Error& e) {
    message = e.what();
  }
  {
    std::lock_guard<std::mutex> lock(m);
    done = true;
  }
  cv.notify_one();
  unblock.join();
  return blocked ? "blocked on the FIFO until a writer came; then: " + message : message;
}

}  // namespace gpt2::test
