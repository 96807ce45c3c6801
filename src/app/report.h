// What a run reports: the human summary on stderr and the --json object.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/generator.h"

namespace gpt2 {

struct RunReport {
  BackendInfo backend;
  bool kv_cache = true;
  int kv_capacity = 0;
  double load_ms = 0;
  uint64_t seed = 0;
  bool sampled = false;  // false when greedy (the seed is then irrelevant)
  std::vector<int> prompt_ids;
  GenerationResult result;
  std::string text;      // the generated text (prompt excluded; cut before a stop string)
  std::string stop_string;  // the stop string that ended generation (finish reason "stop")
  nlohmann::json explain;  // --explain's object (null without --explain)
  nlohmann::json profile;  // --profile's object, under stats (null without --profile)
};

// Peak resident memory of this process in bytes (getrusage), for the CPU backend's summary.
size_t peak_host_bytes();

// "12.3 MB"
std::string format_bytes(size_t bytes);
std::string count_of(long n, const std::string& noun);  // "1 run", "5 runs"

// The llama.cpp-style summary, several "gpt2-gen: ..." lines for stderr.
std::string summary_text(const RunReport& r);

// The object --json prints: prompt_ids, generated_ids, text, finish_reason, stats{...}.
nlohmann::json report_json(const RunReport& r);

// JSON text that survives invalid UTF-8 in generated text (replaced by U+FFFD).
std::string dump_json(const nlohmann::json& j, int indent = -1);

// Writes `text` to `path` via a temporary file and a rename: never a half-written file.
void write_file_atomically(const std::string& path, const std::string& text);

}  // namespace gpt2
