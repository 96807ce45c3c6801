// The command line: one options struct, setup_cli() binds it to CLI11 with validators, and
// main() only wires them together (CLI11's subcom_in_files pattern).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace CLI { class App; }

namespace gpt2 {

struct CliOptions {
  // Model and device
  std::string model_dir = "models/gpt2";
  std::string device = "auto";     // auto | cpu | cuda
  std::string dtype;               // fp32 | fp16 | bf16 | int8; empty = the backend's default
  std::string kv_dtype;            // fp32 | fp16 | bf16 | int8 (aliases mapped); empty = the backend's default
  int threads = 0;                 // CPU threads; 0 = the physical cores
  int ctx_size = 0;                // K/V ring slots; 0 = the model's n_positions

  // Prompt: at most one source; none = start from <|endoftext|>
  std::optional<std::string> prompt;
  std::string prompt_file;         // "-" = stdin
  std::optional<std::string> prompt_ids;  // "1,2,3"
  bool no_special = false;         // "<|endoftext|>" in the prompt is plain text
  bool tokenize_only = false;      // print the prompt's ids as a JSON array and exit
  bool no_display_prompt = false;

  // Generation
  int max_new_tokens = 128;
  bool no_cache = false;
  bool ignore_eos = false;
  bool context_shift = false;
  std::string prompt_cache;        // --prompt-cache FILE: reuse and save the prompt's K/V (engine/prompt_cache.h)
  bool prompt_cache_ro = false;    // --prompt-cache-ro: reuse it, never write it
  float temperature = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  std::optional<uint64_t> seed;
  float min_p = 0.0f;

  // Logits processors (processors.h) and stop strings
  float repeat_penalty = 1.0f;
  int repeat_last_n = 0;           // 0 = the whole context
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int no_repeat_ngram_size = 0;
  std::vector<std::string> stop;   // --stop, repeatable

  // Beam search (--num-beams N > 1; src/app/beam_run.h)
  int num_beams = 1;
  float length_penalty = 1.0f;
  std::string early_stopping = "false";  // true | false | never
  int num_return_sequences = 1;
  std::vector<std::string> sampling_flags_given;  // the sampling flags on the command line (beams refuse them)

  // Output
  bool json = false;               // one JSON object on stdout at the end (or into json_file)
  std::string json_file;           // --json FILE writes it there instead
  bool quiet = false;              // no summary on stderr
  bool explain = false;            // --explain: each step's work, shapes and time (src/app/explain.h)
  int profile_steps = 0;           // --profile [K]: time K decode steps op by op (src/engine/profile.h); 0 = off

  // Many prompts (--batch FILE, "-" = stdin): one request per line, --parallel at once
  std::string batch_file;
  int parallel = 1;                // with --batch; with --benchmark, the largest of parallel_sizes
  // --benchmark --parallel 1,2,4: the batch sizes to measure (bench_batch.h); empty = the
  // classic one-sequence benchmark
  std::vector<int> parallel_sizes;
  std::string parallel_text = "1";  // --parallel as given
  bool no_prefix_reuse = false;     // --batch: prefill every prompt whole (engine/batch.h)

  // Benchmark (--benchmark): cache vs --no-cache, `runs` times each after a warm-up
  bool benchmark = false;
  int runs = 5;
};

void setup_cli(CLI::App& app, CliOptions& options);

// --version's text: version, commit, build type, and how CUDA is built in.
std::string version_text();

}  // namespace gpt2
