#include "engine/backend.h"
#include "engine/kv_format.h"

#include "base/error.h"

namespace gpt2 {

const char* compute_dtype_name(ComputeDType d) {
  switch (d) {
    case ComputeDType::F32: return "fp32";
    case ComputeDType::F16: return "fp16";
    case ComputeDType::BF16: return "bf16";
    case ComputeDType::Int8: return "int8";
  }
  return "?";
}

Backend::Backend(const GPT2Config& config, const BackendOptions& options)
    : config_(config), capacity_(options.kv_capacity > 0 ? options.kv_capacity : config.n_positions),
      n_seqs_(options.n_seqs) {
  if (n_seqs_ < 1) throw Error("internal: a backend of " + std::to_string(n_seqs_) + " sequences");
}

// ids: nullptr for read_kv(), which names no tokens.
void Backend::check_call(int seq, const int* ids, int n, int pos, const KvRing& ring) const {
  if (seq < 0 || seq >= n_seqs_)
    throw Error("internal: sequence " + std::to_string(seq) + " of a backend holding " + std::to_string(n_seqs_));
  if (n < 1 || pos < 0 || pos + n > context_window())
    throw Error("internal: forward() of " + std::to_string(n) + " tokens at position " + std::to_string(pos) +
                " does not fit the context");
  if (ring.capacity != capacity_ || ring.start < 0 || ring.start >= capacity_)
    throw Error("internal: forward() with a K/V ring of capacity " + std::to_string(ring.capacity) + ", start " +
                std::to_string(ring.start) + " (the backend's holds " + std::to_string(capacity_) + ")");
  for (int i = 0; ids && i < n; ++i)
    if (ids[i] < 0 || ids[i] >= config_.vocab_size)
      throw Error("token id " + std::to_string(ids[i]) + " is outside the vocabulary [0, " +
                  std::to_string(config_.vocab_size) + ")");
}

void Backend::forward(int seq, const int* ids, int n, int pos, const KvRing& ring) {
  check_call(seq, ids, n, pos, ring);
  forward_impl(seq, ids, n, pos, ring);
  if (seq == 0) {  // --profile re-runs sequence 0's last step (it is refused with --batch)
    last_ = DecodeStep{ids[n - 1], pos + n - 1, ring};
    forwarded_ = true;
  }
}

void Backend::decode_batch(const SeqToken* rows, int B) {
  if (B < 1 || B > n_seqs_) throw Error("internal: decode_batch() of " + std::to_string(B) + " rows");
  for (int b = 0; b < B; ++b) {
    check_call(rows[b].seq, &rows[b].id, 1, rows[b].pos, rows[b].ring);
    for (int c = 0; c < b; ++c)
      if (rows[c].seq == rows[b].seq)
        throw Error("internal: decode_batch() with sequence " + std::to_string(rows[b].seq) + " twice");
  }
  decode_batch_impl(rows, B);
  forwarded_ = false;  // sequence 0's last forward() step may be behind its ring now
}

void Backend::decode_batch_impl(const SeqToken* rows, int B) {
  for (int b = 0; b < B; ++b) forward_impl(rows[b].seq, &rows[b].id, 1, rows[b].pos, rows[b].ring);
}

void Backend::prefill_batch(const SeqChunk* chunks, int n) {
  if (n < 1 || n > n_seqs_) throw Error("internal: prefill_batch() of " + std::to_string(n) + " sequences");
  for (int c = 0; c < n; ++c) {
    check_call(chunks[c].seq, chunks[c].ids, chunks[c].n, chunks[c].pos, chunks[c].ring);
    for (int d = 0; d < c; ++d)
      if (chunks[d].seq == chunks[c].seq)
        throw Error("internal: prefill_batch() with sequence " + std::to_string(chunks[c].seq) + " twice");
  }
  prefill_batch_impl(chunks, n);
  forwarded_ = false;  // as decode_batch()
}

void Backend::prefill_batch_impl(const SeqChunk* chunks, int n) {
  for (int c = 0; c < n; ++c) forward_impl(chunks[c].seq, chunks[c].ids, chunks[c].n, chunks[c].pos, chunks[c].ring);
}

void Backend::reorder(const int* parent, int n, int pos) {
  if (n < 1 || n > n_seqs_ || pos < 1 || pos > capacity_)
    throw Error("internal: reorder() of " + std::to_string(n) + " sequences at position " + std::to_string(pos));
  for (int i = 0; i < n; ++i)
    if (parent[i] < 0 || parent[i] >= n)
      throw Error("internal: reorder() with parent " + std::to_string(parent[i]) + " of " + std::to_string(n));
  reorder_impl(parent, n, pos);
  forwarded_ = false;  // sequence 0's last step is no longer its history
}

void Backend::reorder_impl(const int*, int, int) {
  throw Error("internal: the " + info().device + " backend does not reorder sequences (beam search)");
}

size_t Backend::kv_row_bytes() const {
  return gpt2::kv_row_bytes(info().kv_dtype, config_.n_embd, config_.n_head);
}

void Backend::read_kv(int seq, int pos0, int n, const KvRing& ring, uint8_t* k, uint8_t* v, int layer_stride) {
  if (n < 1 || layer_stride < n) throw Error("internal: read_kv() of " + std::to_string(n) + " positions");
  check_call(seq, nullptr, n, pos0, ring);
  read_kv_impl(seq, pos0, n, ring, k, v, size_t(layer_stride) * kv_row_bytes());
}

void Backend::write_kv(int seq, const int* ids, int pos0, int n, const KvRing& ring, const uint8_t* k,
                       const uint8_t* v, int layer_stride) {
  if (n < 1 || layer_stride < n) throw Error("internal: write_kv() of " + std::to_string(n) + " positions");
  check_call(seq, ids, n, pos0, ring);
  write_kv_impl(seq, ids, pos0, n, ring, k, v, size_t(layer_stride) * kv_row_bytes());
  forwarded_ = false;  // sequence 0's last forward() step is no longer its history
}

void Backend::copy_kv(int src_seq, int dst_seq, const int* ids, int n, const KvRing& ring) {
  if (src_seq == dst_seq) throw Error("internal: copy_kv() of sequence " + std::to_string(src_seq) + " onto itself");
  check_call(src_seq, nullptr, n, 0, ring);
  check_call(dst_seq, ids, n, 0, ring);
  copy_kv_impl(src_seq, dst_seq, ids, n, ring);
  forwarded_ = false;  // sequence 0's last forward() step may no longer be its history
}

void Backend::copy_kv_impl(int src_seq, int dst_seq, const int* ids, int n, const KvRing& ring) {
  std::vector<uint8_t> k(size_t(config_.n_layer) * size_t(n) * kv_row_bytes()), v(k.size());  // (n_layer, n, row)
  read_kv_impl(src_seq, 0, n, ring, k.data(), v.data(), size_t(n) * kv_row_bytes());
  write_kv_impl(dst_seq, ids, 0, n, ring, k.data(), v.data(), size_t(n) * kv_row_bytes());
}

int Backend::sample(int seq, const SamplingParams& params, double u) {
  if (seq < 0 || seq >= n_seqs_) throw Error("internal: sample() of sequence " + std::to_string(seq));
  return sample_impl(seq, params, u, std::nullopt);
}

DecodeProfile Backend::profile_decode(int steps) {
  if (!forwarded_) throw Error("internal: profile_decode() before any forward()");
  if (steps < 1) throw Error("internal: profile_decode() of " + std::to_string(steps) + " steps");
  return profile_impl(steps, last_);
}

}  // namespace gpt2
