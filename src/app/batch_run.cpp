#include "app/batch_run.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "app/backend_choice.h"
#include "app/batch_requests.h"
#include "app/report.h"
#include "app/run_options.h"
#include "base/error.h"
#include "engine/kv_format.h"
#include "engine/batch.h"
#include "model/model.h"
#include "text/stop_strings.h"
#include "text/tokenizer.h"

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// The memory the host can still give, from /proc/meminfo's MemAvailable (0 if unknown).
size_t available_host_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("MemAvailable:", 0) == 0) return size_t(std::strtoull(line.c_str() + 13, nullptr, 10)) * 1024;
  return 0;
}

// Reads the whole file once, checking every line, before anything is generated.
long check_batch_file(const CliOptions& o, const Tokenizer& tok, const GPT2Config& cfg, int window) {
  std::ifstream in(o.batch_file);
  if (!in) throw Error("--batch " + o.batch_file + ": cannot open it; give a file of prompts, one per line, or -");
  BatchReader reader(in, o, tok, cfg, window);
  BatchLine line;
  long n = 0;
  while (reader.next(line)) ++n;
  return n;
}

// A request in flight: what turns its tokens into text, and its line.
struct InFlight {
  BatchLine line;
  StreamDecoder decoder;
  StopStrings stops;
  std::string shown;  // the generated text that passed the stop strings
  InFlight(BatchLine l, const Tokenizer& tok) : line(std::move(l)), decoder(tok), stops(line.stop) {}
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

// One request's output object.
json result_json(InFlight& f, const GenerationResult& r, const std::string& text) {
  json j = {{"id", f.line.id}, {"text", text}, {"generated_ids", r.generated},
            {"finish_reason", finish_reason_name(r.finish)}};
  if (f.stops.matched()) j["stop_string"] = f.stops.match();
  const std::vector<double> decode(r.token_ms.begin() + (r.token_ms.empty() ? 0 : 1), r.token_ms.end());
  // forwards[0] is the prefill, at the position after the prefix it reused.
  const int reused = r.forwards.empty() ? 0 : r.forwards.front().pos;
  json stats = {{"prompt_tokens", f.line.prompt.size()}, {"prompt_tokens_reused", reused},
                {"generated_tokens", r.generated.size()},
                {"time_to_first_token_ms", r.prefill_ms}, {"decode_ms", r.decode_ms},
                {"decode_tokens_per_s", r.decode_tokens_per_s()}, {"token_ms_p50", percentile(decode, 0.5)},
                {"token_ms_p99", percentile(decode, 0.99)}, {"context_shifts", r.context_shifts}};
  if (!f.line.options.sampling.greedy()) stats["seed"] = f.line.options.seed;
  j["stats"] = stats;
  return j;
}

class BatchRun {
 public:
  BatchRun(const CliOptions& o, const std::atomic<bool>* interrupted) : o_(o), interrupted_(interrupted) {}

  int run() {
    open();
    BatchEvents ev;
    ev.next = [this](BatchRequest& r) { return next(r); };
    ev.on_token = [this](int id, int token) { return on_token(id, token); };
    ev.on_finish = [this](int id, GenerationResult& r) { on_finish(id, r); };
    const auto t = Clock::now();
    BatchOptions options;
    options.prefix_reuse = !o_.no_prefix_reuse;
    const BatchStats stats = generate_batch(*backend_, ev, interrupted_, options);
    const double ms = ms_since(t);
    if (o_.json) write_in_input_order();
    if (!o_.quiet) std::cerr << summary(stats, ms);
    if (total_ > stats.requests && !bad_line_)  // Ctrl-C or a closed stdout: say what never ran
      std::cerr << "gpt2-gen: " << count_of(total_ - stats.requests, "request") << " of " << total_
                << " not started (the requests in flight were written, finish reason \"interrupted\")\n";
    if (bad_line_) throw *bad_line_;
    return interrupted_ && interrupted_->load() ? 130 : 0;
  }

 private:
  // The model, the tokenizer, the file checked whole, the K/V cache planned; then the backend.
  void open() {
    const auto t = Clock::now();
    const GPT2Config cfg = load_config(model_config_path(o_.model_dir));
    const int window = context_window(o_.ctx_size, cfg.n_positions);
    plan_kv_bytes(cfg, o_.parallel, window, backend_options(o_).kv_dtype);
    model_ = load_model(o_.model_dir);
    tok_.emplace(Tokenizer::load(o_.model_dir, model_.config.vocab_size));
    if (o_.batch_file != "-") {
      total_ = check_batch_file(o_, *tok_, model_.config, window);
      if (!o_.quiet) std::cerr << "gpt2-gen: --batch " << o_.batch_file << ": " << count_of(total_, "request") << "\n";
      file_ = std::make_unique<std::ifstream>(o_.batch_file);
    }
    reader_.emplace(file_ ? *file_ : std::cin, o_, *tok_, model_.config, window);
    std::string note;
    backend_ = make_backend(model_, backend_options(o_), &note);
    if (!o_.quiet && !note.empty()) std::cerr << "gpt2-gen: " << note << "\n";
    load_ms_ = ms_since(t);
  }

  bool next(BatchRequest& r) {
    if (!output_open_) return false;
    BatchLine line;
    try {
      if (!reader_->next(line)) return false;
    } catch (const Error& e) {  // stdin (a file was checked whole): finish what runs, then fail
      bad_line_ = e;
      return false;
    }
    r.prompt = line.prompt;
    r.options = line.options;
    in_flight_.emplace(started_++, InFlight(std::move(line), *tok_));
    return true;
  }

  bool on_token(int id, int token) {
    InFlight& f = in_flight_.at(id);
    f.shown += f.stops.push(f.decoder.push(token));
    return output_open_ && !f.stops.matched();  // a stop string: finish reason "stop" below
  }

  void on_finish(int id, GenerationResult& r) {
    InFlight& f = in_flight_.at(id);
    f.shown += f.stops.push(f.decoder.finish()) + f.stops.release();
    if (f.stops.matched()) r.finish = FinishReason::Stop;
    const std::string text = f.stops.matched() ? f.shown : tok_->decode(r.generated);
    std::string out = dump_json(result_json(f, r, text)) + "\n";
    generated_ += long(r.generated.size());
    in_flight_.erase(id);
    if (!o_.json || !o_.json_file.empty()) write_stdout(out);  // streamed as each finishes
    if (o_.json) kept_.emplace(id, std::move(out));
  }

  void write_stdout(const std::string& s) {
    if (!output_open_) return;
    output_open_ = std::fwrite(s.data(), 1, s.size(), stdout) == s.size() && std::fflush(stdout) == 0;
  }

  void write_in_input_order() {
    std::string all;
    for (const auto& [id, s] : kept_) all += s;
    if (o_.json_file.empty()) write_stdout(all);
    else write_file_atomically(o_.json_file, all);
  }

  std::string summary(const BatchStats& s, double ms) const {
    const BackendInfo& info = backend_->info();
    char line[768];
    std::snprintf(line, sizeof line,
                  "gpt2-gen: batch: %s on %s (%s, %s), --parallel %d, K/V cache %s %s; load %.1f ms\n"
                  "gpt2-gen: generated %ld tokens in %.1f ms: %.1f tokens/s; %d decode steps of %.2f "
                  "sequences on average (at most %d)\n"
                  "gpt2-gen: prompt tokens: %ld computed, %ld reused from shared prefixes%s\n",
                  count_of(s.requests, "request").c_str(), info.device.c_str(), info.device_name.c_str(),
                  compute_dtype_name(info.dtype), o_.parallel, compute_dtype_name(info.kv_dtype), format_bytes(info.kv_bytes).c_str(), load_ms_, generated_,
                  ms, ms > 0 ? 1000.0 * double(generated_) / ms : 0.0, s.decode_steps,
                  s.decode_steps ? double(s.decode_rows) / s.decode_steps : 0.0, s.max_rows,
                  s.prompt_tokens_computed, s.prompt_tokens_reused, o_.no_prefix_reuse ? " (--no-prefix-reuse)" : "");
    return line;
  }

  const CliOptions& o_;
  const std::atomic<bool>* interrupted_;
  Model model_;
  std::optional<Tokenizer> tok_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<std::ifstream> file_;
  std::optional<BatchReader> reader_;
  std::map<int, InFlight> in_flight_;
  int started_ = 0;                   // requests taken from the input: the next one's id
  long total_ = 0;                    // requests in the file (its check pass); 0 for stdin
  std::map<int, std::string> kept_;   // --json: each request's line by id (input order)
  std::optional<Error> bad_line_;     // stdin's bad line, raised after the requests in flight
  bool output_open_ = true;
  double load_ms_ = 0;
  long generated_ = 0;
};

}  // namespace

size_t plan_kv_bytes(const GPT2Config& cfg, int parallel, int window, std::optional<ComputeDType> kv_dtype) {
  const size_t per_position =  // K and V of every layer
      size_t(2) * cfg.n_layer * kv_row_bytes(kv_dtype.value_or(ComputeDType::F32), cfg.n_embd, cfg.n_head);
  const size_t bytes = per_position * size_t(window) * size_t(parallel);
  const size_t available = available_host_bytes(), limit = available / 2;
  if (available > 0 && bytes > limit) {
    const size_t fit_parallel = limit / (per_position * size_t(window));
    const size_t fit_window = limit / (per_position * size_t(parallel));
    throw Error("--parallel " + std::to_string(parallel) + " with a " + std::to_string(window) +
                "-token context needs " + format_bytes(bytes) + " of K/V cache, more than half of the " +
                format_bytes(available) + " of memory available; use --parallel " +
                std::to_string(std::max<size_t>(1, fit_parallel)) + " or -c " + std::to_string(fit_window));
  }
  return bytes;
}

int run_batch(const CliOptions& options, const std::atomic<bool>* interrupted) {
  BatchRun run(options, interrupted);
  return run.run();
}

}  // namespace gpt2
