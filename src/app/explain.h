// --explain: what each generation step computed and moved, counted by one convention, beside
// the time it took. The counting rule (src/app/README.md, "What the cache saves") lives in step_cost()
// and nowhere else; the text on stderr, the --json block and tools/plot_explain.py all read it.
//
// For one forward of t tokens at context positions [pos, pos + t), so that the newest token
// attends over L = pos + t keys, with C = n_embd, H = n_inner, V = vocab_size:
//   linear    = 2 t (4C^2 + 2CH) n_layer        (qkv 3C^2, proj C^2, fc CH, fc-proj HC; 12C^2 when H = 4C)
//   attention = 4 C S n_layer, S = sum over the t queries of the keys each scores
//             = t pos + t(t+1)/2                (Q K^T and A V: 2 head_dim FLOPs per pair per head)
//   lm_head   = 2 C V                           (only the last row's logits, in both modes)
//   weights   = every weight byte once per forward, in the backend's in-memory precision
//   kv_read   = 2 n_layer L r,  kv_write = 2 n_layer t r   (r = kv_row_bytes: one position's K or V
//                                                         of one layer in the --kv-dtype format)
// Left out: LayerNorm, GELU, softmax, embeddings, biases, sampling (the measured time has them).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/backend.h"
#include "engine/generator.h"
#include "model/config.h"

namespace gpt2 {

// The sizes the counts depend on.
struct ExplainModel {
  int n_layer = 0, n_head = 0, n_embd = 0, n_inner = 0, vocab_size = 0;
  double weight_bytes = 0;       // BackendInfo::weight_bytes
  std::string kv_format;         // the K/V rings' format (--kv-dtype)
  double kv_row_bytes = 0;       // one position's K (or V) of one layer: engine/kv_format.h
  double kv_ring_bytes = 0;      // the rings as allocated (both modes use them)
  int head_dim() const { return n_embd / n_head; }
};
ExplainModel explain_model(const GPT2Config& config, const BackendInfo& info, int kv_capacity);

// The analytic work of one forward (FLOPs and bytes; doubles hold these integers exactly).
struct StepCost {
  double linear = 0, attention = 0, lm_head = 0;
  double weights = 0, kv_read = 0, kv_write = 0;
  double flops() const { return linear + attention + lm_head; }
  double bytes() const { return weights + kv_read + kv_write; }
};
StepCost step_cost(const ExplainModel& m, const ForwardCall& f);
// (query, key) pairs scored by a forward of f.tokens queries at positions f.pos...
double scored_pairs(const ForwardCall& f);
// K/V bytes the cache holds after the step (0 without the cache: nothing is kept).
double kv_held_bytes(const ExplainModel& m, const ForwardCall& f, bool use_cache);

// The forwards the other mode makes for the same sequence of contexts: with the cache, the
// prompt and each context shift recompute the window and every other step computes one
// token; without it, every step recomputes the window from position 0.
std::vector<ForwardCall> other_mode_forwards(const std::vector<ForwardCall>& forwards, bool use_cache);

struct ExplainStep {
  int step = 0;           // 1-based; step 1 is the prompt
  ForwardCall call;
  int new_tokens = 0;     // never computed before: the prompt at step 1, then 1
  StepCost cost;
  double kv_held = 0;
  double ms = -1;         // measured; < 0 when not measured (the other mode of a single run)
};

struct ExplainRun {
  bool use_cache = true;
  bool measured = false;
  std::vector<ExplainStep> steps;
  const char* mode() const { return use_cache ? "cache" : "no-cache"; }
  StepCost total() const;
  double total_ms() const;
};
// `ms` (one per forward, or empty when the mode was not run) becomes each step's time.
ExplainRun explain_run(const ExplainModel& m, const std::vector<ForwardCall>& forwards,
                       const std::vector<double>& ms, bool use_cache);

// A single run: its own steps, timed, and the other mode's from the arithmetic alone.
struct ExplainPair {
  ExplainRun run, other;
};
ExplainPair explain_generation(const ExplainModel& m, const GenerationResult& r, bool use_cache);
// --benchmark: one mode's steps (the same in every run) with each step's mean time over `runs`.
ExplainRun explain_runs(const ExplainModel& m, const std::vector<GenerationResult>& runs, bool use_cache);

// The stderr text: steps 1-4 as shape diagrams, a table with one row per 10% of the steps,
// and the totals with and without the cache. `other` is the other mode: measured (from a
// --benchmark) or from the arithmetic alone.
std::string explain_text(const ExplainModel& m, const ExplainRun& run, const ExplainRun& other);

// The --json "explain" object (schema in tools/README.md and tools/explain_schema.py).
nlohmann::json explain_json(const ExplainModel& m, const ExplainRun& run, const ExplainRun& other);

}  // namespace gpt2
