// --profile: one decode step, op by op, on either backend. After the run (outside its times),
// the backend re-runs the decode step of the last token it computed (the same token, position
// and ring slot, so nothing the run produced changes) `steps` times timed as a whole and `steps`
// times with every op timed, and the profile puts each op's time beside the bytes it must move.
//
// The backends name their ops with an OpSequence on a ProfileSink: no sink, no cost beyond a
// null test. The bytes of an op come from the model's shapes in decode_op_bytes() alone.
#pragma once
#include <array>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/dtype.h"

namespace gpt2 {

// The operations of one decode step, as the profile's rows name them. Both backends fuse each
// LayerNorm into the matrix-vector product after it (the ln_*+ ops) and append K/V with the
// qkv product; the CPU finds the argmax while the LM head writes the logits, CUDA in a kernel
// of its own.
enum class DecodeOp {
  Embedding,      // x = wte[token] + wpe[pos]
  LnQkvKvAppend,  // LayerNorm_1 + qkv + bias + K/V append (q out)
  Attention,      // att = softmax(q K^T / sqrt(hd)) V over the ring
  AttnProj,       // x += att W^T + b
  LnFc,           // LayerNorm_2 + fc + bias + gelu
  FcProj,         // x += h W^T + b
  LnLmHead,       // LayerNorm_f + LM head (CPU: and the argmax)
  Argmax,         // CUDA: the greedy token from the logits
  kCount
};
constexpr int kDecodeOps = int(DecodeOp::kCount);
const char* decode_op_name(DecodeOp op);  // "ln_1+qkv+kv_append", ...

// What an op's bytes depend on: the model's sizes, how the backend holds each tensor, and the
// keys the step attends over. Activations, LayerNorm parameters and biases are fp32 on both.
struct DecodeShapes {
  int n_embd = 0, n_inner = 0, vocab_size = 0;
  double matrix_bytes = 4;  // per element of a weight matrix (wte included) as held
  int scale_block = 0;      // int8: one fp32 scale per this many elements of a row; 0: none
  int wpe_bytes = 4;        // per element of the position embedding
  double kv_row_bytes = 0;  // one position's K (or V) of one layer in the rings: engine/kv_format.h
  int context = 0;          // keys the step attends over
};
// The CPU holds matrices in `dtype` (int8 with scales) and the rest in fp32; CUDA holds
// matrices and wpe in `dtype`. The K/V rings hold `kv_dtype` (BackendInfo::kv_dtype); unset:
// the compute dtype on CUDA.
DecodeShapes decode_shapes(const GPT2Config& config, ComputeDType dtype, bool cuda, int context,
                           std::optional<ComputeDType> kv_dtype = std::nullopt);

// The bytes one call of `op` must read and write: its weights once, its inputs and outputs
// (the residual stream read and written where it accumulates), nothing it keeps on chip.
double decode_op_bytes(const DecodeShapes& s, DecodeOp op);

// Receives a decode step's ops while it is profiled: begin() and end() around each op.
class ProfileSink {
 public:
  virtual ~ProfileSink() = default;
  virtual void begin(DecodeOp op) = 0;
  virtual void end(DecodeOp op) = 0;
};

// Names consecutive ops: next(op) ends the op before it (if any) and begins `op`; the
// destructor ends the last. With a null sink it does nothing.
class OpSequence {
 public:
  explicit OpSequence(ProfileSink* sink) : sink_(sink) {}
  // Ends the last op, unless another exception is unwinding the stack (that one says what went
  // wrong; ending the op may fail the same way, and a second exception would terminate).
  ~OpSequence() noexcept(false) {
    if (std::uncaught_exceptions() == 0) finish();
  }
  OpSequence(const OpSequence&) = delete;
  OpSequence& operator=(const OpSequence&) = delete;
  void next(DecodeOp op) {
    if (!sink_) return;
    finish();
    sink_->begin(op);
    current_ = op;
    open_ = true;
  }
  void finish() {
    if (sink_ && open_) sink_->end(current_);
    open_ = false;
  }

 private:
  ProfileSink* sink_;
  DecodeOp current_ = DecodeOp::kCount;
  bool open_ = false;
};

// Each op's total time and calls over the profiled steps, and the order the ops ran in.
class OpTotals {
 public:
  void add(DecodeOp op, double us);
  const std::vector<DecodeOp>& order() const { return order_; }
  double us(DecodeOp op) const { return us_[size_t(op)]; }
  long calls(DecodeOp op) const { return calls_[size_t(op)]; }

 private:
  std::vector<DecodeOp> order_;
  std::array<double, kDecodeOps> us_{};
  std::array<long, kDecodeOps> calls_{};
};

// The CPU's sink: the steady clock at both ends of each op (every op returns when its threads
// have finished).
class ClockSink final : public ProfileSink {
 public:
  explicit ClockSink(OpTotals& totals) : totals_(totals) {}
  void begin(DecodeOp op) override;
  void end(DecodeOp op) override;

 private:
  OpTotals& totals_;
  double begin_us_ = 0;
};
double now_us();  // the steady clock, in microseconds

struct ProfileRow {
  DecodeOp op = DecodeOp::kCount;
  double calls_per_token = 0;
  double us_per_call = 0;
  double bytes_per_call = 0;
  double gb_per_s() const { return us_per_call > 0 ? bytes_per_call / us_per_call / 1e3 : 0; }
};

struct DecodeProfile {
  std::string device;            // "cpu" or "cuda"
  int steps = 0;                 // timed steps, each way
  int context = 0;               // keys the profiled step attends over
  double bandwidth_gb_per_s = 0; // the reference for the % column, measured
  std::string bandwidth_source;  // what was measured: "cpu-read" or "device-copy"
  std::vector<ProfileRow> rows;  // in the order the step runs them
  double step_us = 0;            // one step timed as a whole (no per-op timing), mean
  double ops_us() const;         // the rows' sum: calls per token x us per call
};

// The profile from the totals of `steps` op-timed steps and `whole_us`, the total time of
// `steps` whole steps.
DecodeProfile make_profile(const OpTotals& totals, int steps, double whole_us, const DecodeShapes& shapes);

// The table for stderr, and the --json object (stats.profile; tools/profile_schema.py).
std::string profile_text(const DecodeProfile& p);
nlohmann::json profile_json(const DecodeProfile& p);

}  // namespace gpt2
