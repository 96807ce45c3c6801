// The interface both backends implement (CPU reference: backend_cpu.cpp; CUDA:
// backend_cuda.cpp). A backend owns the model's weights in its own memory and precision,
// the per-layer K/V rings, and the activations: all allocated once, at construction.
//
// The generator drives it with forward() calls; a backend keeps nothing between calls except
// what forward() wrote into the K/V rings, so `--no-cache` (recompute the whole context every
// step) is the same forward() on the whole window with nothing read from before. forward()
// states the contract of a call once, for both backends: it validates the call, then runs the
// backend's forward_impl().
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <optional>

#include "engine/kv_ring.h"
#include "engine/profile.h"
#include "engine/sampler.h"
#include "model/config.h"
#include "model/dtype.h"

namespace gpt2 {

struct Model;

enum class Device { Auto, Cpu, Cuda };

struct BackendOptions {
  Device device = Device::Auto;
  // Unset: fp16 on CUDA; on the CPU the weight file's dtype.
  std::optional<ComputeDType> dtype;
  // --kv-dtype: the K/V rings' format (engine/kv_format.h). Unset: the backend's default.
  std::optional<ComputeDType> kv_dtype;
  int kv_capacity = 0;  // slots per layer; 0 = the model's n_positions
  int n_seqs = 1;       // sequences held at once (--parallel): each its own K/V rings and logits
  int threads = 0;      // CPU threads; 0 = the physical cores
};

struct BackendInfo {
  std::string device;       // "cpu" or "cuda"
  std::string device_name;  // "NVIDIA H200", or the CPU's model name
  ComputeDType dtype = ComputeDType::F32;
  size_t weight_bytes = 0;  // in the backend's memory, as stored there
  size_t kv_bytes = 0;      // K and V rings of all layers
  ComputeDType kv_dtype = ComputeDType::F32;  // the K/V rings' format (engine/kv_format.h)
  size_t activation_bytes = 0;
  size_t peak_device_bytes = 0;  // CUDA: peak device memory in use by the process; CPU: 0
  size_t decode_weight_bytes = 0;  // CPU: weight bytes one decode step reads; CUDA: 0
  int threads = 0;                 // CPU threads; CUDA: 0
  std::string device_paths;        // the paths chosen from the device: CUDA's from its limits (src/cuda/device_paths.h); the CPU's SIMD target and prefetch distance
  size_t prefetch_bytes = 0;       // CPU: the weight stream's software prefetch distance; CUDA: 0
  double prefetch_probe_ms = 0;    // CPU: the start-up probe that chose it (0: not run); CUDA: 0
  std::string note;                // a line for the user about the backend's setup (an optional path skipped), or ""
};

// One sequence's token in a batched decode step: `id` at position `pos` of sequence `seq`'s ring.
struct SeqToken {
  int seq = 0;
  int id = 0;
  int pos = 0;
  KvRing ring;
};

// One sequence's part of prefill_batch(): forward(seq, ids, n, pos, ring)'s arguments.
struct SeqChunk {
  int seq = 0;
  const int* ids = nullptr;
  int n = 0;
  int pos = 0;
  KvRing ring;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Runs `n` tokens `ids` at context positions [pos, pos + n) through the model, writing their
  // keys and values into ring slots ring.slot(pos..pos+n-1) of every layer and attending over
  // positions [0, pos + i] for token i. Keeps the logits of the last token (only those are
  // computed). Requires n >= 1, pos >= 0, pos + n <= context_window(), a ring of this
  // backend's capacity and ids in [0, vocab_size); throws gpt2::Error otherwise.
  void forward(const int* ids, int n, int pos, const KvRing& ring) { forward(0, ids, n, pos, ring); }
  // The same on sequence `seq` (0 <= seq < n_seqs()): its own K/V rings, logits and context.
  void forward(int seq, const int* ids, int n, int pos, const KvRing& ring);

  // One decode step of B distinct sequences at once (--parallel): rows[b].id at rows[b].pos of
  // sequence rows[b].seq, each as forward(seq, &id, 1, pos, ring) would compute it alone: its
  // logits do not depend on the other rows (batch invariance), while the weights are read once
  // for all of them. Each row's contract is forward()'s.
  void decode_batch(const SeqToken* rows, int B);

  // Several distinct sequences' forward()s at once (a batch admitting requests whose prompts
  // are short, or short after a shared prefix): each chunk as forward(seq, ids, n, pos, ring)
  // computes it alone (its logits do not depend on the other chunks), with one pass over the
  // weights for all of them where the backend can. Each chunk's contract is forward()'s.
  void prefill_batch(const SeqChunk* chunks, int n);

  // Beam search's K/V reorder (the beams are sequences 0..n-1 of one backend, all at position
  // `pos` of rings with start 0: beams never shift the context). Afterwards sequence i continues
  // the history that sequence parent[i] had before the call: its next forward() or decode_batch()
  // at position pos attends over parent[i]'s keys and values at positions [0, pos). No K/V is
  // copied: each backend records, per sequence and position, which sequence's ring holds that
  // position (its history table, identity until a reorder), and attention reads through it. A
  // forward() of sequence i writes positions into i's own ring and points i's table at them;
  // one at position 0 resets i's table. Requires 1 <= n <= n_seqs(), 0 <= parent[i] < n and
  // 0 < pos <= kv_capacity(); throws gpt2::Error otherwise.
  void reorder(const int* parent, int n, int pos);

  // The K/V of positions [pos0, pos0 + n) of sequence `seq`'s rings, copied to or from host
  // memory in the backend's K/V format (info().kv_dtype), for the prompt cache. `k` and `v` are
  // each (n_layer, layer_stride, kv_row_bytes()) bytes: layer l's position pos0 + i is row i of
  // block l; layer_stride >= n lets a (n_layer, N, C) file lend its first n rows in place.
  // read_kv() sees every forward() before it. write_kv() leaves the sequence as forward() of
  // `ids` at pos0 would, except for the logits: the next call must be a forward() at pos0 + n.
  // Both require 0 <= seq < n_seqs(), n >= 1, pos0 >= 0, pos0 + n <= context_window(), a ring
  // of this backend's capacity and layer_stride >= n (write_kv: ids in the vocabulary); throw
  // gpt2::Error otherwise.
  void read_kv(int seq, int pos0, int n, const KvRing& ring, uint8_t* k, uint8_t* v, int layer_stride);
  void write_kv(int seq, const int* ids, int pos0, int n, const KvRing& ring, const uint8_t* k, const uint8_t* v,
                int layer_stride);
  // Shared prefixes in a batch (engine/batch.h): positions [0, n) of sequence src_seq's rings
  // copied into dst_seq's, in the rings' own format (whatever kv_dtype is). `ids` are the tokens
  // at those positions; dst_seq is left as forward() of `ids` at position 0 would leave it, except
  // for the logits: its own rows (a history table of its own, as after a forward() at position
  // 0) and `ids` as its context; the next call on it must be a forward() at position n. src_seq's
  // own rows are copied (as read_kv() reads them), so it must not be one that reorder() pointed at
  // another's history. Requires src_seq != dst_seq, both in [0, n_seqs()), 1 <= n <=
  // context_window(), a ring of this backend's capacity and ids in the vocabulary; throws
  // gpt2::Error otherwise.
  void copy_kv(int src_seq, int dst_seq, const int* ids, int n, const KvRing& ring);
  // Bytes of one position's K (or V) of one layer in the rings: n_embd elements of kv_dtype.
  size_t kv_row_bytes() const;

  // The next token from the last logits by the rule of sampler.h, with uniform draw u.
  // next_u: the draw the next sample() will get, when the caller knows it already (generate()
  // does: its draws do not depend on the tokens); CUDA's launch-ahead then queues a sampled next
  // step before this call returns. Without it only greedy steps are queued ahead.
  int sample(const SamplingParams& params, double u, std::optional<double> next_u = std::nullopt) {
    return sample_impl(0, params, u, next_u);
  }
  // The same from sequence `seq`'s last logits, over its own context.
  int sample(int seq, const SamplingParams& params, double u);

  // Copies sequence `seq`'s last logits (vocab_size floats) to `out` (tests, tools/dump_logits.cpp).
  void read_logits(float* out, int seq = 0) { read_logits_impl(seq, out); }

  // --profile (profile.h): re-runs the decode step of the last token the last forward()
  // computed, at its position and ring slot, `steps` times as a whole and `steps` times op by
  // op, greedy, after one untimed step. What the run produced stays as it was. Requires a
  // forward() before; throws gpt2::Error otherwise.
  DecodeProfile profile_decode(int steps);

  // Waits for work the backend queued on its own beyond what it was asked for (the CUDA
  // launch-ahead variant's step after the last token), so that it is not timed as part of
  // whatever runs next. generate() calls it when a generation ends.
  virtual void settle() {}

  virtual const BackendInfo& info() const = 0;
  int kv_capacity() const { return capacity_; }  // K/V ring slots per layer, per sequence
  int n_seqs() const { return n_seqs_; }
  int vocab_size() const { return config_.vocab_size; }  // floats per read_logits()
  int context_window() const { return gpt2::context_window(capacity_, config_.n_positions); }

 protected:
  // `options.kv_capacity` 0 means the model's n_positions.
  Backend(const GPT2Config& config, const BackendOptions& options);
  const GPT2Config& config() const { return config_; }

  // The decode step profile_decode() re-runs: `token` at position `pos` of `ring`.
  struct DecodeStep {
    int token = 0, pos = 0;
    KvRing ring;
  };

 private:
  // forward() once the call is known to be valid.
  virtual void forward_impl(int seq, const int* ids, int n, int pos, const KvRing& ring) = 0;
  // decode_batch() once every row is known to be valid and the sequences distinct. This
  // default runs the rows one by one (correct, without the shared pass over the weights).
  virtual void decode_batch_impl(const SeqToken* rows, int B);
  // prefill_batch() once every chunk is known to be valid and the sequences distinct. This
  // default runs the chunks one by one.
  virtual void prefill_batch_impl(const SeqChunk* chunks, int n);
  // reorder() once the call is known to be valid. This default refuses (a backend without
  // history tables cannot run beam search).
  virtual void reorder_impl(const int* parent, int n, int pos);
  // read_kv() and write_kv() once the call is known to be valid. `layer_bytes` = layer_stride * kv_row_bytes():
  // layer l's block starts at k + l * layer_bytes.
  virtual void read_kv_impl(int seq, int pos0, int n, const KvRing& ring, uint8_t* k, uint8_t* v,
                            size_t layer_bytes) = 0;
  virtual void write_kv_impl(int seq, const int* ids, int pos0, int n, const KvRing& ring, const uint8_t* k,
                             const uint8_t* v, size_t layer_bytes) = 0;
  // copy_kv() once the call is known to be valid. This default goes through the host: read_kv()
  // of src_seq, write_kv() into dst_seq (correct on every backend; a backend may copy in place).
  virtual void copy_kv_impl(int src_seq, int dst_seq, const int* ids, int n, const KvRing& ring);
  virtual int sample_impl(int seq, const SamplingParams& params, double u, std::optional<double> next_u) = 0;
  virtual void read_logits_impl(int seq, float* out) = 0;
  void check_call(int seq, const int* ids, int n, int pos, const KvRing& ring) const;
  // profile_decode() once the call is known to be valid.
  virtual DecodeProfile profile_impl(int steps, const DecodeStep& step) = 0;

  GPT2Config config_;
  int capacity_ = 0;
  int n_seqs_ = 1;
  DecodeStep last_;          // the last token forward() computed ...
  bool forwarded_ = false;   // ... once there was one
};

}  // namespace gpt2
