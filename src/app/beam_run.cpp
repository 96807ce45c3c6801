#include "app/beam_run.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "app/report.h"
#include "base/error.h"
#include "text/tokenizer.h"

namespace gpt2 {
namespace {

double mean(const std::vector<double>& v, size_t from) {
  if (v.size() <= from) return 0;
  return std::accumulate(v.begin() + long(from), v.end(), 0.0) / double(v.size() - from);
}

// What the beams cost, from the run's own steps (the decode steps: step 0 is the prefill).
struct BeamCost {
  int num_beams = 0, steps = 0, last_context = 0;
  size_t kv_bytes_allocated = 0;  // every beam's rings
  size_t kv_bytes_in_use = 0;     // positions written: the prompt once, each beam's generated tokens
  size_t history_bytes_per_step = 0;  // reorder()'s table copies at the last step
  double forward_ms = 0, select_ms = 0, reorder_ms = 0;  // means over the decode steps
  bool profiled = false;          // --profile: reorder and decode_batch re-timed after the run
  double profile_reorder_us = 0, profile_forward_ms = 0;
};

BeamCost beam_cost(const Backend& backend, const BeamResult& r, int num_beams, int prompt_len, bool cache) {
  BeamCost c;
  const BackendInfo& info = backend.info();
  const BeamTiming& t = r.timing;
  c.num_beams = num_beams;
  c.steps = int(t.forward_ms.size());
  c.last_context = t.context.empty() ? prompt_len : t.context.back();
  c.kv_bytes_allocated = info.kv_bytes;
  const size_t per_position = info.kv_bytes / size_t(backend.n_seqs()) / size_t(backend.kv_capacity());
  c.kv_bytes_in_use = per_position * size_t(prompt_len + num_beams * std::max(0, c.last_context - prompt_len));
  c.history_bytes_per_step = cache ? size_t(num_beams) * size_t(c.last_context) * sizeof(int) : 0;
  c.forward_ms = mean(t.forward_ms, 1);
  c.select_ms = mean(t.select_ms, 1);
  c.reorder_ms = mean(t.reorder_ms, 1);
  return c;
}

// --profile: `steps` more reorder() + decode_batch() pairs at the run's last position, the
// beams' parents rotated each time (so every table changes), timed apart.
void profile_beam_steps(Backend& backend, BeamCost& c, int steps, int token) {
  const int N = c.num_beams, pos = c.last_context;
  if (pos < 1 || pos >= backend.context_window()) return;
  using Clock = std::chrono::steady_clock;
  std::vector<int> parent(static_cast<size_t>(N));
  std::vector<SeqToken> rows;
  for (int j = 0; j < N; ++j) rows.push_back(SeqToken{j, token, pos, KvRing{backend.kv_capacity(), 0}});
  double reorder_us = 0, forward_ms = 0;
  for (int i = 0; i <= steps; ++i) {  // i = 0: untimed warm-up
    for (int j = 0; j < N; ++j) parent[size_t(j)] = (j + i) % N;
    const auto t0 = Clock::now();
    backend.reorder(parent.data(), N, pos);
    const auto t1 = Clock::now();
    backend.decode_batch(rows.data(), N);
    backend.settle();
    const auto t2 = Clock::now();
    if (i == 0) continue;
    reorder_us += std::chrono::duration<double, std::micro>(t1 - t0).count();
    forward_ms += std::chrono::duration<double, std::milli>(t2 - t1).count();
  }
  c.profiled = true;
  c.profile_reorder_us = reorder_us / steps;
  c.profile_forward_ms = forward_ms / steps;
}

std::string beam_cost_text(const BeamCost& c) {
  char buf[1200];
  std::snprintf(buf, sizeof buf,
                "gpt2-gen: beams %d, %d steps; K/V held %s allocated, %s written (the prompt once, each beam's "
                "own tokens)\n"
                "gpt2-gen: bytes copied per step: K/V 0; history tables %zu B (%d beams x %d positions x 4 B, "
                "parents' tables copied)\n"
                "gpt2-gen: per decode step: forward %.3f ms, candidate selection %.3f ms, reorder %.4f ms (%.2f%% "
                "of the forward)\n",
                c.num_beams, c.steps, format_bytes(c.kv_bytes_allocated).c_str(), format_bytes(c.kv_bytes_in_use).c_str(),
                c.history_bytes_per_step, c.num_beams, c.last_context, c.forward_ms, c.select_ms, c.reorder_ms,
                c.forward_ms > 0 ? 100.0 * c.reorder_ms / c.forward_ms : 0.0);
  std::string s = buf;
  if (c.profiled) {
    std::snprintf(buf, sizeof buf,
                  "gpt2-gen: profile at position %d: reorder %.2f us, decode_batch of %d rows %.3f ms: reorder = "
                  "%.3f%% of the forward\n",
                  c.last_context, c.profile_reorder_us, c.num_beams, c.profile_forward_ms,
                  c.profile_forward_ms > 0 ? 100.0 * c.profile_reorder_us / 1000.0 / c.profile_forward_ms : 0.0);
    s += buf;
  }
  return s;
}

nlohmann::json beam_cost_json(const BeamCost& c) {
  nlohmann::json j = {{"num_beams", c.num_beams},
                      {"steps", c.steps},
                      {"kv_bytes_allocated", c.kv_bytes_allocated},
                      {"kv_bytes_in_use", c.kv_bytes_in_use},
                      {"kv_bytes_copied_per_step", 0},
                      {"history_bytes_per_step", c.history_bytes_per_step},
                      {"forward_ms_mean", c.forward_ms},
                      {"select_ms_mean", c.select_ms},
                      {"reorder_ms_mean", c.reorder_ms}};
  if (c.profiled) j["profile"] = {{"position", c.last_context}, {"reorder_us", c.profile_reorder_us},
                                  {"decode_batch_ms", c.profile_forward_ms}};
  return j;
}

// A beam ends when its generated text contains a stop string (transformers' stop_strings).
BeamStopRule stop_rule(const CliOptions& o, const Tokenizer& tok) {
  if (o.stop.empty()) return nullptr;
  return [&o, &tok](const std::vector<int>& generated) {
    const std::string text = tok.decode(generated);
    for (const std::string& s : o.stop)
      if (text.find(s) != std::string::npos) return true;
    return false;
  };
}

// A sequence's text, cut before the first stop string it contains.
std::string shown_text(const CliOptions& o, const Tokenizer& tok, const BeamSequence& s) {
  std::string text = tok.decode(s.tokens);
  for (const std::string& stop : o.stop) {
    const size_t at = text.find(stop);
    if (at != std::string::npos) text.resize(at);
  }
  return text;
}

// Writes to stdout; false once the reader has gone away.
bool write_stdout(const std::string& s) {
  if (s.empty()) return true;
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) return false;
  return std::fflush(stdout) == 0;
}

// The returned sequences on stdout, when the search has ended: the prompt and the best one's
// text as a normal run prints them; with K > 1, each after a line naming its rank and score.
void print_sequences(const CliOptions& o, const BeamRunInputs& in, const BeamResult& r,
                     const std::vector<std::string>& texts) {
  const std::string prompt = o.no_display_prompt || in.empty_prompt ? "" : in.tok.decode(in.prompt);
  const size_t K = r.sequences.size();
  bool open = true;
  for (size_t i = 0; i < K && open; ++i) {
    if (K > 1) {
      char head[200];
      std::snprintf(head, sizeof head, "%s[sequence %zu of %zu, score %.6f, finish reason \"%s\"]\n", i ? "\n" : "",
                    i + 1, K, r.sequences[i].score, finish_reason_name(r.sequences[i].finish));
      open = write_stdout(head);
    }
    open = open && write_stdout(prompt + texts[i] + "\n");
  }
}

nlohmann::json sequences_json(const BeamResult& r, const std::vector<std::string>& texts) {
  nlohmann::json seqs = nlohmann::json::array();
  for (size_t i = 0; i < r.sequences.size(); ++i)
    seqs.push_back({{"generated_ids", r.sequences[i].tokens},
                    {"text", texts[i]},
                    {"score", r.sequences[i].score},
                    {"finish_reason", finish_reason_name(r.sequences[i].finish)}});
  return seqs;
}

}  // namespace

int run_beam(const CliOptions& o, const BeamRunInputs& in, const GenerationOptions& gen,
             const std::atomic<bool>* interrupted) {
  const BeamOptions beams = beam_options(o);
  GenerationOptions g = gen;
  g.sampling.temperature = 0;  // beams search; they never sample
  const BeamResult r = beam_search(in.backend, in.prompt, g, beams, stop_rule(o, in.tok), interrupted);
  std::vector<std::string> texts;
  for (const BeamSequence& s : r.sequences) texts.push_back(shown_text(o, in.tok, s));
  if (!o.json) print_sequences(o, in, r, texts);

  RunReport report;
  report.backend = in.backend.info();
  report.kv_cache = g.use_cache;
  report.kv_capacity = in.backend.kv_capacity();
  report.load_ms = in.load_ms;
  report.prompt_ids = in.prompt;
  report.result = r.as_generation();
  report.text = texts.empty() ? "" : texts[0];
  if (!o.quiet) std::cerr << summary_text(report);
  BeamCost cost = beam_cost(in.backend, r, beams.num_beams, int(in.prompt.size()), g.use_cache);
  if (o.profile_steps > 0 && g.use_cache && !(interrupted && interrupted->load()))
    profile_beam_steps(in.backend, cost, o.profile_steps, in.prompt.back());
  if ((o.explain || o.profile_steps > 0) && !o.quiet) std::cerr << beam_cost_text(cost);
  if (o.json) {
    nlohmann::json j = report_json(report);
    j["sequences"] = sequences_json(r, texts);
    j["beam"] = beam_cost_json(cost);
    j["beam"]["length_penalty"] = beams.length_penalty;
    j["beam"]["early_stopping"] = early_stopping_name(beams.early_stopping);
    const std::string text = dump_json(j) + "\n";
    if (o.json_file.empty()) write_stdout(text);
    else write_file_atomically(o.json_file, text);
  }
  return r.interrupted ? 130 : 0;
}

void check_beam_cli(const CliOptions& o) {
  if (o.num_return_sequences > o.num_beams)
    throw Error("--num-return-sequences " + std::to_string(o.num_return_sequences) + " is more than --num-beams " +
                std::to_string(o.num_beams) + ": return at most as many sequences as there are beams");
  if (o.num_beams <= 1) return;
  const std::string beams = "--num-beams " + std::to_string(o.num_beams);
  if (!o.sampling_flags_given.empty())
    throw Error(o.sampling_flags_given.front() + " samples, and " + beams +
                " searches deterministically (beam sampling is not supported): drop " +
                o.sampling_flags_given.front() + " or use --num-beams 1");
  if (!o.batch_file.empty())
    throw Error("--batch does not take " + beams + ": run beam search on one prompt at a time");
  if (o.benchmark && o.explain)
    throw Error("--benchmark --explain does not take " + beams + ": use --explain without --benchmark");
  if (o.context_shift)
    throw Error("--context-shift does not work with " + beams + " (beams never shift the context): drop one of them");
}

BeamOptions beam_options(const CliOptions& o) {
  BeamOptions b;
  b.num_beams = o.num_beams;
  b.length_penalty = o.length_penalty;
  b.early_stopping = o.early_stopping == "true"    ? EarlyStopping::True
                     : o.early_stopping == "never" ? EarlyStopping::Never
                                                   : EarlyStopping::False;
  b.num_return_sequences = o.num_return_sequences;
  return b;
}

}  // namespace gpt2
