#include "app/cli.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <map>

#include "app/option_ranges.h"
#include "base/build_info.h"
#include "cuda/backend_cuda.h"
#include "cuda/cuda_variants.h"
#include "text/unicode.h"

namespace gpt2 {
namespace {

// A number within [lo, hi] (hi inclusive unless open_hi), with a message that names the
// range in plain words ("must be >= 0, got -1").
CLI::Validator number_in(double lo, double hi, bool open_lo, const std::string& description) {
  return CLI::Validator(
      [=](std::string& s) -> std::string {
        double v = 0;
        try {
          size_t n = 0;
          v = std::stod(s, &n);
          if (n != s.size()) return "not a number: " + s;
        } catch (...) {
          return "not a number: " + s;
        }
        const bool ok = (open_lo ? v > lo : v >= lo) && v <= hi;
        return ok ? "" : "must be " + description + ", got " + s;
      },
      description);
}

// --kv-dtype's values, with llama.cpp's --cache-type-k/-v names as aliases (its q8_0 has a scale
// per block of 32; int8 here has one per position and head: engine/kv_format.h).
CLI::Validator kv_dtype_name() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        const std::map<std::string, std::string> alias = {{"f32", "fp32"}, {"f16", "fp16"}, {"q8_0", "int8"}};
        if (alias.count(s)) s = alias.at(s);
        if (s == "fp32" || s == "fp16" || s == "bf16" || s == "int8") return "";
        return "must be fp32, fp16, bf16 or int8 (or llama.cpp's f32, f16, q8_0), got " + s;
      },
      "{fp32,fp16,bf16,int8}");
}

CLI::Validator number_in(const Range& r) { return number_in(r.lo, r.hi, r.open_lo, r.words); }

// The logits processors (processors.h), min-p and stop strings: the controls every generator
// offers against repetition, named as in llama.cpp.
void add_generation_controls(CLI::App& app, CliOptions& o) {
  app.add_option("--min-p", o.min_p, "Keep tokens with probability >= P x the top one's; 0 = off")
      ->check(number_in(ranges::kMinP))->capture_default_str();
  app.add_option("--repeat-penalty", o.repeat_penalty,
                 "Divide positive / multiply negative logits of tokens in the window by P; 1 = off")
      ->check(number_in(ranges::kRepeatPenalty))->capture_default_str();
  app.add_option("--repeat-last-n", o.repeat_last_n, "Penalty window: the last N context tokens; 0 = all")
      ->check(number_in(ranges::kRepeatLastN))->capture_default_str();
  app.add_option("--presence-penalty", o.presence_penalty, "Subtract A from tokens present in the window")
      ->check(number_in(ranges::kPresencePenalty))->capture_default_str();
  app.add_option("--frequency-penalty", o.frequency_penalty, "Subtract F x count from tokens in the window")
      ->check(number_in(ranges::kFrequencyPenalty))->capture_default_str();
  app.add_option("--no-repeat-ngram-size", o.no_repeat_ngram_size, "Never repeat an n-gram of N tokens; 0 = off")
      ->check(number_in(ranges::kNoRepeatNgramSize))->capture_default_str();
  app.add_option("--stop", o.stop, "Stop when the generated text contains STR (repeatable; not printed)")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            if (s.empty()) return "must not be empty";
            return is_valid_utf8(s) ? "" : "must be valid UTF-8 (generated text is)";
          },
          "STR"))
      ->allow_extra_args(false);
}

// --parallel's value: one batch size, or with --benchmark a comma list of them ("1,2,4,8"),
// each a whole number in ranges::kParallel. Returns "" or what is wrong with it.
std::string parse_batch_sizes(const std::string& text, std::vector<int>& sizes) {
  sizes.clear();
  size_t start = 0;
  for (;;) {
    const size_t comma = text.find(',', start);
    const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (item.empty() || item.size() > 9 || item.find_first_not_of("0123456789") != std::string::npos)
      return "not a whole number: \"" + item + "\" (give a batch size, or a comma list like 1,2,4,8 with --benchmark)";
    const int v = std::stoi(item);
    if (!ranges::kParallel.contains(v))
      return "each batch size must be " + std::string(ranges::kParallel.words) + ", got " + item;
    sizes.push_back(v);
    if (comma == std::string::npos) return "";
    start = comma + 1;
  }
}

// --batch and --parallel (llama.cpp's -np), with what they exclude: a request's prompt and
// settings come from its line, and the one-run reports do not apply. --parallel also serves
// --benchmark, where it may be a list of batch sizes (checked once parsing is complete).
CLI::Option* add_batch_options(CLI::App& app, CliOptions& o, const std::vector<CLI::Option*>& excluded) {
  CLI::Option* batch = app.add_option("--batch", o.batch_file,
                 "Many prompts: one request per line of FILE (- = stdin), plain text or a JSON object of "
                 "the long flags' names with _ (prompt, prompt_ids, id, max_new_tokens, temperature, seed, "
                 "stop, ...); JSON Lines out, one per request as it finishes");
  for (CLI::Option* x : excluded) batch->excludes(x);
  app.add_flag("--no-prefix-reuse", o.no_prefix_reuse,
               "With --batch: prefill every prompt whole. By default a prompt takes the K/V of the longest "
               "prefix (16 tokens or more) it shares with a sequence in the batch (vLLM's automatic prefix "
               "caching; its --no-enable-prefix-caching)")
      ->needs(batch);
  return app.add_option("--parallel,--np", o.parallel_text,
                        "With --batch: sequences decoded together (continuous batching; llama.cpp's -np). "
                        "With --benchmark: the batch sizes to measure, e.g. 1,2,4,8,16")
      ->type_name("N[,N...]")->default_str("1")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            std::vector<int> sizes;
            return parse_batch_sizes(s, sizes);
          },
          "N[,N...]"));
}

// After parsing: --parallel's list, allowed only with --benchmark; --parallel needs --batch or
// --benchmark. Throws CLI::ValidationError (main prints it as one error line).
void finish_parallel(CliOptions& o, const CLI::Option* parallel) {
  if (parallel->count() == 0) return;
  if (o.batch_file.empty() && !o.benchmark)
    throw CLI::ValidationError("--parallel requires --batch FILE (or --benchmark, to measure batch sizes)");
  std::vector<int> sizes;
  parse_batch_sizes(o.parallel_text, sizes);  // the validator has accepted it
  if (sizes.size() > 1 && !o.benchmark)
    throw CLI::ValidationError("--parallel " + o.parallel_text +
                               ": a list of batch sizes is for --benchmark only; with --batch give one number");
  o.parallel = *std::max_element(sizes.begin(), sizes.end());
  if (o.benchmark) o.parallel_sizes = sizes;
}

// Beam search, with transformers' names and meanings.
void add_beam_options(CLI::App& app, CliOptions& o) {
  app.add_option("--num-beams", o.num_beams,
                 "Beam search over N beams (1 = off). The text is printed when the search ends, not "
                 "streamed (--json: every returned sequence, its tokens, score and finish reason); not "
                 "with --batch, sampling flags or --context-shift")
      ->check(number_in(ranges::kNumBeams))->capture_default_str();
  app.add_option("--length-penalty", o.length_penalty,
                 "Beams: a finished beam scores its summed log-probabilities / length^A")
      ->check(number_in(ranges::kLengthPenalty))->capture_default_str();
  app.add_option("--early-stopping", o.early_stopping,
                 "Beams: true = stop once N beams finished; false = once no running beam can beat them "
                 "at its length; never = at the longest allowed length")
      ->check(CLI::IsMember({"true", "false", "never"}))->capture_default_str();
  app.add_option("--num-return-sequences", o.num_return_sequences, "Beams: return the K best (K <= --num-beams)")
      ->check(number_in(ranges::kNumBeams))->capture_default_str();
}

// The sampling flags given on the command line (temperature 0 is greedy, not sampling).
std::vector<std::string> sampling_flags_given(const CLI::App& app, const CliOptions& o) {
  std::vector<std::string> given;
  if (app.get_option("--temperature")->count() > 0 && o.temperature != 0.0f) given.push_back("--temperature");
  for (const char* name : {"--top-k", "--top-p", "--min-p", "--seed"})
    if (app.get_option(name)->count() > 0) given.push_back(name);
  return given;
}

}  // namespace

std::string version_text() {
  return std::string("gpt2-gen ") + GPT2_VERSION + "\ncommit: " + GPT2_GIT_COMMIT + "\nbuild type: " +
         GPT2_BUILD_TYPE + "\nCUDA: " + cuda_build_info() + "\n" + cuda_variants_help();
}

void setup_cli(CLI::App& app, CliOptions& o) {
  app.description(
      "gpt2-gen: generate text with OpenAI's GPT-2, with a K/V cache in a preallocated ring\n"
      "(or --no-cache to recompute the whole context every step, for comparison).");
  app.get_formatter()->column_width(34);
  app.set_version_flag("--version", version_text(), "Print the version, commit, build type and CUDA support");

  app.add_option("-m,--model", o.model_dir, "Converted model directory (tools/convert_weights.py)")
      ->capture_default_str();
  app.add_option("--device", o.device, "auto: CUDA when a GPU is usable, else the CPU")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  app.add_option("--dtype", o.dtype,
                 "CUDA: compute precision (default fp16). CPU: weights in memory (default: the file's; "
                 "int8: CPU only), computing in fp32")
      ->check(CLI::IsMember({"fp32", "fp16", "bf16", "int8"}));
  app.add_option("--kv-dtype", o.kv_dtype,
                 "K/V cache format (int8: one fp32 scale per position and head). Default: fp32 on the CPU, "
                 "the compute dtype on CUDA. llama.cpp's f32, f16, q8_0 are accepted as aliases")
      ->transform(kv_dtype_name());
  app.add_option("-t,--threads", o.threads, "CPU threads; 0 = the physical cores")
      ->check(number_in(0, 1024, false, "in [0, 1024]"))->capture_default_str();
  app.add_option("-c,--ctx-size", o.ctx_size, "K/V ring slots per layer; 0 = the model's n_positions")
      ->check(number_in(0, 1e9, false, ">= 0"))->capture_default_str();

  auto* p = app.add_option("-p,--prompt", o.prompt, "Prompt text");
  auto* f = app.add_option("-f,--prompt-file", o.prompt_file, "Read the prompt from FILE (- = stdin)");
  auto* ids = app.add_option("--prompt-ids", o.prompt_ids, "Prompt as token ids, e.g. 2061,318 (no tokenizer)");
  p->excludes(f)->excludes(ids);
  f->excludes(ids);
  app.add_flag("--no-special", o.no_special, "Treat <|endoftext|> in the prompt as plain text");
  app.add_flag("--tokenize", o.tokenize_only, "Print the prompt's token ids as a JSON array and exit");
  app.add_flag("--no-display-prompt", o.no_display_prompt, "Do not echo the prompt before the generated text");

  app.add_option("-n,--max-new-tokens", o.max_new_tokens, "Tokens to generate")
      ->check(number_in(ranges::kMaxNewTokens))->capture_default_str();
  app.add_flag("--no-cache", o.no_cache, "Recompute the whole context every step (no K/V cache)");
  app.add_flag("--ignore-eos", o.ignore_eos, "Keep generating after <|endoftext|>");
  app.add_flag("--context-shift", o.context_shift,
               "When the context is full, keep its last half and go on (default: stop)");
  CLI::Option* prompt_cache = app.add_option("--prompt-cache", o.prompt_cache,
                 "Reuse the K/V of the longest prefix this prompt shares with FILE's (same model, --dtype and "
                 "device), and save this prompt's K/V there after the prefill (llama.cpp's name)");
  app.add_flag("--prompt-cache-ro", o.prompt_cache_ro, "With --prompt-cache: read FILE, never write it")
      ->needs(prompt_cache);
  app.add_option("--temperature,--temp", o.temperature, "Sampling temperature; 0 = greedy")
      ->check(number_in(ranges::kTemperature))->capture_default_str();
  app.add_option("--top-k", o.top_k, "Keep the k most likely tokens; 0 = off")
      ->check(number_in(ranges::kTopK))->capture_default_str();
  app.add_option("--top-p", o.top_p, "Nucleus sampling mass in (0, 1]; 1 = off")
      ->check(number_in(ranges::kTopP))->capture_default_str();
  app.add_option("-s,--seed", o.seed, "Random seed (default: random, printed to stderr)");
  add_generation_controls(app, o);
  add_beam_options(app, o);

  CLI::Option* json = app.add_option("--json", o.json_file,
                 "Print one JSON object (ids, text, finish_reason, stats) at the end instead of "
                 "streaming; with FILE, write it there")
      ->expected(0, 1);
  app.add_flag("-q,--quiet", o.quiet, "No summary on stderr");
  app.add_flag("--explain", o.explain,
               "Show what each step computed (shapes, FLOPs, bytes, K/V held) beside its time, and "
               "what the K/V cache saves; --json carries it under \"explain\"");

  CLI::Option* profile = app.add_option("--profile", o.profile_steps,
                 "After the run, time K more decode steps op by op (not in the run's times): a table on "
                 "stderr; --json carries it under stats.profile")
      ->expected(0, 1)->default_str("16")->type_name("[K]")
      ->check(number_in(1, 100000, false, "in [1, 100000]"));

  CLI::Option* benchmark = app.add_flag("--benchmark", o.benchmark,
               "Run the same generation with and without the K/V cache, --runs times each, and report")
      ->excludes(profile);
  app.add_option("--runs", o.runs, "Timed runs per mode for --benchmark (after one warm-up)")
      ->check(number_in(1, 1000, false, "in [1, 1000]"))->capture_default_str();

  CLI::Option* explain = app.get_option("--explain");
  CLI::Option* tokenize = app.get_option("--tokenize");
  CLI::Option* parallel = add_batch_options(app, o, {p, f, ids, benchmark, profile, explain, tokenize, prompt_cache});

  app.parse_complete_callback([&app, &o, json, parallel] {
    o.json = json->count() > 0;
    o.sampling_flags_given = sampling_flags_given(app, o);
    finish_parallel(o, parallel);
  });
}

}  // namespace gpt2
