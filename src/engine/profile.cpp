#include "engine/profile.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "engine/kv_format.h"

namespace gpt2 {

const char* decode_op_name(DecodeOp op) {
  switch (op) {
    case DecodeOp::Embedding: return "embedding";
    case DecodeOp::LnQkvKvAppend: return "ln_1+qkv+kv_append";
    case DecodeOp::Attention: return "attention";
    case DecodeOp::AttnProj: return "attn_proj";
    case DecodeOp::LnFc: return "ln_2+fc+gelu";
    case DecodeOp::FcProj: return "fc_proj";
    case DecodeOp::LnLmHead: return "ln_f+lm_head";
    case DecodeOp::Argmax: return "argmax";
    case DecodeOp::kCount: break;
  }
  return "?";
}

DecodeShapes decode_shapes(const GPT2Config& c, ComputeDType dtype, bool cuda, int context,
                           std::optional<ComputeDType> kv_dtype) {
  DecodeShapes s;
  s.n_embd = c.n_embd;
  s.n_inner = c.n_inner;
  s.vocab_size = c.vocab_size;
  const int bytes = dtype == ComputeDType::F32 ? 4 : dtype == ComputeDType::Int8 ? 1 : 2;
  s.matrix_bytes = bytes;
  s.scale_block = dtype == ComputeDType::Int8 ? kQ8Block : 0;
  s.wpe_bytes = cuda ? bytes : 4;
  s.kv_row_bytes = double(kv_row_bytes(kv_dtype.value_or(cuda ? dtype : ComputeDType::F32), c.n_embd, c.n_head));
  s.context = context;
  return s;
}

double decode_op_bytes(const DecodeShapes& s, DecodeOp op) {
  const double C = s.n_embd, H = s.n_inner, V = s.vocab_size, f = 4;  // activations: fp32
  auto matrix = [&s](double rows, double cols) {
    const double scales = s.scale_block ? rows * std::ceil(cols / s.scale_block) * 4 : 0;  // fp32 each
    return rows * cols * s.matrix_bytes + scales;
  };
  const double ln_params = 2 * C * f;                   // LayerNorm weight and bias
  const double residual = 2 * C * f;                    // x read and written back
  const double kv_slot = 2 * s.kv_row_bytes;            // one key and one value
  switch (op) {
    case DecodeOp::Embedding: return C * s.matrix_bytes + C * s.wpe_bytes + C * f;
    case DecodeOp::LnQkvKvAppend: return C * f + ln_params + matrix(3 * C, C) + 3 * C * f + C * f + kv_slot;
    case DecodeOp::Attention: return C * f + double(s.context) * kv_slot + C * f;  // q, the keys and values, out
    case DecodeOp::AttnProj: return C * f + matrix(C, C) + C * f + residual;
    case DecodeOp::LnFc: return C * f + ln_params + matrix(H, C) + H * f + H * f;
    case DecodeOp::FcProj: return H * f + matrix(C, H) + C * f + residual;
    case DecodeOp::LnLmHead: return C * f + ln_params + matrix(V, C) + V * f;
    case DecodeOp::Argmax: return V * f + 4;  // the logits in, the token out
    case DecodeOp::kCount: break;
  }
  return 0;
}

void OpTotals::add(DecodeOp op, double us) {
  const size_t i = size_t(op);
  if (calls_[i] == 0) order_.push_back(op);
  us_[i] += us;
  ++calls_[i];
}

double now_us() {
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void ClockSink::begin(DecodeOp) { begin_us_ = now_us(); }
void ClockSink::end(DecodeOp op) { totals_.add(op, now_us() - begin_us_); }

double DecodeProfile::ops_us() const {
  double sum = 0;
  for (const ProfileRow& r : rows) sum += r.calls_per_token * r.us_per_call;
  return sum;
}

DecodeProfile make_profile(const OpTotals& totals, int steps, double whole_us, const DecodeShapes& shapes) {
  DecodeProfile p;
  p.steps = steps;
  p.context = shapes.context;
  p.step_us = steps > 0 ? whole_us / steps : 0;
  for (DecodeOp op : totals.order()) {
    ProfileRow r;
    r.op = op;
    r.calls_per_token = double(totals.calls(op)) / steps;
    r.us_per_call = totals.us(op) / double(totals.calls(op));
    r.bytes_per_call = decode_op_bytes(shapes, op);
    p.rows.push_back(r);
  }
  return p;
}

namespace {

std::string format_row_bytes(double b) {
  char buf[32];
  if (b >= 1e6) std::snprintf(buf, sizeof buf, "%.2f MB", b / 1e6);
  else if (b >= 1e3) std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f B", b);
  return buf;
}

double percent(double part, double whole) { return whole > 0 ? 100 * part / whole : 0; }

}  // namespace

std::string profile_text(const DecodeProfile& p) {
  char buf[256];
  std::string s;
  std::snprintf(buf, sizeof buf,
                "gpt2-gen: profile of the decode step on %s: %d steps at context %d; %% of the %s bandwidth, "
                "%.1f GB/s measured\n",
                p.device.c_str(), p.steps, p.context, p.bandwidth_source == "cpu-read" ? "CPU's read" : "device's copy",
                p.bandwidth_gb_per_s);
  s += buf;
  std::snprintf(buf, sizeof buf, "| %-18s | %11s | %10s | %10s | %9s | %6s |\n", "op", "calls/token", "us/call",
                "bytes/call", "GB/s", "% bw");
  s += buf;
  s += "|--------------------|-------------|------------|------------|-----------|--------|\n";
  for (const ProfileRow& r : p.rows) {
    std::snprintf(buf, sizeof buf, "| %-18s | %11.0f | %10.2f | %10s | %9.1f | %6.1f |\n", decode_op_name(r.op),
                  r.calls_per_token, r.us_per_call, format_row_bytes(r.bytes_per_call).c_str(), r.gb_per_s(),
                  percent(r.gb_per_s(), p.bandwidth_gb_per_s));
    s += buf;
  }
  std::snprintf(buf, sizeof buf,
                "gpt2-gen: the ops sum to %.1f us/token; the step timed as a whole takes %.1f us (the ops are "
                "%.1f%% of it)\n",
                p.ops_us(), p.step_us, percent(p.ops_us(), p.step_us));
  s += buf;
  return s;
}

nlohmann::json profile_json(const DecodeProfile& p) {
  nlohmann::json rows = nlohmann::json::array();
  for (const ProfileRow& r : p.rows)
    rows.push_back({{"op", decode_op_name(r.op)},
                    {"calls_per_token", r.calls_per_token},
                    {"us_per_call", r.us_per_call},
                    {"bytes_per_call", r.bytes_per_call},
                    {"gb_per_s", r.gb_per_s()},
                    {"bandwidth_pct", percent(r.gb_per_s(), p.bandwidth_gb_per_s)}});
  return {{"schema", "gpt2-gen-profile/1"},
          {"device", p.device},
          {"steps", p.steps},
          {"context", p.context},
          {"bandwidth", {{"gb_per_s", p.bandwidth_gb_per_s}, {"source", p.bandwidth_source}}},
          {"rows", rows},
          {"ops_us", p.ops_us()},
          {"step_us", p.step_us}};
}

}  // namespace gpt2
