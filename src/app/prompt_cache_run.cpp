#include "app/prompt_cache_run.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "app/report.h"
#include "base/error.h"
#include "engine/prompt_cache.h"

namespace gpt2 {

void check_prompt_cache_options(const CliOptions& o) {
  if (o.prompt_cache.empty()) return;
  const std::string& path = o.prompt_cache;
  if (o.no_cache)
    throw Error("--prompt-cache reuses the K/V cache, which --no-cache turns off; drop one of them");
  if (o.benchmark)
    throw Error("--benchmark times prefills from scratch; drop --prompt-cache");
  struct stat st{};
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw Error("--prompt-cache " + path + " is not a regular file (a directory, FIFO or device); name a file");
  if (o.prompt_cache_ro) return;
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (access(dir.c_str(), W_OK) != 0)
    throw Error("--prompt-cache " + path + ": cannot write in " + dir + " (" + std::strerror(errno) +
                "); name another file, or add --prompt-cache-ro");
}

PromptCacheRun prepare_prompt_cache(const CliOptions& o, const Model& model, Backend& backend,
                                    const std::vector<int>& prompt, std::string* note) {
  PromptCacheRun run;
  if (o.prompt_cache.empty()) return run;
  const PromptCacheKey key = prompt_cache_key(model, backend);
  const KvRing ring{backend.kv_capacity(), 0};  // where generate()'s sequence starts
  const auto t0 = std::chrono::steady_clock::now();
  const PromptCacheLoad load = load_prompt_cache(o.prompt_cache, key, prompt, backend, ring, note);
  if (load.reused > 0) {  // part of the time to the first token, which the prefill time leaves out
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    char took[48];
    std::snprintf(took, sizeof took, " (loaded in %.1f ms)", ms);
    *note += took;
  }
  run.reused = load.reused;
  if (o.prompt_cache_ro || load.same_prompt) return run;  // the file holds this prompt already
  run.save = [path = o.prompt_cache, key, ring, prompt, &backend] {
    const int n = int(prompt.size());
    PromptCacheImage img = prompt_cache_image(key, prompt);
    auto* base = reinterpret_cast<uint8_t*>(&img.bytes[0]);
    backend.read_kv(0, 0, n, ring, base + img.k_at, base + img.v_at, n);
    write_file_atomically(path, img.bytes);
  };
  return run;
}

}  // namespace gpt2
