// The CUDA backend: the host driver of kernels/. It owns the device memory (one allocation,
// planned up front), the cuBLAS handle, one stream and the captured decode graphs, and calls
// the kernel launchers of kernels/kernels.h only (no kernels here).
//
// Two paths through the same weights and K/V rings:
//   rows   (prefill, --no-cache, the re-run after a context shift; n tokens at once):
//          embedding -> per layer: LayerNorm(+pending bias) -> cuBLAS qkv -> bias + K/V append
//          -> tiled causal attention -> cuBLAS proj accumulated into x -> LayerNorm(+bias) ->
//          cuBLAS fc -> bias + gelu -> cuBLAS proj accumulated into x; then the last row only:
//          LayerNorm(+bias) fused into the LM-head matrix-vector product.
//   decode (one token against the cache): embedding -> per layer 4 fused matrix-vector kernels
//          (LayerNorm+qkv+bias+K/V append, proj+bias+residual, LayerNorm+fc+bias+gelu,
//          proj+bias+residual) and the split attention -> LayerNorm+LM head -> [logits
//          processors] -> argmax or sampling. The whole step, with the copy of its StepParams
//          in and of the token id out, is captured once per sampling mode as a CUDA graph and
//          replayed for every token.
// The logits processors (penalties, n-gram ban; processors.h) run on the device from the
// context's token ring (written by the embedding kernels) and per-id counts of the penalty
// window that the step itself keeps up to date; only the graphs of runs that use them include
// them. The host only tracks which positions the counts hold (counted_).
// forward(n == 1) only records the step; sample() (which knows the sampling mode) replays the
// graph and waits for the one int it copies back. GPT2_CUDA_DECODE=eager runs the same decode
// kernels without the graph, =rows runs decode steps through the rows path (for bisecting);
// GPT2_CUDA_VARIANTS (src/cuda/cuda_variants.h) switches on the latency-fix variants, pdl among them.
// Launch-ahead (GPT2_CUDA_VARIANTS=ahead, without logits processors): the step's argmax or
// sampler also writes the next step's token and position into step_dev_, and sample() queues
// step t + 1 (sampled: with the draw the caller passed as next_u) before it waits for token t,
// in the other of two slots (logits buffer, pinned token and draw, event), so the GPU runs while
// the host handles token t. forward() and sample() take the queued step when they ask for
// exactly that one; anything else lets it finish unused first (discard_ahead).
#include "cuda/backend_cuda.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/build_info.h"
#include "base/error.h"
#include "base/half.h"
#include "cuda/cuda_variants.h"
#include "cuda/device_paths.h"
#include "cuda/profile_cuda.h"
#include "cuda_check.h"
#include "kernels.h"
#include "model/model.h"

namespace gpt2 {

namespace {

std::string describe_cuda_error(cudaError_t e) {
  switch (e) {
    case cudaErrorNoDevice: return "no CUDA device found (cudaErrorNoDevice)";
    case cudaErrorInsufficientDriver:
      return "no NVIDIA driver, or one older than this CUDA runtime (cudaErrorInsufficientDriver)";
    default: return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
  }
}

}  // namespace

std::string cuda_build_info() {
#if defined(GPT2_CUDA_EMULATED)
  return "emulated on the CPU (tests/cuda_emu), not a GPU build";
#else
  return std::string("compiled in, CUDA architectures ") + GPT2_CUDA_ARCHITECTURES + ", runtime " +
         std::to_string(CUDART_VERSION / 1000) + "." + std::to_string(CUDART_VERSION % 1000 / 10);
#endif
}

bool cuda_device_usable(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    if (why) *why = describe_cuda_error(e);
    return false;
  }
  if (n <= 0) {
    if (why) *why = "no CUDA device found";
    return false;
  }
  std::string refusal;
  try {
    const DeviceLimits device = read_device_limits(0);
    refusal = device_refusal(device);
    if (refusal.empty()) refusal = kernels_refusal(device, nullptr);
  } catch (const Error& err) {  // the runtime could not describe device 0
    cudaGetLastError();
    refusal = err.what();
  }
  if (why) *why = refusal;
  return refusal.empty();
}

bool cuda_dtype_supported(ComputeDType dtype, std::string* why) {
  const std::string refusal = dtype_refusal(read_device_limits(0), dtype);
  if (why) *why = refusal;
  return refusal.empty();
}

namespace {

using cuda::GemvEpilogue;
using cuda::GemvParams;
using cuda::StepParams;

using cuda::ComputeType;

// Host-side rounding of fp32 to T's bit pattern (round to nearest even, bit-exact with the
// device conversions: src/base/half.h).
inline void store_as(float v, float* dst) { *dst = v; }
inline void store_as(float v, __half* dst) {
  const uint16_t b = float_to_fp16(v);
  std::memcpy(static_cast<void*>(dst), &b, 2);
}
inline void store_as(float v, __nv_bfloat16* dst) {
  const uint16_t b = float_to_bf16(v);
  std::memcpy(static_cast<void*>(dst), &b, 2);
}

// One device allocation for everything, planned before anything is allocated.
class Plan {
 public:
  template <typename P>
  void add(P** target, size_t count, size_t* category) {
    const size_t bytes = (count * sizeof(P) + 255) / 256 * 256;
    const size_t offset = total_;
    binds_.push_back([target, offset](char* base) { *target = reinterpret_cast<P*>(base + offset); });
    total_ += bytes;
    if (category) *category += bytes;
  }
  void add_bytes(void** target, size_t bytes, size_t* category) {
    const size_t rounded = (bytes + 255) / 256 * 256;
    const size_t offset = total_;
    binds_.push_back([target, offset](char* base) { *target = base + offset; });
    total_ += rounded;
    if (category) *category += rounded;
  }
  void bind(char* base) const {
    for (const auto& b : binds_) b(base);
  }
  size_t total() const { return total_; }

 private:
  std::vector<std::function<void(char*)>> binds_;
  size_t total_ = 0;
};

enum class DecodeMode { Graph, Eager, Rows };

DecodeMode decode_mode_from_env() {
  const char* v = std::getenv("GPT2_CUDA_DECODE");
  if (!v || !*v || std::strcmp(v, "graph") == 0) return DecodeMode::Graph;
  if (std::strcmp(v, "eager") == 0) return DecodeMode::Eager;
  if (std::strcmp(v, "rows") == 0) return DecodeMode::Rows;
  throw Error(std::string("GPT2_CUDA_DECODE=") + v + " is not one of graph, eager, rows");
}

template <typename T>
class CudaBackend final : public Backend {
 public:
  CudaBackend(const Model& m, const BackendOptions& o) : Backend(m.config, o), cfg_(config()) {
    // The rings' format: --kv-dtype, else the compute dtype (the default is a prediction:
    // kernels/README.md "K/V formats"). Set first: kv_row_bytes() follows it.
    info_.kv_dtype = o.kv_dtype.value_or(ComputeType<T>::dtype);
    try {
      init(m);
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaBackend() override { release(); }

  // One sequence (n_seqs 1): the decode graph and launch-ahead below; several: sample_batched().
  int sample_impl(int seq, const SamplingParams& params, double u, std::optional<double> next_u) override {
    if (batched_) return sample_batched(seq, params, u);
    const bool greedy = params.greedy();
    const bool processed = params.penalties.active();
    // No wait here: in-flight work never reads step_host_ (its only readers, the copies below
    // and in run_pending and run_ahead, are waited for before this returns).
    step_host_->pos = context_end_ - 1;  // the sampler's context: positions [0, pos]
    step_host_->ring = context_ring_;
    step_host_->temperature = params.temperature;
    step_host_->top_k = params.top_k;
    step_host_->top_p = params.top_p;
    step_host_->u = float(u);
    step_host_->min_p = params.min_p;
    step_host_->penalties = params.penalties;
    if (processed) track_counts(params.penalties.repeat_last_n, context_end_, counted_);
    const bool ahead = variants_.launch_ahead && !processed && mode_ != DecodeMode::Rows;
    // A launch-ahead step this call does not take (other parameters or another draw, or no
    // forward() asked for it): let it finish; a pending step is recomputed.
    if (!(ahead && ahead_.state == AheadState::Accepted && same_draw(ahead_.step, *step_host_, greedy)))
      discard_ahead();
    if (pending_ && ahead) return checked(run_ahead(greedy, next_u));
    if (pending_) {
      run_pending(greedy, processed);
    } else {
      CUDA_CHECK(cudaMemcpyAsync(step_dev_, step_host_, sizeof(StepParams), cudaMemcpyHostToDevice, stream_));
      enqueue_sampler(greedy, processed, last_logits_);
      CUDA_CHECK(cudaMemcpyAsync(token_host_, token_dev_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
      CUDA_CHECK(cudaStreamSynchronize(stream_));
      inflight_ = false;
    }
    return checked(*token_host_);
  }

  void settle() override { discard_ahead(); }

  void read_logits_impl(int seq, float* out) override {
    if (pending_) run_pending(true, false);
    const float* logits = batched_ ? logits_ + size_t(seq) * V_ : last_logits_;
    CUDA_CHECK(cudaMemcpyAsync(out, logits, size_t(V_) * sizeof(float), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    inflight_ = false;
  }

  const BackendInfo& info() const override { return info_; }

  // The prompt cache's copies (backend.h): per layer, one copy per contiguous run of ring slots
  // (two where positions [pos0, pos0 + n) wrap), on the stream after every step queued before.
  // Sequence seq's rings start seq * capacity rows into each layer's cache.
  void read_kv_impl(int seq, int pos0, int n, const KvRing& ring, uint8_t* k, uint8_t* v,
                    size_t layer_bytes) override {
    if (batched_ && seqs_[size_t(seq)].reordered)  // its positions may live in other sequences' rings
      throw Error("internal: read_kv() of a sequence reorder() pointed at another's history");
    if (pending_) run_pending(true, false);  // a recorded decode step writes its K/V when it runs
    wait_inflight();
    for_each_slot_run(pos0, n, ring, [&](int ring_slot, int i, int len) {
      const size_t slot = size_t(seq) * kv_capacity() + size_t(ring_slot);
      for (size_t l = 0; l < layers_.size(); ++l) {
        const size_t row = kv_row_bytes(), host = l * layer_bytes + size_t(i) * row, bytes = size_t(len) * row;
        CUDA_CHECK(cudaMemcpyAsync(k + host, layers_[l].k + slot * row, bytes, cudaMemcpyDeviceToHost, stream_));
        CUDA_CHECK(cudaMemcpyAsync(v + host, layers_[l].v + slot * row, bytes, cudaMemcpyDeviceToHost, stream_));
      }
    });
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    inflight_ = false;
  }
  // As forward_impl()'s bookkeeping for a prefill of `ids` at pos0, with the K/V copied in
  // instead of computed, and the ids into the context's token ring for the logits processors.
  void write_kv_impl(int seq, const int* ids, int pos0, int n, const KvRing& ring, const uint8_t* k,
                     const uint8_t* v, size_t layer_bytes) override {
    discard_ahead();
    pending_ = false;  // a recorded step that never ran: the copy replaces its context
    wait_inflight();
    for_each_slot_run(pos0, n, ring, [&](int ring_slot, int i, int len) {
      const size_t slot = size_t(seq) * kv_capacity() + size_t(ring_slot);
      for (size_t l = 0; l < layers_.size(); ++l) {
        const size_t row = kv_row_bytes(), host = l * layer_bytes + size_t(i) * row, bytes = size_t(len) * row;
        CUDA_CHECK(cudaMemcpyAsync(layers_[l].k + slot * row, k + host, bytes, cudaMemcpyHostToDevice, stream_));
        CUDA_CHECK(cudaMemcpyAsync(layers_[l].v + slot * row, v + host, bytes, cudaMemcpyHostToDevice, stream_));
      }
      CUDA_CHECK(cudaMemcpyAsync(context_ + slot, ids + i, size_t(len) * sizeof(int), cudaMemcpyHostToDevice, stream_));
    });
    if (batched_) {  // as forward_batched()'s bookkeeping
      cuda::history_fill(history_, seq, kv_capacity(), pos0 == 0 ? 0 : pos0, pos0 == 0 ? kv_capacity() : pos0 + n,
                         stream_);
      SeqState& s = seqs_[size_t(seq)];
      if (pos0 == 0) s.reordered = false;
      s.counted.valid = false;
      s.context_end = pos0 + n;
      s.ring = ring;
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    counted_.valid = false;
    const bool fresh = pos0 == 0 || ring.start != context_ring_.start;
    written_end_ = fresh ? pos0 + n : std::max(written_end_, pos0 + n);
    context_end_ = pos0 + n;
    context_ring_ = ring;
  }

 private:
  // Calls run(slot, i, len) for each contiguous run of ring slots holding positions
  // [pos0, pos0 + n): positions pos0 + i .. pos0 + i + len - 1 in slots slot .. slot + len - 1.
  template <typename Run>
  static void for_each_slot_run(int pos0, int n, const KvRing& ring, Run&& run) {
    for (int i = 0; i < n;) {
      const int slot = ring.slot(pos0 + i), len = std::min(n - i, ring.capacity - slot);
      run(slot, i, len);
      i += len;
    }
  }

  // --profile: the eager decode step and the argmax, whole steps (an event at each end)
  // interleaved with op-timed steps (an event between every two launches), after one untimed
  // step; then the device's copy bandwidth. Runs eagerly whatever the run's decode mode.
  DecodeProfile profile_impl(int steps, const DecodeStep& s) override {
    discard_ahead();  // the profiled steps rewrite step_dev_ and logits_
    wait_inflight();
    step_host_->token = s.token;
    step_host_->pos = s.pos;
    step_host_->ring = s.ring;
    CUDA_CHECK(cudaMemcpyAsync(step_dev_, step_host_, sizeof(StepParams), cudaMemcpyHostToDevice, stream_));
    EventSink per_op(stream_);
    OpTotals totals, untimed;
    // First a step outside the gate: with lazy module loading (CUDA's default) a kernel's first
    // launch may synchronise the context, which waits for the gate's host function, which waits
    // for the host: a deadlock. The gated steps below launch exactly this step's kernels (rows
    // mode never warmed them up at load) and reuse its events, so nothing loads behind the gate.
    profiled_step(&per_op, false);
    per_op.collect(untimed);
    double whole_us = 0;
    for (int i = 0; i < steps; ++i) {
      whole_us += profiled_step(nullptr);
      profiled_step(&per_op);
      per_op.collect(totals);
    }
    DecodeProfile p = make_profile(totals, steps, whole_us, decode_shapes(cfg_, info_.dtype, true, s.pos + 1, info_.kv_dtype));
    p.device = info_.device;
    p.bandwidth_gb_per_s = measure_copy_bandwidth(stream_);
    p.bandwidth_source = "device-copy";
    return p;
  }

  // One eager decode step and greedy argmax, enqueued whole behind a StreamGate (when `gated`)
  // so that the device runs it back to back; its ops named (and with `per_op`, timed) on the
  // way. Waits for it; returns the step's time, from an event at each end.
  double profiled_step(EventSink* per_op, bool gated = true) {
    const NvtxRange range(per_op ? "profile: step op by op" : "profile: whole step");
    ProfileSink* sink = per_op ? static_cast<ProfileSink*>(per_op) : &nvtx_;
    EventPair whole;
    {
      std::optional<StreamGate> gate;
      if (gated) gate.emplace(stream_);
      whole.record_begin(stream_);
      enqueue_decode(variants_.lm_head_argmax, sink, logits_);  // lmhead: the LM head row includes the argmax
      if (!variants_.lm_head_argmax) {
        OpSequence ops(sink);
        ops.next(DecodeOp::Argmax);
        enqueue_sampler(true, false, logits_);
      }
      whole.record_end(stream_);
    }  // opens the gate and waits for the step
    if (!gated) CUDA_CHECK(cudaStreamSynchronize(stream_));
    return whole.elapsed_us();
  }

  // The tensors of model.h's lists: matrices in T, vectors (LayerNorm, biases) in fp32.
  struct Weights {
    T *wte = nullptr, *wpe = nullptr;            // (V, C), (P, C)
    float *ln_f_w = nullptr, *ln_f_b = nullptr;  // (C)
  };
  struct Layer {
    float *ln_1_w, *ln_1_b;            // (C)
    T* qkv_w;                          // (3C, C)
    float* qkv_b;                      // (3C)
    T* attn_proj_w;                    // (C, C)
    float* attn_proj_b;                // (C)
    float *ln_2_w, *ln_2_b;            // (C)
    T* fc_w;                           // (H, C)
    float* fc_b;                       // (H)
    T* fc_proj_w;                      // (C, H)
    float* fc_proj_b;                  // (C)
    uint8_t *k, *v;                    // (n_seqs * capacity, kv_row_bytes()) each: sequence s's ring at row s * capacity
  };
  // Layer l's rings as the kernels take them (kernels.h KvRings), from ring row `first` on.
  cuda::KvRings rings(const Layer& l, size_t first = 0) const {
    const size_t offset = first * kv_row_bytes();
    return cuda::KvRings{l.k + offset, l.v + offset, info_.kv_dtype, C_, NH_};
  }

  void forward_impl(int seq, const int* ids, int n, int pos, const KvRing& ring) override {
    if (batched_) return forward_batched(seq, ids, n, pos, ring);
    const bool decode = n == 1 && mode_ != DecodeMode::Rows;
    // The queued launch-ahead step is this call when it asks for exactly that step.
    const bool accept = decode && ahead_.state == AheadState::Queued && ids[0] == ahead_.step.token &&
                        pos == ahead_.step.pos && ring.start == ahead_.step.ring.start;
    if (!accept) discard_ahead();
    if (pending_) run_pending(true, false);  // a decode step that was never sampled: run it first
    // Counts stay valid across a decode step that appends to the counted positions; anything
    // else (prefill, --no-cache, a context shift) rewrote them: count afresh.
    if (!decode || pos < counted_.end || ring.start != context_ring_.start) counted_.valid = false;
    const bool fresh = pos == 0 || ring.start != context_ring_.start;
    written_end_ = fresh ? pos + n : std::max(written_end_, pos + n);
    context_end_ = pos + n;
    context_ring_ = ring;
    if (decode) {
      if (!accept) wait_inflight();  // (an accepted step's stream holds no copy from step_host_)
      step_host_->token = ids[0];
      step_host_->pos = pos;
      step_host_->ring = ring;
      pending_ = true;  // runs in sample() or read_logits()
      if (accept) ahead_.state = AheadState::Accepted;
      return;
    }
    wait_inflight();  // ids_host_ may still be read by an earlier copy
    std::memcpy(ids_host_, ids, size_t(n) * sizeof(int));
    CUDA_CHECK(cudaMemcpyAsync(ids_dev_, ids_host_, size_t(n) * sizeof(int), cudaMemcpyHostToDevice, stream_));
    const NvtxRange range("rows");
    enqueue_rows(n, pos, ring);
    last_logits_ = logits_;
    inflight_ = true;
  }

  // A token read back from the device, checked before the host uses it.
  int checked(int token) const {
    if (token < 0 || token >= V_) throw Error("internal: the CUDA sampler returned token " + std::to_string(token));
    return token;
  }

  void init(const Model& m) {
    C_ = cfg_.n_embd;
    H_ = cfg_.n_inner;
    NH_ = cfg_.n_head;
    HS_ = cfg_.head_dim();
    V_ = cfg_.vocab_size;
    L_ = cfg_.n_layer;
    mode_ = decode_mode_from_env();
    variants_ = cuda_variants_from_env();
    batched_ = n_seqs() > 1;
    if (batched_) variants_.launch_ahead = false;  // one sequence's chain of steps; batches wait per step
    seqs_.resize(size_t(n_seqs()));

    if (HS_ != cuda::kHeadDim)
      throw Error("the CUDA backend supports head_dim 64 only (every GPT-2 size); this model has n_embd " +
                  std::to_string(C_) + " / n_head " + std::to_string(NH_) + " = " + std::to_string(HS_) +
                  "; use --device cpu");
    if (C_ % 8 != 0 || H_ % 8 != 0 || H_ > cuda::kGemvMaxIC || C_ > cuda::kGemvMaxIC)
      throw Error("the CUDA backend needs n_embd and n_inner to be multiples of 8 and at most " +
                  std::to_string(cuda::kGemvMaxIC) + " (got " + std::to_string(C_) + ", " + std::to_string(H_) +
                  "); use --device cpu");

    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaFree(nullptr));  // create the context now, so the memory baseline below includes it
    const DeviceLimits device = read_device_limits(0);
    choose_paths(device);
    size_t free0 = 0, total0 = 0;
    CUDA_CHECK(cudaMemGetInfo(&free0, &total0));

    const size_t need = plan_memory(device.name, free0, total0);
    if (paths_.l2_window > 0) reserve_l2_window();
    info_.device_paths = describe_device_paths(device, paths_);
    open_stream();
    if (variants_.launch_ahead) open_ahead_slots();
    upload_weights(m);
    warm_up_and_capture();

    size_t free1 = 0, total1 = 0;
    CUDA_CHECK(cudaMemGetInfo(&free1, &total1));
    info_.device = "cuda";
    info_.device_name = device.name;
    info_.dtype = ComputeType<T>::dtype;
    // Device memory this backend made the process use (arena, cuBLAS, graphs), measured; the
    // CUDA context itself is excluded. Nothing is allocated after this point.
    info_.peak_device_bytes = free0 > free1 ? free0 - free1 : need;
  }

  // Plans every device buffer into one allocation, allocates it and binds the pointers; records
  // the sizes by category in info_. Returns the bytes allocated.
  size_t plan_memory(const std::string& device_name, size_t free0, size_t total0) {
    const size_t C = C_, H = H_, V = V_, cap = kv_capacity(), rows = context_window(), S = n_seqs();
    size_t weights = 0, kv = 0, other = 0;
    Plan plan;
    auto add_weight = [&](const char*, const ShapeRule& rule, auto*& dst) {
      plan.add(&dst, size_t(rule.numel(cfg_)), &weights);
    };
    for_each_model_tensor(add_weight, w_);
    layers_.resize(size_t(L_));
    for (Layer& l : layers_) for_each_layer_tensor(add_weight, l);
    for (Layer& l : layers_) {
      plan.add(&l.k, S * cap * kv_row_bytes(), &kv);  // every sequence's ring, one after the other
      plan.add(&l.v, S * cap * kv_row_bytes(), &kv);
    }
    plan.add(&x_, rows * C, &other);        // (T, C) fp32 residual stream
    plan.add(&ln_, rows * C, &other);       // (T, C)
    plan.add(&qkv_, rows * 3 * C, &other);  // (T, 3C)
    plan.add(&att_, rows * C, &other);      // (T, C)
    plan.add(&fc_, rows * H, &other);       // (T, H)
    plan.add(&ids_dev_, rows, &other);      // (T)
    plan.add(&xd_, C, &other);              // decode: (C) fp32 residual stream
    plan.add(&qd_, C, &other);              // (C) query
    plan.add(&attd_, C, &other);            // (C) attention output
    plan.add(&hd_, H, &other);              // (H) gelu output
    if (info_.kv_dtype == ComputeDType::Int8) plan.add(&kv_staged_, S * 2 * C, &other);  // (n_seqs, 2C) K, V to quantise
    plan.add(&partials_, cuda::attention_decode_partials(NH_, int(cap)), &other);
    plan.add(&counters_, size_t(NH_), &other);
    plan.add(&argmax_state_, 1, &other);
    plan.add(&step_dev_, 1, &other);
    plan.add(&token_dev_, 1, &other);
    plan.add(&logits_, S * V, &other);  // (n_seqs, V) fp32: each sequence's last logits
    if (variants_.launch_ahead) plan.add(&ahead_logits_, V, &other);  // (V) launch-ahead's second slot
    plan.add(&scores_, V, &other);  // (V) fp32: the logits after the processors
    plan.add(&counts_, S * V, &other);  // (n_seqs, V) the penalty window's count of each id
    plan.add(&context_, S * cap, &other);  // (n_seqs, capacity) the context's token ids, by ring slot
    plan.add(&history_, S * cap, &other);  // (n_seqs, capacity) the history table (kernels.h, BatchRow)
    if (batched_) plan_batch(plan, &other);
    plan.add(&sw_.keys_in, V, &other);
    plan.add(&sw_.keys_out, V, &other);
    plan.add(&sw_.ids_in, V, &other);
    plan.add(&sw_.ids_out, V, &other);
    sw_.temp_bytes = cuda::sampler_temp_bytes(V_);
    plan.add_bytes(&sw_.temp, sw_.temp_bytes, &other);
    cublas_ws_bytes_ = size_t(32) << 20;  // cuBLAS workspace: no allocation inside cuBLAS calls
    plan.add_bytes(&cublas_ws_, cublas_ws_bytes_, &other);

    const size_t need = plan.total();
    auto oom = [&](size_t free_b, size_t total_b) {
      return Error("out of GPU memory: asked for " + std::to_string(need) + " bytes (weights " +
                   std::to_string(weights) + ", K/V ring " + std::to_string(kv) + ", activations and workspaces " +
                   std::to_string(other) + "), " + std::to_string(free_b) + " free of " + std::to_string(total_b) +
                   " on " + device_name + "; try a smaller --ctx-size or --dtype fp16");
    };
    if (need > free0) throw oom(free0, total0);
    const cudaError_t e = cudaMalloc(reinterpret_cast<void**>(&arena_), need);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      arena_ = nullptr;
      size_t f = 0, t = 0;
      cudaMemGetInfo(&f, &t);
      throw oom(f, t);
    }
    CUDA_CHECK(e);
    plan.bind(arena_);
    info_.weight_bytes = weights;
    info_.kv_bytes = kv;
    info_.activation_bytes = other;
    return need;
  }

  // Refuses a device or dtype gpt2-gen does not run on; else chooses the paths from the device's
  // limits (device_paths.h) and the variants asked for.
  void choose_paths(const DeviceLimits& device) {
    cuda::KernelImage image;
    for (const std::string& refusal : {device_refusal(device), dtype_refusal(device, ComputeType<T>::dtype),
                                       kv_dtype_refusal(device, info_.kv_dtype), kernels_refusal(device, &image)})
      if (!refusal.empty()) throw Error(refusal);
    paths_ = choose_device_paths(device, image, variants_, size_t(V_) * C_ * sizeof(T));
  }

  // The l2 variant: a persisting L2 set-aside of the window's size, for the access-policy window
  // over the LM head's first rows (lm_head_op). Where the driver refuses it (MIG, MPS, ...) or
  // grants less, the window is skipped or shrunk, with a note: it is an optimisation only.
  void reserve_l2_window() {
    const cudaError_t set = cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, paths_.l2_window);
    set_aside_ = set == cudaSuccess;
    size_t granted = 0;
    const cudaError_t got = set_aside_ ? cudaDeviceGetLimit(&granted, cudaLimitPersistingL2CacheSize) : set;
    if (got != cudaSuccess || granted == 0) {
      cudaGetLastError();  // a refused limit is not a device fault
      paths_.l2_off = std::string("skipped (the persisting L2 set-aside was refused: ") +
                      (got != cudaSuccess ? cudaGetErrorName(got) : "0 bytes granted") + ")";
      paths_.l2_window = 0;
      info_.note = "note: GPT2_CUDA_VARIANTS=l2 runs without its L2 window: " + paths_.l2_off;
    } else {
      paths_.l2_window = std::min(paths_.l2_window, granted);  // hit ratio 1 needs the window within the set-aside
    }
  }

  // The pinned host staging buffers, the stream and the cuBLAS handle.
  void open_stream() {
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&step_host_), sizeof(StepParams), cudaHostAllocDefault));
    // token_host_[0]: the token of a step run and waited for; [1], [2]: launch-ahead's slots.
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&token_host_), 3 * sizeof(int), cudaHostAllocDefault));
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&ids_host_), size_t(context_window()) * sizeof(int),
                             cudaHostAllocDefault));
    *step_host_ = StepParams{};
    std::fill(token_host_, token_host_ + 3, 0);
    last_logits_ = logits_;

    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&cublas_));
    CUBLAS_CHECK(cublasSetStream(cublas_, stream_));
    CUBLAS_CHECK(cublasSetWorkspace(cublas_, cublas_ws_, cublas_ws_bytes_));
    // fp32: CUBLAS_DEFAULT_MATH never uses TF32 (only CUBLAS_TF32_TENSOR_OP_MATH or a *_FAST_TF32
    // compute type would), so the products match the CPU reference to fp32 rounding.
    CUBLAS_CHECK(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH));
  }

  // The weights, in T (matrices, embeddings) and fp32 (LayerNorm parameters, biases).
  void upload_weights(const Model& m) {
    const std::string& source = m.file.source();
    auto copy = [&](const char*, const ShapeRule&, const TensorView* view, auto* dst) { upload(dst, *view, source); };
    for_each_model_tensor(copy, m, w_);
    for (int i = 0; i < L_; ++i) for_each_layer_tensor(copy, m.layers[size_t(i)], layers_[size_t(i)]);
    CUDA_CHECK(cudaDeviceSynchronize());  // pageable copies may still be in flight on the legacy stream
  }

  // Clean state; every kernel and cuBLAS run once (module loading, cuBLAS heuristics), so neither
  // the first token nor the graph capture pays for it; then the decode graphs.
  void warm_up_and_capture() {
    const int cap = kv_capacity();
    const size_t S = size_t(n_seqs());
    CUDA_CHECK(cudaMemsetAsync(counters_, 0, size_t(NH_) * sizeof(unsigned int), stream_));
    CUDA_CHECK(cudaMemsetAsync(argmax_state_, 0, sizeof(cuda::ArgmaxState), stream_));
    CUDA_CHECK(cudaMemsetAsync(context_, 0, S * cap * sizeof(int), stream_));  // every slot a valid id
    for (int seq = 0; seq < n_seqs(); ++seq) cuda::history_fill(history_, seq, cap, 0, cap, stream_);
    cuda::sampler_init(sw_, V_, stream_);
    *step_host_ = StepParams{};
    step_host_->ring = KvRing{cap, 0};
    step_host_->temperature = 1.0f;
    step_host_->u = 0.5f;
    CUDA_CHECK(cudaMemcpyAsync(step_dev_, step_host_, sizeof(StepParams), cudaMemcpyHostToDevice, stream_));
    ids_host_[0] = 0;
    CUDA_CHECK(cudaMemcpyAsync(ids_dev_, ids_host_, sizeof(int), cudaMemcpyHostToDevice, stream_));
    enqueue_rows(1, 0, KvRing{cap, 0});
    if (mode_ != DecodeMode::Rows) enqueue_decode(variants_.lm_head_argmax, nullptr, logits_);
    if (batched_) warm_up_batch();
    for (bool processed : {false, true}) {
      enqueue_sampler(true, processed, logits_);
      enqueue_sampler(false, processed, logits_);
    }
    for (Layer& l : layers_) {  // start from clean rings
      CUDA_CHECK(cudaMemsetAsync(l.k, 0, S * cap * kv_row_bytes(), stream_));
      CUDA_CHECK(cudaMemsetAsync(l.v, 0, S * cap * kv_row_bytes(), stream_));
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (mode_ == DecodeMode::Graph && batched_)  // one graph per batch size B = 1 .. n_seqs
      for (int B = 1; B <= n_seqs(); ++B) batch_graphs_.push_back(capture([&] { enqueue_batch_step(B); }));
    if (mode_ == DecodeMode::Graph && !batched_) {
      for (int g = 0; g < 4; ++g) graphs_[g] = capture([&] { enqueue_replayed_step(graph_greedy(g), graph_processed(g)); });
      if (variants_.launch_ahead)
        for (int p = 0; p < 2; ++p) {
          ahead_slot_[p].greedy_graph = capture([&] { enqueue_ahead_step(p, true); });
          ahead_slot_[p].sampled_graph = capture([&] { enqueue_ahead_step(p, false); });
        }
    }
    CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  // Uploads one weight tensor into T or fp32 device memory (the loader has refused NaN and Inf),
  // refusing values that overflow T. Stored dtype == D: the bytes go as they are.
  template <typename D>
  void upload(D* dst, const TensorView& t, const std::string& source) {
    const long n = long(t.numel);
    if (t.dtype == ComputeType<D>::stored) {
      CUDA_CHECK(cudaMemcpy(dst, t.data, t.nbytes, cudaMemcpyHostToDevice));
      return;
    }
    std::vector<float> f(static_cast<size_t>(n));
    t.to_float(f.data());
    std::vector<D> conv(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; ++i) store_as(f[size_t(i)], &conv[size_t(i)]);
    const int64_t overflow = first_non_finite(reinterpret_cast<const uint8_t*>(conv.data()), n, ComputeType<D>::stored);
    if (overflow >= 0)
      throw Error(source + ": tensor \"" + t.name + "\" overflows " + compute_dtype_name(ComputeType<T>::dtype) +
                  " at element " + std::to_string(overflow) + " (use --dtype fp32 or bf16)");
    CUDA_CHECK(cudaMemcpy(dst, conv.data(), size_t(n) * sizeof(D), cudaMemcpyHostToDevice));
  }

  // The rows path: n tokens at positions [pos, pos + n) of sequence seq; token ids already in
  // ids_dev_.
  void enqueue_rows(int n, int pos, const KvRing& ring, int seq = 0) {
    const int C = C_, H = H_;
    const float eps = cfg_.layer_norm_epsilon;
    const size_t ring_rows = size_t(seq) * kv_capacity();  // the sequence's rows of the caches
    cuda::embedding_rows<T>(x_, ids_dev_, n, pos, w_.wte, w_.wpe, C, context_ + ring_rows, ring, stream_);  // x (n, C)
    for (int i = 0; i < L_; ++i) {
      const Layer& l = layers_[size_t(i)];
      const cuda::KvRings kv = rings(l, ring_rows);  // this sequence's rings
      const float* pending_bias = i == 0 ? nullptr : layers_[size_t(i) - 1].fc_proj_b;
      cuda::layernorm<T>(ln_, x_, pending_bias, l.ln_1_w, l.ln_1_b, n, C, eps, stream_);     // ln (n, C)
      cuda::matmul_store<T>(cublas_, qkv_, ln_, l.qkv_w, n, C, 3 * C);                               // qkv (n, 3C)
      cuda::qkv_bias_kv_append<T>(qkv_, l.qkv_b, kv, n, pos, ring, stream_);
      cuda::attention_prefill<T>(att_, qkv_, kv, n, pos, ring, HS_, paths_.prefill_key_tile, stream_);  // att (n, C)
      cuda::matmul_accumulate<T>(cublas_, x_, att_, l.attn_proj_w, n, C, C);                         // x += att W^T
      cuda::layernorm<T>(ln_, x_, l.attn_proj_b, l.ln_2_w, l.ln_2_b, n, C, eps, stream_);    // x += b; ln
      cuda::matmul_store<T>(cublas_, fc_, ln_, l.fc_w, n, C, H);                                     // fc (n, H)
      cuda::bias_gelu<T>(fc_, l.fc_b, n, H, stream_);
      cuda::matmul_accumulate<T>(cublas_, x_, fc_, l.fc_proj_w, n, H, C);                            // x += fc W^T
    }
    // The last row only: + the last projection's bias, ln_f, logits = wte . x_last.
    GemvParams<T> head = lm_head_op(x_ + size_t(n - 1) * C, layers_.back().fc_proj_b, logits_ + size_t(seq) * V_);
    head.pdl = false;  // the rows path is never captured
    cuda::gemv<T>(head, stream_);
  }

  // One fused matrix-vector product of the decode step: out (OC) = epilogue(W (OC, IC) . in + bias).
  GemvParams<T> gemv_op(const T* w, int IC, int OC, const float* in, const float* bias, float* out,
                        GemvEpilogue epilogue) const {
    GemvParams<T> p;
    p.w = w;
    p.IC = IC;
    p.OC = OC;
    p.in = in;
    p.bias = bias;
    p.out = out;
    p.epilogue = epilogue;
    p.eps = cfg_.layer_norm_epsilon;
    p.pdl = paths_.pdl;
    p.prologue = variants_.gemv_prologue;
    return p;
  }
  // ... a projection back into the decode step's residual stream: xd += W in + bias (C rows;
  // split across the warps along K when asked).
  GemvParams<T> residual_op(const T* w, int IC, const float* in, const float* bias) const {
    GemvParams<T> p = gemv_op(w, IC, C_, in, bias, xd_, GemvEpilogue::Residual);
    p.split_k = variants_.split_k;
    return p;
  }
  // ... the LM head: logits (V) = wte . LayerNorm_f(in + pre_bias) (its first rows in the l2
  // variant's persisting window).
  GemvParams<T> lm_head_op(const float* in, const float* pre_bias, float* logits) const {
    GemvParams<T> p = gemv_op(w_.wte, C_, V_, in, nullptr, logits, GemvEpilogue::Store);
    with_layernorm(p, w_.ln_f_w, w_.ln_f_b, pre_bias);
    p.persist_bytes = paths_.l2_window;
    return p;
  }
  // The l2 variant: p prefetches the next kernel's matrix (count elements of T) into L2 at its
  // end, at most kMaxPrefetchBytes of it (only the LM head is larger: L2 must keep what was
  // prefetched until the next kernel reads it, beside the persisting window).
  void prefetch_next(GemvParams<T>& p, const T* next, size_t count) const {
    if (!variants_.l2_window) return;
    p.prefetch = next;
    p.prefetch_bytes = std::min(count * sizeof(T), kMaxPrefetchBytes);
  }
  // ... whose input is LayerNorm(in + pre_bias; w, b) instead of `in`.
  static void with_layernorm(GemvParams<T>& p, const float* w, const float* b, const float* pre_bias = nullptr) {
    p.ln_w = w;
    p.ln_b = b;
    p.ln_pre_bias = pre_bias;
  }

  // The decode step: reads token, position and ring from step_dev_ (graph-replayable), writes
  // `logits` (V). Its ops are named to `sink` (profile.h; null: NVTX ranges only). fused_argmax:
  // the LM head also writes the greedy token to token_dev_ (GPT2_CUDA_VARIANTS=lmhead), and with
  // `advance` the next step's input (launch-ahead). (l2 variant: each matrix-vector kernel
  // prefetches the next one's matrix; the LM head the first layer's, for the next token.)
  void enqueue_decode(bool fused_argmax, ProfileSink* sink, float* logits, StepParams* advance = nullptr) {
    const size_t C = size_t(C_), H = size_t(H_);
    OpSequence ops(sink ? sink : &nvtx_);
    ops.next(DecodeOp::Embedding);
    cuda::embedding_step<T>(xd_, step_dev_, w_.wte, w_.wpe, C_, context_, stream_, paths_.pdl);  // xd (C)
    const auto attention =
        variants_.attention_one_round ? cuda::attention_decode_one_round : cuda::attention_decode;  // attn1
    for (size_t i = 0; i < layers_.size(); ++i) {
      const Layer& l = layers_[i];
      // LayerNorm + qkv + bias + K/V append: q (C) -> qd
      GemvParams<T> qkv = gemv_op(l.qkv_w, C_, 3 * C_, xd_, l.qkv_b, qd_, GemvEpilogue::Qkv);
      with_layernorm(qkv, l.ln_1_w, l.ln_1_b);
      qkv.kv = rings(l);
      qkv.kv_staged = kv_staged_;
      qkv.step = step_dev_;
      qkv.C = C_;
      prefetch_next(qkv, l.attn_proj_w, C * C);
      ops.next(DecodeOp::LnQkvKvAppend);
      cuda::gemv<T>(qkv, stream_);
      if (kv_staged_) cuda::kv_store_staged(qkv.kv, kv_staged_, 1, step_dev_, nullptr, kv_capacity(), stream_);  // int8
      ops.next(DecodeOp::Attention);
      attention(attd_, qd_, qkv.kv, step_dev_, partials_, counters_, HS_, kv_capacity(), stream_, paths_.pdl);  // attd (C)
      GemvParams<T> proj = residual_op(l.attn_proj_w, C_, attd_, l.attn_proj_b);  // xd += attd W^T + b
      prefetch_next(proj, l.fc_w, H * C);
      ops.next(DecodeOp::AttnProj);
      cuda::gemv<T>(proj, stream_);
      GemvParams<T> fc = gemv_op(l.fc_w, C_, H_, xd_, l.fc_b, hd_, GemvEpilogue::Gelu);  // hd = gelu(LayerNorm(xd) W^T + b)
      with_layernorm(fc, l.ln_2_w, l.ln_2_b);
      prefetch_next(fc, l.fc_proj_w, C * H);
      ops.next(DecodeOp::LnFc);
      cuda::gemv<T>(fc, stream_);
      GemvParams<T> fc_proj = residual_op(l.fc_proj_w, H_, hd_, l.fc_proj_b);  // xd += hd W^T + b
      const size_t window = paths_.l2_window / sizeof(T);  // the LM head's rows L2 already holds
      if (i + 1 < layers_.size())
        prefetch_next(fc_proj, layers_[i + 1].qkv_w, 3 * C * C);
      else
        prefetch_next(fc_proj, w_.wte + window, size_t(V_) * C - window);
      ops.next(DecodeOp::FcProj);
      cuda::gemv<T>(fc_proj, stream_);
    }
    GemvParams<T> head = lm_head_op(xd_, nullptr, logits);  // logits = LayerNorm_f(xd) wte^T
    prefetch_next(head, layers_[0].qkv_w, 3 * C * C);
    ops.next(DecodeOp::LnLmHead);
    if (fused_argmax)
      cuda::gemv_argmax<T>(head, token_dev_, argmax_state_, stream_, advance);
    else
      cuda::gemv<T>(head, stream_);
  }

  // The decode step into `logits` and its sampler. With GPT2_CUDA_VARIANTS=lmhead, a greedy step
  // without the logits processors (whose argmax is over the raw logits) takes its token from the
  // LM head. advance: as enqueue_decode's (launch-ahead).
  void enqueue_step(bool greedy, bool processed, float* logits, StepParams* advance = nullptr) {
    const bool fused = variants_.lm_head_argmax && greedy && !processed;
    enqueue_decode(fused, nullptr, logits, advance);
    if (!fused) enqueue_sampler(greedy, processed, logits, advance);
  }

  // ... with its StepParams copied in first and the token copied out last: what run_pending()
  // enqueues, or replays as graphs_[graph_index(greedy, processed)].
  void enqueue_replayed_step(bool greedy, bool processed) {
    CUDA_CHECK(cudaMemcpyAsync(step_dev_, step_host_, sizeof(StepParams), cudaMemcpyHostToDevice, stream_));
    enqueue_step(greedy, processed, logits_);
    CUDA_CHECK(cudaMemcpyAsync(token_host_, token_dev_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  }

  // [the logits processors ->] argmax or sampling of `logits`, parameters from step_dev_;
  // advance: the chosen token and pos + 1 also into it (launch-ahead).
  // seq: whose token ring and counts the processors use.
  void enqueue_sampler(bool greedy, bool processed, const float* logits, StepParams* advance = nullptr, int seq = 0) {
    const float* z = logits;
    if (processed) {
      cuda::process_logits(logits, scores_, V_, context_ + size_t(seq) * kv_capacity(), counts_ + size_t(seq) * V_,
                           step_dev_, stream_, paths_.pdl);
      z = scores_;
    }
    if (greedy)
      cuda::argmax(z, V_, token_dev_, stream_, paths_.pdl, advance);
    else
      cuda::sample_top_k_top_p(z, V_, step_dev_, sw_, token_dev_, stream_, paths_.pdl, advance);
  }

  // The counts process_logits() will hold after this step: the penalty window of the context
  // [0, context_end). Incremental from what they hold (`counted`) when that only moves forward.
  struct Counted;
  void track_counts(int repeat_last_n, int context_end, Counted& counted) {
    const int begin = penalty_window_begin(context_end, repeat_last_n);
    const bool incremental = counted.valid && begin >= counted.begin && context_end >= counted.end;
    step_host_->counted_begin = incremental ? counted.begin : 0;
    step_host_->counted_end = incremental ? counted.end : -1;
    counted = {true, begin, context_end};
  }

  // graphs_[g]: greedy or sampling, with or without the logits processors.
  static bool graph_greedy(int g) { return (g & 1) == 0; }
  static bool graph_processed(int g) { return (g & 2) != 0; }
  static int graph_index(bool greedy, bool processed) { return (greedy ? 0 : 1) + (processed ? 2 : 0); }

  // What `enqueue` puts on the stream, captured as a graph, instantiated and uploaded.
  template <typename Enqueue>
  cudaGraphExec_t capture(Enqueue&& enqueue) {
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
    try {
      enqueue();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      cudaGetLastError();
      throw;
    }
    CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    CUDA_CHECK(inst);
    CUDA_CHECK(cudaGraphUpload(exec, stream_));
    return exec;
  }

  // Runs the recorded decode step and the sampler; waits for the token.
  void run_pending(bool greedy, bool processed) {
    discard_ahead();  // an accepted launch-ahead step is recomputed: its slot is not logits_
    pending_ = false;
    const NvtxRange range(mode_ == DecodeMode::Graph ? "decode: graph" : "decode: eager");
    if (mode_ == DecodeMode::Graph)
      CUDA_CHECK(cudaGraphLaunch(graphs_[graph_index(greedy, processed)], stream_));
    else
      enqueue_replayed_step(greedy, processed);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    inflight_ = false;
    last_logits_ = logits_;
  }

  // ---- launch-ahead (GPT2_CUDA_VARIANTS=ahead) ----------------------------------------------
  // The pending step (greedy, or sampled without the logits processors) is on the stream
  // already (forward() accepted the queued one) or starts a chain here from step_host_. The
  // step after it is queued too, at position context_end_, when its draw is known (greedy, or
  // next_u given) and that position is inside the context window and not one an earlier
  // forward() wrote (whose keys and values the caller may still rely on). Then only this step's
  // token is waited for. Returns it.
  int run_ahead(bool greedy, std::optional<double> next_u) {
    const NvtxRange range("decode: ahead");
    pending_ = false;
    int p = 0;
    if (ahead_.state == AheadState::Accepted) {
      p = ahead_.parity;
    } else {
      CUDA_CHECK(cudaMemcpyAsync(step_dev_, step_host_, sizeof(StepParams), cudaMemcpyHostToDevice, stream_));
      launch_ahead(p, greedy, step_host_->u);
    }
    ahead_.state = AheadState::None;
    if ((greedy || next_u) && context_end_ < context_window() && context_end_ >= written_end_) {
      ahead_ = Ahead{AheadState::Queued, 1 - p, *step_host_};  // this step's sampling ...
      ahead_.step.pos = context_end_;                            // ... one position on
      ahead_.step.u = greedy ? 0.0f : float(*next_u);
      launch_ahead(1 - p, greedy, ahead_.step.u);
    }
    CUDA_CHECK(cudaEventSynchronize(ahead_slot_[p].done));
    inflight_ = ahead_.state == AheadState::Queued;
    last_logits_ = ahead_slot_[p].logits;
    ahead_.step.token = *ahead_slot_[p].token_host;  // the queued step's input
    return ahead_.step.token;
  }

  // Puts the launch-ahead step of slot p on the stream (its graph, or eagerly), then its event.
  // u: a sampled step's draw (the slot's pinned copy is free: its last step was waited for).
  void launch_ahead(int p, bool greedy, float u) {
    AheadSlot& slot = ahead_slot_[p];
    *slot.u_host = u;
    if (mode_ == DecodeMode::Graph)
      CUDA_CHECK(cudaGraphLaunch(greedy ? slot.greedy_graph : slot.sampled_graph, stream_));
    else
      enqueue_ahead_step(p, greedy);
    CUDA_CHECK(cudaEventRecord(slot.done, stream_));
  }

  // A decode step into slot p's logits whose argmax or sampler also makes step_dev_ the next
  // step's input (token, pos + 1); its token copied to the slot's pinned int. Nothing else comes
  // from the host but a sampled step's draw: step_dev_ is the previous step's doing (or
  // run_ahead's copy for the first of a chain).
  void enqueue_ahead_step(int p, bool greedy) {
    const AheadSlot& slot = ahead_slot_[p];
    if (!greedy)
      CUDA_CHECK(cudaMemcpyAsync(&step_dev_->u, slot.u_host, sizeof(float), cudaMemcpyHostToDevice, stream_));
    enqueue_step(greedy, false, slot.logits, step_dev_);
    CUDA_CHECK(cudaMemcpyAsync(slot.token_host, token_dev_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
  }

  // Whether a queued step's sampling (as it was queued) is the one step_host_ now asks for.
  static bool same_draw(const StepParams& queued, const StepParams& asked, bool greedy) {
    return queued.temperature == asked.temperature && queued.top_k == asked.top_k && queued.top_p == asked.top_p &&
           queued.min_p == asked.min_p && (greedy || queued.u == asked.u);
  }

  // Lets a queued (or accepted but not taken) launch-ahead step finish unused. What it wrote is
  // never read: its logits slot and pinned int are read only for a step run_ahead() takes, and
  // its keys, values and context id sit at a position no forward() has written (run_ahead's
  // rule), which a later forward() writes before anything attends to it.
  void discard_ahead() {
    if (ahead_.state == AheadState::None) return;
    wait_inflight();
    ahead_.state = AheadState::None;
  }

  void open_ahead_slots() {
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&ahead_u_host_), 2 * sizeof(float), cudaHostAllocDefault));
    for (int p = 0; p < 2; ++p) {
      ahead_slot_[p].logits = p == 0 ? logits_ : ahead_logits_;
      ahead_slot_[p].token_host = token_host_ + 1 + p;
      ahead_slot_[p].u_host = ahead_u_host_ + p;
      *ahead_slot_[p].u_host = 0.0f;
      CUDA_CHECK(cudaEventCreateWithFlags(&ahead_slot_[p].done, cudaEventDisableTiming));
    }
  }

  // ---- several sequences (n_seqs > 1: --parallel, beam search) --------------------------------
  // Every decode step, one row or B, runs the batched kernels (no launch-ahead): embedding_batch,
  // per layer gemv_batch (LayerNorm + qkv + K/V append), attention_decode_batch through the
  // history table, gemv_batch x 3, then the LM head into each row's sequence's logits; with the
  // copy of the rows in, captured once per batch size B at load (batch_graphs_) and replayed
  // (GPT2_CUDA_DECODE=eager: enqueued each step; =rows: the rows path, one sequence at a time).
  // Each row's sums run in the one-sequence kernels' order whatever B is (kernels.h), so a
  // sequence's logits do not depend on the batch. Prefill and --no-cache use the rows path on the
  // sequence's rings. The host keeps each sequence's context (SeqState).

  // The batched step's buffers, n_seqs rows each.
  void plan_batch(Plan& plan, size_t* other) {
    const size_t S = size_t(n_seqs()), C = size_t(C_), H = size_t(H_);
    plan.add(&xb_, S * C, other);              // (B, C) fp32 residual streams
    plan.add(&staged_, S * std::max(C, H), other);  // (B, max(C, H)) LayerNorm'd inputs
    plan.add(&qb_, S * C, other);              // (B, C) queries
    plan.add(&attb_, S * C, other);            // (B, C) attention outputs
    plan.add(&hb_, S * H, other);              // (B, H) gelu outputs
    plan.add(&rows_dev_, S, other);            // (B) BatchRow
    plan.add(&partials_b_, S * cuda::attention_decode_partials(NH_, kv_capacity()), other);
    plan.add(&counters_b_, S * size_t(NH_), other);
    plan.add(&history_scratch_, S * size_t(kv_capacity()), other);  // (n_seqs, capacity) reorder's copy
    plan.add(&parent_dev_, S, other);          // (n_seqs) reorder's parents
  }

  // The batched kernels once (module loading), sequence 0 at position 0; warm_up_and_capture()
  // clears the rings and the history afterwards.
  void warm_up_batch() {
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&rows_host_), size_t(n_seqs()) * sizeof(cuda::BatchRow),
                             cudaHostAllocDefault));
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&parent_host_), size_t(n_seqs()) * sizeof(int),
                             cudaHostAllocDefault));
    CUDA_CHECK(cudaMemsetAsync(counters_b_, 0, size_t(n_seqs()) * NH_ * sizeof(unsigned int), stream_));
    rows_host_[0] = cuda::BatchRow{0, 0, 0, KvRing{kv_capacity(), 0}};
    CUDA_CHECK(cudaMemcpyAsync(rows_dev_, rows_host_, sizeof(cuda::BatchRow), cudaMemcpyHostToDevice, stream_));
    enqueue_decode_batch(1);
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    for (int seq = 0; seq < n_seqs(); ++seq) cuda::history_fill(history_, seq, kv_capacity(), 0, kv_capacity(), stream_);
  }

  cuda::GemvBatchParams<T> batch_op(const T* w, int IC, int OC, const float* in, const float* bias, float* out,
                                    GemvEpilogue epilogue, int B) const {
    cuda::GemvBatchParams<T> p;
    p.w = w;
    p.IC = IC;
    p.OC = OC;
    p.B = B;
    p.in = in;
    p.bias = bias;
    p.out = out;
    p.epilogue = epilogue;
    p.eps = cfg_.layer_norm_epsilon;
    p.rows = rows_dev_;
    p.capacity = kv_capacity();
    p.C = C_;
    return p;
  }
  static void with_layernorm(cuda::GemvBatchParams<T>& p, const float* w, const float* b, float* staged) {
    p.ln_w = w;
    p.ln_b = b;
    p.staged = staged;
  }

  // The batched decode step of the B rows in rows_dev_: each row's logits into its sequence's.
  void enqueue_decode_batch(int B) {
    const int C = C_, H = H_, cap = kv_capacity();
    cuda::embedding_batch<T>(xb_, rows_dev_, B, w_.wte, w_.wpe, C, context_, history_, cap, stream_);  // xb (B, C)
    for (const Layer& l : layers_) {
      auto qkv = batch_op(l.qkv_w, C, 3 * C, xb_, l.qkv_b, qb_, GemvEpilogue::Qkv, B);  // qb (B, C), K/V appended
      with_layernorm(qkv, l.ln_1_w, l.ln_1_b, staged_);
      qkv.kv = rings(l);
      qkv.kv_staged = kv_staged_;
      cuda::gemv_batch<T>(qkv, stream_);
      if (kv_staged_) cuda::kv_store_staged(qkv.kv, kv_staged_, B, nullptr, rows_dev_, cap, stream_);  // int8
      cuda::attention_decode_batch(attb_, qb_, qkv.kv, rows_dev_, B, history_, partials_b_, counters_b_, HS_, cap,
                                   stream_);  // attb (B, C)
      cuda::gemv_batch<T>(batch_op(l.attn_proj_w, C, C, attb_, l.attn_proj_b, xb_, GemvEpilogue::Residual, B),
                          stream_);  // xb += attb W^T + b
      auto fc = batch_op(l.fc_w, C, H, xb_, l.fc_b, hb_, GemvEpilogue::Gelu, B);  // hb (B, H)
      with_layernorm(fc, l.ln_2_w, l.ln_2_b, staged_);
      cuda::gemv_batch<T>(fc, stream_);
      cuda::gemv_batch<T>(batch_op(l.fc_proj_w, H, C, hb_, l.fc_proj_b, xb_, GemvEpilogue::Residual, B),
                          stream_);  // xb += hb W^T + b
    }
    auto head = batch_op(w_.wte, C, V_, xb_, nullptr, logits_, GemvEpilogue::Store, B);  // logits[seq] (V)
    with_layernorm(head, w_.ln_f_w, w_.ln_f_b, staged_);
    head.out_by_seq = true;
    cuda::gemv_batch<T>(head, stream_);
  }

  void decode_batch_impl(const SeqToken* rows, int B) override {
    if (batched_ && mode_ != DecodeMode::Rows) return run_batch_step(rows, B);
    for (int b = 0; b < B; ++b) forward_impl(rows[b].seq, &rows[b].id, 1, rows[b].pos, rows[b].ring);  // one by one
  }

  // One batched step of rows (valid, distinct sequences): the host's view of each sequence, the
  // rows to the device, the step; not waited for.
  void run_batch_step(const SeqToken* rows, int B) {
    wait_inflight();  // rows_host_ may still be read by the previous step's copy
    for (int b = 0; b < B; ++b) {
      const SeqToken& r = rows[b];
      SeqState& s = seqs_[size_t(r.seq)];
      if (r.pos < s.counted.end || r.ring.start != s.ring.start) s.counted.valid = false;
      if (r.pos == 0) {  // a new context: the sequence's own history
        cuda::history_fill(history_, r.seq, kv_capacity(), 0, kv_capacity(), stream_);
        s.reordered = false;
      }
      s.context_end = r.pos + 1;
      s.ring = r.ring;
      rows_host_[b] = cuda::BatchRow{r.seq, r.id, r.pos, r.ring};
    }
    if (mode_ == DecodeMode::Graph)
      CUDA_CHECK(cudaGraphLaunch(batch_graphs_[size_t(B - 1)], stream_));
    else
      enqueue_batch_step(B);
    inflight_ = true;
  }

  // The B rows of rows_host_ to the device and the step: what batch_graphs_[B - 1] replays.
  void enqueue_batch_step(int B) {
    CUDA_CHECK(cudaMemcpyAsync(rows_dev_, rows_host_, size_t(B) * sizeof(cuda::BatchRow), cudaMemcpyHostToDevice,
                               stream_));
    enqueue_decode_batch(B);
  }

  // forward() of a batched backend: one token is a batched step of one row; n tokens the rows
  // path on the sequence's rings (its history then its own), or, after a reorder, one token at a
  // time through the history table (the rows path reads the sequence's own ring only).
  void forward_batched(int seq, const int* ids, int n, int pos, const KvRing& ring) {
    SeqState& s = seqs_[size_t(seq)];
    if ((n == 1 && mode_ != DecodeMode::Rows) || (pos > 0 && s.reordered)) {
      for (int i = 0; i < n; ++i) {
        const SeqToken row{seq, ids[i], pos + i, ring};
        run_batch_step(&row, 1);
      }
      return;
    }
    wait_inflight();  // ids_host_ may still be read by an earlier copy
    std::copy(ids, ids + n, ids_host_);
    CUDA_CHECK(cudaMemcpyAsync(ids_dev_, ids_host_, size_t(n) * sizeof(int), cudaMemcpyHostToDevice, stream_));
    cuda::history_fill(history_, seq, kv_capacity(), pos == 0 ? 0 : pos, pos == 0 ? kv_capacity() : pos + n, stream_);
    enqueue_rows(n, pos, ring, seq);
    if (pos == 0) s.reordered = false;
    s.counted.valid = false;
    s.context_end = pos + n;
    s.ring = ring;
    inflight_ = true;
  }

  int sample_batched(int seq, const SamplingParams& params, double u) {
    SeqState& s = seqs_[size_t(seq)];
    const bool greedy = params.greedy(), processed = params.penalties.active();
    wait_inflight();  // the step's logits, and step_host_ free
    step_host_->pos = s.context_end - 1;
    step_host_->ring = s.ring;
    step_host_->temperature = params.temperature;
    step_host_->top_k = params.top_k;
    step_host_->top_p = params.top_p;
    step_host_->u = float(u);
    step_host_->min_p = params.min_p;
    step_host_->penalties = params.penalties;
    if (processed) track_counts(params.penalties.repeat_last_n, s.context_end, s.counted);
    CUDA_CHECK(cudaMemcpyAsync(step_dev_, step_host_, sizeof(StepParams), cudaMemcpyHostToDevice, stream_));
    enqueue_sampler(greedy, processed, logits_ + size_t(seq) * V_, nullptr, seq);
    CUDA_CHECK(cudaMemcpyAsync(token_host_, token_dev_, sizeof(int), cudaMemcpyDeviceToHost, stream_));
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    return checked(*token_host_);
  }

  // Beam search: sequence i's history and token ring below pos become parent[i]'s (kernels.h,
  // history_reorder); no K/V moves. One sequence: parent is {0}, nothing changes.
  void reorder_impl(const int* parent, int n, int pos) override {
    if (!batched_) return;
    wait_inflight();  // parent_host_ may still be read by an earlier copy
    std::copy(parent, parent + n, parent_host_);
    CUDA_CHECK(cudaMemcpyAsync(parent_dev_, parent_host_, size_t(n) * sizeof(int), cudaMemcpyHostToDevice, stream_));
    const int cap = kv_capacity();
    cuda::history_reorder(history_, history_scratch_, parent_dev_, n, cap, pos, true, stream_);
    cuda::history_reorder(context_, history_scratch_, parent_dev_, n, cap, pos, false, stream_);
    std::vector<SeqState> before(seqs_.begin(), seqs_.begin() + n);
    for (int i = 0; i < n; ++i) {
      SeqState& s = seqs_[size_t(i)];
      s = before[size_t(parent[i])];
      s.context_end = pos;
      s.counted.valid = false;  // the counts are the sequence's own
      s.reordered = true;
    }
    inflight_ = true;
  }

  void wait_inflight() {
    if (!inflight_) return;
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    inflight_ = false;
  }

  void release() noexcept {
    if (stream_) cudaStreamSynchronize(stream_);
    if (set_aside_) cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, 0);  // the set-aside back to L2
    for (cudaGraphExec_t g : batch_graphs_) cudaGraphExecDestroy(g);
    batch_graphs_.clear();
    for (cudaGraphExec_t& g : graphs_)
      if (g) {
        cudaGraphExecDestroy(g);
        g = nullptr;
      }
    for (AheadSlot& slot : ahead_slot_) {
      if (slot.greedy_graph) cudaGraphExecDestroy(slot.greedy_graph);
      if (slot.sampled_graph) cudaGraphExecDestroy(slot.sampled_graph);
      if (slot.done) cudaEventDestroy(slot.done);
      slot = AheadSlot{};
    }
    if (cublas_) cublasDestroy(cublas_);
    cublas_ = nullptr;
    if (stream_) cudaStreamDestroy(stream_);
    stream_ = nullptr;
    if (arena_) cudaFree(arena_);
    arena_ = nullptr;
    if (step_host_) cudaFreeHost(step_host_);
    if (token_host_) cudaFreeHost(token_host_);
    if (ids_host_) cudaFreeHost(ids_host_);
    if (ahead_u_host_) cudaFreeHost(ahead_u_host_);
    if (rows_host_) cudaFreeHost(rows_host_);
    if (parent_host_) cudaFreeHost(parent_host_);
    ahead_u_host_ = nullptr;
    rows_host_ = nullptr;
    parent_host_ = nullptr;
    step_host_ = nullptr;
    token_host_ = nullptr;
    ids_host_ = nullptr;
    cudaGetLastError();
  }

  const GPT2Config& cfg_;
  int C_ = 0, H_ = 0, NH_ = 0, HS_ = 0, V_ = 0, L_ = 0;
  DecodeMode mode_ = DecodeMode::Graph;
  CudaVariants variants_;  // GPT2_CUDA_VARIANTS, read once at load
  DevicePaths paths_;       // chosen from the device's limits at load: prefill tile, PDL, L2 window
  bool set_aside_ = false;  // a persisting L2 set-aside is in place (release() gives it back)
  static constexpr size_t kMaxPrefetchBytes = size_t(8) << 20;
  BackendInfo info_;
  NvtxSink nvtx_;  // names the decode step's ops for nsys

  char* arena_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_ws_ = nullptr;
  size_t cublas_ws_bytes_ = 0;
  cudaGraphExec_t graphs_[4] = {};  // graph_index(greedy, processed)
  std::vector<cudaGraphExec_t> batch_graphs_;  // batched backends: [B - 1], the step of B rows

  Weights w_;
  std::vector<Layer> layers_;
  // rows path activations, context_window() rows
  float* x_ = nullptr;  // (T, C) fp32
  T *ln_ = nullptr, *qkv_ = nullptr, *att_ = nullptr, *fc_ = nullptr;
  int* ids_dev_ = nullptr;
  // decode step
  float *xd_ = nullptr, *qd_ = nullptr, *attd_ = nullptr, *hd_ = nullptr;
  float* partials_ = nullptr;
  unsigned int* counters_ = nullptr;
  cuda::ArgmaxState* argmax_state_ = nullptr;  // GPT2_CUDA_VARIANTS=lmhead
  StepParams* step_dev_ = nullptr;
  // logits, the logits processors' state, sampling
  float* logits_ = nullptr;  // (V)
  float* scores_ = nullptr;  // (V) processed logits
  int* counts_ = nullptr;    // (V)
  int* context_ = nullptr;   // (capacity) token ids by ring slot
  int* token_dev_ = nullptr;
  float* last_logits_ = nullptr;  // the buffer holding the last step's logits: logits_ or a launch-ahead slot's
  cuda::SamplerWorkspace sw_;
  // pinned host staging
  StepParams* step_host_ = nullptr;
  int* token_host_ = nullptr;
  int* ids_host_ = nullptr;

  int context_end_ = 0;    // the last forward() left the context positions [0, context_end_) ...
  KvRing context_ring_;    // ... in these ring slots
  struct Counted {
    bool valid = false;    // counts_ hold the ids of context positions [begin, end)
    int begin = 0, end = 0;
  } counted_;
  // Several sequences (batched_): the batched decode step's buffers (plan_batch) and each
  // sequence's context as the host knows it.
  bool batched_ = false;  // n_seqs > 1
  int* history_ = nullptr;  // (n_seqs, capacity) the history table
  float* kv_staged_ = nullptr;  // int8 rings only: (n_seqs, 2C) the decode steps' new K and V (kv_store_staged)
  int* history_scratch_ = nullptr;
  int* parent_dev_ = nullptr;
  float *xb_ = nullptr, *staged_ = nullptr, *qb_ = nullptr, *attb_ = nullptr, *hb_ = nullptr;
  float* partials_b_ = nullptr;
  unsigned int* counters_b_ = nullptr;
  cuda::BatchRow* rows_dev_ = nullptr;
  cuda::BatchRow* rows_host_ = nullptr;  // pinned (n_seqs)
  int* parent_host_ = nullptr;           // pinned (n_seqs)
  struct SeqState {
    int context_end = 0;  // the sequence's context: positions [0, context_end) ...
    KvRing ring;          // ... in these ring slots
    Counted counted;      // its penalty counts
    bool reordered = false;  // its history names other sequences' rings (reorder since its pos 0)
  };
  std::vector<SeqState> seqs_;
  bool pending_ = false;   // forward(n == 1) recorded a decode step that has not run yet
  bool inflight_ = false;  // work enqueued that nobody has waited for
  int written_end_ = 0;    // forward() has written positions [0, written_end_) of context_ring_

  // Launch-ahead: two slots, used alternately, and the step run_ahead() queued.
  struct AheadSlot {
    float* logits = nullptr;                  // (V) the step's logits: logits_ or ahead_logits_
    int* token_host = nullptr;                // pinned: its token
    float* u_host = nullptr;                  // pinned: a sampled step's draw
    cudaEvent_t done = nullptr;               // recorded after it
    cudaGraphExec_t greedy_graph = nullptr;   // graph mode: enqueue_ahead_step(slot, true)
    cudaGraphExec_t sampled_graph = nullptr;  // ... (slot, false)
  };
  AheadSlot ahead_slot_[2];
  float* ahead_logits_ = nullptr;  // (V) slot 1's logits
  float* ahead_u_host_ = nullptr;  // pinned (2): the slots' draws
  enum class AheadState {
    None,      // nothing queued
    Queued,    // a step is on the stream that no forward() has asked for yet ...
    Accepted,  // ... and forward() asked for it: the pending step, taken by sample()
  };
  struct Ahead {
    AheadState state = AheadState::None;
    int parity = 0;   // its slot
    StepParams step;  // its input as the device has it: token (known once the step before it
                      // was read), pos, ring, sampling parameters and draw u
  } ahead_;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options) {
  switch (options.dtype.value_or(ComputeDType::F16)) {  // fp16 unless asked otherwise
    case ComputeDType::F32: return std::make_unique<CudaBackend<float>>(model, options);
    case ComputeDType::F16: return std::make_unique<CudaBackend<__half>>(model, options);
    case ComputeDType::BF16: return std::make_unique<CudaBackend<__nv_bfloat16>>(model, options);
    case ComputeDType::Int8: break;  // make_backend keeps int8 on the CPU
  }
  throw Error("internal: unknown compute dtype");
}

}  // namespace gpt2
