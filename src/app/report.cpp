#include "app/report.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/error.h"

namespace gpt2 {

size_t peak_host_bytes() {
  struct rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return size_t(ru.ru_maxrss) * 1024;  // Linux reports kilobytes
}

std::string format_bytes(size_t bytes) {
  char buf[32];
  const double b = double(bytes);
  if (b >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else std::snprintf(buf, sizeof buf, "%zu B", bytes);
  return buf;
}

std::string summary_text(const RunReport& r) {
  const GenerationResult& g = r.result;
  char buf[1024];
  std::string s;
  std::snprintf(buf, sizeof buf, "gpt2-gen: device %s (%s), dtype %s, kv cache %s (%s, %d slots/layer, %s)\n",
                r.backend.device.c_str(), r.backend.device_name.c_str(), compute_dtype_name(r.backend.dtype),
                r.kv_cache ? "on" : "off", compute_dtype_name(r.backend.kv_dtype), r.kv_capacity,
                format_bytes(r.backend.kv_bytes).c_str());
  s += buf;
  if (!r.backend.device_paths.empty()) s += "gpt2-gen: device paths: " + r.backend.device_paths + "\n";
  std::snprintf(buf, sizeof buf, "gpt2-gen: load %10.1f ms   weights %s, peak memory %s\n", r.load_ms,
                format_bytes(r.backend.weight_bytes).c_str(),
                format_bytes(r.backend.peak_device_bytes ? r.backend.peak_device_bytes : peak_host_bytes()).c_str());
  s += buf;
  std::snprintf(buf, sizeof buf, "gpt2-gen: prefill %8.1f ms   %zu prompt tokens\n", g.prefill_ms, r.prompt_ids.size());
  s += buf;
  std::snprintf(buf, sizeof buf, "gpt2-gen: decode %9.1f ms   %d tokens, %.1f tokens/s (%.3f ms/token)\n", g.decode_ms,
                g.decode_tokens(), g.decode_tokens_per_s(), g.decode_tokens() ? g.decode_ms / g.decode_tokens() : 0.0);
  s += buf;
  std::snprintf(buf, sizeof buf, "gpt2-gen: generated %zu tokens, finish reason \"%s\"%s\n", g.generated.size(),
                finish_reason_name(g.finish),
                g.context_shifts ? (", " + std::to_string(g.context_shifts) + " context shifts").c_str() : "");
  s += buf;
  return s;
}

nlohmann::json report_json(const RunReport& r) {
  const GenerationResult& g = r.result;
  nlohmann::json stats = {
      {"device", r.backend.device},
      {"device_name", r.backend.device_name},
      {"dtype", compute_dtype_name(r.backend.dtype)},
      {"kv_cache", r.kv_cache},
      {"kv_capacity", r.kv_capacity},
      {"kv_dtype", compute_dtype_name(r.backend.kv_dtype)},
      {"load_ms", r.load_ms},
      {"prefill_ms", g.prefill_ms},
      {"decode_ms", g.decode_ms},
      {"decode_tokens_per_s", g.decode_tokens_per_s()},
      {"prompt_tokens", r.prompt_ids.size()},
      {"generated_tokens", g.generated.size()},
      {"kv_cache_bytes", r.backend.kv_bytes},
      {"weight_bytes", r.backend.weight_bytes},
      {"activation_bytes", r.backend.activation_bytes},
      {"peak_device_bytes", r.backend.peak_device_bytes},
      {"peak_host_bytes", peak_host_bytes()},
      {"context_shifts", g.context_shifts},
      {"token_ms", g.token_ms},
  };
  if (!r.backend.device_paths.empty()) stats["device_paths"] = r.backend.device_paths;
  if (r.backend.prefetch_bytes) {
    stats["cpu_prefetch_bytes"] = r.backend.prefetch_bytes;
    stats["cpu_prefetch_probe_ms"] = r.backend.prefetch_probe_ms;
  }
  if (r.sampled) stats["seed"] = r.seed;
  if (!r.profile.is_null()) stats["profile"] = r.profile;
  nlohmann::json j = {{"prompt_ids", r.prompt_ids},
                      {"generated_ids", g.generated},
                      {"text", r.text},
                      {"finish_reason", finish_reason_name(g.finish)},
                      {"stats", stats}};
  if (!r.explain.is_null()) j["explain"] = r.explain;
  if (g.finish == FinishReason::Stop) j["stop_string"] = r.stop_string;
  return j;
}

std::string count_of(long n, const std::string& noun) {
  return std::to_string(n) + " " + noun + (n == 1 ? "" : "s");
}

std::string dump_json(const nlohmann::json& j, int indent) {
  return j.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  struct stat st{};
  if (stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    // A device or a pipe (/dev/null, /dev/stdout, a FIFO): write into it; renaming a
    // temporary file over it would replace the device itself.
    FILE* f = S_ISDIR(st.st_mode) ? nullptr : std::fopen(path.c_str(), "wb");
    if (!f) throw Error("cannot write " + path + (S_ISDIR(st.st_mode) ? ": it is a directory" : ""));
    const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    if (std::fclose(f) != 0 || !ok) throw Error("cannot write " + path + ": " + std::strerror(errno));
    return;
  }
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error("cannot write " + path + ": " + std::strerror(errno));
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error("cannot write " + path + ": " + why);
  }
}

}  // namespace gpt2
