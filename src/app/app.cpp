#include "app/app.h"

#include <cerrno>
#include <chrono>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>

#include "app/backend_choice.h"
#include "app/beam_run.h"
#include "app/batch_run.h"
#include "app/bench.h"
#include "app/bench_batch.h"
#include "app/explain.h"
#include "app/progress.h"
#include "app/prompt.h"
#include "app/prompt_cache_run.h"
#include "app/report.h"
#include "app/run_options.h"
#include "base/error.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "model/model.h"
#include "text/stop_strings.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace gpt2 {
namespace {

std::atomic<bool> g_interrupted{false};

void on_sigint(int) { g_interrupted.store(true); }

// Ctrl-C stops generation after the current token (the summary is still printed); a closed
// stdout (`| head`) makes writes fail with EPIPE instead of killing the process.
void install_signal_handlers() {
  struct sigaction sa{};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;  // a second Ctrl-C terminates at once
  sigaction(SIGINT, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

// Writes to stdout; false once the reader has gone away.
bool write_stdout(const std::string& s) {
  if (s.empty()) return true;
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) return false;
  return std::fflush(stdout) == 0;
}

void note(const CliOptions& o, const std::string& text) {
  if (!o.quiet && !text.empty()) std::cerr << "gpt2-gen: " << text << "\n";
}

// The generation controls given with non-default values, for --benchmark's note.
std::string generation_controls_given(const CliOptions& o) {
  std::string names;
  auto add = [&](bool given, const char* name) { if (given) names += std::string(names.empty() ? "" : ", ") + name; };
  add(o.min_p != 0.0f, "--min-p");
  add(o.repeat_penalty != 1.0f, "--repeat-penalty");
  add(o.repeat_last_n != 0, "--repeat-last-n");
  add(o.presence_penalty != 0.0f, "--presence-penalty");
  add(o.frequency_penalty != 0.0f, "--frequency-penalty");
  add(o.no_repeat_ngram_size != 0, "--no-repeat-ngram-size");
  add(!o.stop.empty(), "--stop");
  return names;
}

// --profile: the decode step of the run's last token, op by op (profile.h); a run that computed
// nothing (-n 0) first computes its prompt.
DecodeProfile profile_decode(Backend& backend, const std::vector<int>& prompt, const GenerationResult& run,
                             int steps) {
  if (run.forwards.empty()) backend.forward(prompt.data(), int(prompt.size()), 0, KvRing{backend.kv_capacity(), 0});
  return backend.profile_decode(steps);
}

int run_tokenize(const CliOptions& o) {
  const GPT2Config cfg = load_config(model_config_path(o.model_dir));
  const Tokenizer tok = Tokenizer::load(o.model_dir, cfg.vocab_size);
  const std::vector<int> ids = prompt_tokens(o, read_prompt_text(o), tok, cfg.vocab_size);
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  write_stdout(out + "]\n");
  return 0;
}

// Everything a run needs, loaded in order: the model and tokenizer, the prompt, the backend.
// Filled in place (the backend keeps a reference to the model).
struct Session {
  Model model;
  std::optional<Tokenizer> tok;
  std::vector<int> prompt;
  bool empty_prompt = false;
  std::unique_ptr<Backend> backend;
  double load_ms = 0, tokenize_ms = 0;  // load: files and the backend's upload, not tokenizing
};

void open_session(const CliOptions& o, Session& s) {
  using clock = std::chrono::steady_clock;
  auto ms_since = [](clock::time_point t) { return std::chrono::duration<double, std::milli>(clock::now() - t).count(); };
  auto t = clock::now();
  s.model = load_model(o.model_dir);
  s.tok.emplace(Tokenizer::load(o.model_dir, s.model.config.vocab_size));
  s.load_ms = ms_since(t);

  const std::string text = o.prompt_ids ? "" : read_prompt_text(o);
  if (!is_valid_utf8(text))
    note(o, "warning: the prompt is not valid UTF-8; its bytes are encoded as they are (see README)");
  t = clock::now();
  s.prompt = prompt_tokens(o, text, *s.tok, s.model.config.vocab_size);
  s.tokenize_ms = ms_since(t);
  s.empty_prompt = s.prompt.empty();
  if (s.empty_prompt) s.prompt.push_back(s.model.config.eos_token_id);  // start from <|endoftext|>
  // Refused before the backend's upload, which may take seconds.
  check_prompt_fits(s.prompt.size(), context_window(o.ctx_size, s.model.config.n_positions));

  t = clock::now();
  std::string fallback;
  s.backend = make_backend(s.model, backend_options(o), &fallback);
  s.load_ms += ms_since(t);
  note(o, fallback);
  note(o, s.backend->info().note);
}

// Generates, streaming the text to stdout (unless --json) through the stop strings, with a
// progress line where the text is not on the terminal. Fills the report's result and text.
void stream_generation(const CliOptions& o, Session& s, const GenerationOptions& gen, RunReport& report,
                       const std::function<void()>& after_prefill) {
  StreamDecoder stream(*s.tok);
  StopStrings stops(o.stop);
  std::string shown;  // the generated text that passed the stop strings
  bool output_open = true;
  if (!o.json && !o.no_display_prompt && !s.empty_prompt)
    for (int id : s.prompt) output_open = output_open && write_stdout(stream.push(id));
  Progress progress(progress_wanted(o.quiet) && (o.json || isatty(STDOUT_FILENO) != 1), progress_min_seconds());
  progress.begin_run(gen.use_cache ? "generating (cache)" : "generating (no-cache)", 0, 0, gen.max_new_tokens);
  TokenCallback on_token = [&](int id) {
    progress.tick();
    const std::string text = stops.push(stream.push(id));
    shown += text;
    if (!o.json) output_open = output_open && write_stdout(text);
    return output_open && !stops.matched();  // a stop string: finish reason "stop" below
  };

  report.result = generate(*s.backend, s.prompt, gen, on_token, &g_interrupted, after_prefill);
  progress.clear();
  const std::string rest = stops.push(stream.finish()) + stops.release();
  shown += rest;
  if (!o.json && output_open) write_stdout(rest + "\n");
  if (stops.matched()) {
    report.result.finish = FinishReason::Stop;
    report.stop_string = stops.match();
  }
  report.text = stops.matched() ? shown : s.tok->decode(report.result.generated);
}

// After the run: the summary, --explain and --profile on stderr, then the --json object.
void report_run(const CliOptions& o, Session& s, const GenerationOptions& gen, RunReport& report) {
  if (!o.quiet) std::cerr << summary_text(report);
  if (o.explain) {
    const ExplainModel em = explain_model(s.model.config, report.backend, report.kv_capacity);
    const ExplainPair ex = explain_generation(em, report.result, gen.use_cache);
    if (!o.quiet) std::cerr << explain_text(em, ex.run, ex.other);
    report.explain = explain_json(em, ex.run, ex.other);
  }
  if (o.profile_steps > 0 && !g_interrupted.load()) {
    const DecodeProfile profile = profile_decode(*s.backend, s.prompt, report.result, o.profile_steps);
    if (!o.quiet) std::cerr << profile_text(profile);
    report.profile = profile_json(profile);
  }
  if (o.json) {
    const std::string text = dump_json(report_json(report)) + "\n";
    if (o.json_file.empty()) write_stdout(text);
    else write_file_atomically(o.json_file, text);
  }
}

}  // namespace

int run_app(const CliOptions& o) {
  install_signal_handlers();
  if (o.tokenize_only) return run_tokenize(o);
  check_beam_cli(o);
  if (!o.batch_file.empty()) return run_batch(o, &g_interrupted);
  check_prompt_cache_options(o);

  const bool batch_bench = o.benchmark && !o.parallel_sizes.empty();
  if (batch_bench && o.explain)
    throw Error("--explain is not recorded by --benchmark --parallel; drop --explain, or --parallel for the "
                "one-sequence benchmark");
  if (batch_bench) {  // the K/V cache of the largest batch size, refused before loading as --batch does
    const GPT2Config cfg = load_config(model_config_path(o.model_dir));
    plan_kv_bytes(cfg, o.parallel, context_window(o.ctx_size, cfg.n_positions), backend_options(o).kv_dtype);
  }

  Session s;
  open_session(o, s);
  const bool sampled = o.temperature > 0.0f && o.num_beams == 1;
  const uint64_t seed = run_seed(o);
  if (sampled && !o.benchmark) note(o, "seed " + std::to_string(seed));
  GenerationOptions gen = generation_options(o, s.model.config, seed);

  if (o.benchmark) {
    const std::string ignored = generation_controls_given(o);
    if (!ignored.empty()) note(o, "--benchmark ignores " + ignored + ": it runs greedy to a fixed length");
    if (batch_bench)
      return run_batch_benchmark(s.backend, {&s.model, backend_options(o), o.model_dir, s.prompt, s.load_ms, s.tokenize_ms}, o);
    return run_benchmark(*s.backend, {o.model_dir, s.model.config, s.prompt, s.load_ms, s.tokenize_ms}, o);
  }
  if (o.num_beams > 1) return run_beam(o, {*s.backend, *s.tok, s.prompt, s.empty_prompt, s.load_ms}, gen, &g_interrupted);

  std::string cache_note;
  const PromptCacheRun cache = prepare_prompt_cache(o, s.model, *s.backend, s.prompt, &cache_note);
  note(o, cache_note);
  gen.reused_prefix = cache.reused;
  RunReport report;
  stream_generation(o, s, gen, report, cache.save);
  report.backend = s.backend->info();
  report.kv_cache = gen.use_cache;
  report.kv_capacity = s.backend->kv_capacity();
  report.load_ms = s.load_ms;
  report.seed = seed;
  report.sampled = sampled;
  report.prompt_ids = s.prompt;
  report_run(o, s, gen, report);
  return g_interrupted.load() ? 130 : 0;
}

}  // namespace gpt2
