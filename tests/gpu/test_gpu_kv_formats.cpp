// The CUDA kernels that write or read the K/V rings, in every ring format (--kv-dtype: fp32,
// fp16, bf16, int8; engine/kv_format.h), against the CPU: the rings the kernels write equal, byte
// for byte, the rows the host encodes through kv_format.h's helpers from cpu_ops' fp32 values,
// and the attention kernels' outputs match cpu::attention over the host-decoded (dequantised)
// ring by NMSE, at odd sizes and over wrapping rings. The compute dtype is fp16 (the default;
// test_gpu_kernels.cpp covers each compute dtype with rings of its own dtype) and fp32 for the
// append. The batched decode step's write (gemv_batch, then kv_store_staged by rows) touches
// exactly its rows' slots of the (sequences x capacity) cache. Also each format's own error
// against the fp32 values it stores (the tolerances are about 4x the errors measured on the
// emulator; kernels/README.md "K/V formats").
// Label `gpu`: every test skips where no CUDA device is usable.
#include <gtest/gtest.h>

#include <cstring>

#include "cpu/cpu_ops.h"
#include "engine/kv_format.h"
#include "gpu_test_util.h"
#include "kernels.h"

namespace gpt2 {
namespace {

using namespace gpt2::test;
namespace k = gpt2::cuda;

// A ring's rows as bytes in format d, and the fp32 values they hold (rows never written: bytes
// 0xFF and values NaN, as a poisoned device ring decodes).
struct HostRing {
  std::vector<uint8_t> bytes;
  std::vector<float> values;
};

// One row of C fp32 values (finite) encoded in d, through kv_format.h; writes the decoded values.
void encode_row(const float* x, ComputeDType d, int C, int NH, uint8_t* row, float* decoded) {
  for (int j = 0; j < C; ++j) {
    switch (d) {
      case ComputeDType::F32: std::memcpy(row + 4 * j, &x[j], 4), decoded[j] = x[j]; break;
      case ComputeDType::F16: host_store<__half>(x[j], reinterpret_cast<__half*>(row) + j), decoded[j] = round_to<__half>(x[j]); break;
      case ComputeDType::BF16:
        host_store<__nv_bfloat16>(x[j], reinterpret_cast<__nv_bfloat16*>(row) + j);
        decoded[j] = round_to<__nv_bfloat16>(x[j]);
        break;
      case ComputeDType::Int8: break;
    }
  }
  if (d != ComputeDType::Int8) return;
  const int HS = C / NH;
  for (int h = 0; h < NH; ++h) {
    const float scale = kv_q8_scale(x + h * HS, HS);
    std::memcpy(row + kv_q8_scale_offset(C, h), &scale, 4);
    for (int i = 0; i < HS; ++i) {
      const int8_t q = kv_q8_quantize(x[h * HS + i], scale);
      row[h * HS + i] = uint8_t(q);
      decoded[h * HS + i] = float(q) * scale;
    }
  }
}

// A ring's bytes decoded to fp32 (rows, C), as the kernels read them.
std::vector<float> decode_ring(const std::vector<uint8_t>& bytes, ComputeDType d, int C, int NH) {
  const size_t row_bytes = kv_row_bytes(d, C, NH), rows = bytes.size() / row_bytes;
  std::vector<float> out(rows * C);
  for (size_t r = 0; r < rows; ++r) {
    const uint8_t* row = bytes.data() + r * row_bytes;
    for (int j = 0; j < C; ++j) {
      float& v = out[r * C + j];
      if (d == ComputeDType::F32) std::memcpy(&v, row + 4 * j, 4);
      if (d == ComputeDType::F16) v = host_load<__half>(reinterpret_cast<const __half*>(row)[j]);
      if (d == ComputeDType::BF16) v = host_load<__nv_bfloat16>(reinterpret_cast<const __nv_bfloat16*>(row)[j]);
      if (d == ComputeDType::Int8) {
        float scale;
        std::memcpy(&scale, row + kv_q8_scale_offset(C, j / (C / NH)), 4);
        v = float(int8_t(row[j])) * scale;
      }
    }
  }
  return out;
}

// fp32 rows (cap, C), NaN rows unwritten, encoded as a ring in d.
HostRing encode_ring(const std::vector<float>& rows, ComputeDType d, int C, int NH) {
  const size_t row_bytes = kv_row_bytes(d, C, NH), n = rows.size() / C;
  HostRing r{std::vector<uint8_t>(n * row_bytes, 0xFF), std::vector<float>(rows.size(), NAN)};
  for (size_t i = 0; i < n; ++i)
    if (!std::isnan(rows[i * C])) encode_row(&rows[i * C], d, C, NH, &r.bytes[i * row_bytes], &r.values[i * C]);
  return r;
}

// Device rings (K and V) of cap rows in format d.
struct DeviceRings {
  DeviceBuffer<uint8_t> k, v;
  k::KvRings kv;
  DeviceRings(ComputeDType d, int cap, int C, int NH)
      : k(size_t(cap) * kv_row_bytes(d, C, NH)), v(size_t(cap) * kv_row_bytes(d, C, NH)),
        kv{k.get(), v.get(), d, C, NH} {
    k.poison();
    v.poison();
  }
  void upload(const HostRing& hk, const HostRing& hv) {
    CUDA_CHECK(cudaMemcpy(k.get(), hk.bytes.data(), hk.bytes.size(), cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(v.get(), hv.bytes.data(), hv.bytes.size(), cudaMemcpyHostToDevice));
  }
  static std::vector<uint8_t> bytes(const DeviceBuffer<uint8_t>& b) {
    std::vector<uint8_t> h(b.size());
    CUDA_CHECK(cudaDeviceSynchronize());
    CUDA_CHECK(cudaMemcpy(h.data(), b.get(), h.size(), cudaMemcpyDeviceToHost));
    return h;
  }
};

// Each format's NMSE against the fp32 values it stores, for N(0, 1) data, about 4x what cuda-emu
// measured (2026-12-08, this file's append test): fp16 4.4e-8, bf16 2.9e-6, int8 3.5e-5.
double format_tolerance(ComputeDType d) {
  switch (d) {
    case ComputeDType::F32: return 0;
    case ComputeDType::F16: return 1.8e-7;
    case ComputeDType::BF16: return 1.2e-5;
    case ComputeDType::Int8: return 1.4e-4;
  }
  return 0;
}

class KvFormats : public ::testing::TestWithParam<ComputeDType> {
 protected:
  void SetUp() override { GPT2_SKIP_WITHOUT_GPU(); }
  std::mt19937 rng{4321};
};

// The prefill's append: the ring's bytes are the host's encoding of cpu's (qkv + bias) rows.
TEST_P(KvFormats, AppendWritesTheFormatsBytesIntoAWrappingRing) {
  const ComputeDType d = GetParam();
  struct Case { int n, pos, start, cap, NH; };
  for (const Case& c : {Case{37, 60, 90, 128, 2}, Case{3, 5, 1022, 1024, 25}}) {
    const int C = c.NH * 64;
    const KvRing ring{c.cap, c.start};
    const auto bias = random_vector(size_t(3) * C, rng, 0.3f);
    const auto qkv = random_vector(size_t(c.n) * 3 * C, rng);  // fp32 compute: what the kernel reads
    DeviceBuffer<float> d_qkv(qkv.size()), d_bias(bias.size());
    d_qkv.upload(qkv);
    d_bias.upload(bias);
    DeviceRings dev(d, c.cap, C, c.NH);
    k::qkv_bias_kv_append<float>(d_qkv.get(), d_bias.get(), dev.kv, c.n, c.pos, ring, nullptr);
    std::vector<float> ref = qkv;
    for (int t = 0; t < c.n; ++t) cpu::residual_add(ref.data() + size_t(t) * 3 * C, bias.data(), 3 * C);
    std::vector<float> kr(size_t(c.cap) * C, NAN), vr(size_t(c.cap) * C, NAN);
    cpu::kv_append(kr.data(), vr.data(), ref.data(), c.n, c.pos, ring, C);
    const HostRing hk = encode_ring(kr, d, C, c.NH), hv = encode_ring(vr, d, C, c.NH);
    const auto gk = DeviceRings::bytes(dev.k), gv = DeviceRings::bytes(dev.v);
    EXPECT_TRUE(gk == hk.bytes) << "K ring bytes, n=" << c.n << " NH=" << c.NH;
    EXPECT_TRUE(gv == hv.bytes) << "V ring bytes, n=" << c.n << " NH=" << c.NH;
    // The format's own error against the fp32 values (written rows only).
    std::vector<float> stored, exact;
    const auto decoded = decode_ring(gk, d, C, c.NH);
    for (size_t i = 0; i < kr.size(); ++i)
      if (!std::isnan(kr[i])) stored.push_back(decoded[i]), exact.push_back(kr[i]);
    const double e = nmse(stored, exact);
    EXPECT_LE(e, format_tolerance(d)) << compute_dtype_name(d);
    std::printf("[ measure  ] %s K ring vs fp32: NMSE %.3g\n", compute_dtype_name(d), e);
  }
}

// Random K and V for positions [0, L) in a ring of cap rows (others unwritten), in format d.
struct RingData {
  std::vector<float> k, v;  // fp32 rows (cap, C), NaN where unwritten
  HostRing hk, hv;
  RingData(std::mt19937& rng, ComputeDType d, int L, const KvRing& ring, int C, int NH) {
    k.assign(size_t(ring.capacity) * C, NAN);
    v.assign(size_t(ring.capacity) * C, NAN);
    for (int p = 0; p < L; ++p) {
      const auto kk = random_vector(size_t(C), rng), vv = random_vector(size_t(C), rng);
      std::copy(kk.begin(), kk.end(), k.begin() + size_t(ring.slot(p)) * C);
      std::copy(vv.begin(), vv.end(), v.begin() + size_t(ring.slot(p)) * C);
    }
    hk = encode_ring(k, d, C, NH);
    hv = encode_ring(v, d, C, NH);
  }
};

// The decode step's fused qkv product writes the step's slot in the format (int8: through the
// fp32 staging and kv_store_staged); the slot's bytes are the host's encoding of cpu's values.
TEST_P(KvFormats, GemvQkvEpilogueWritesTheStepsSlot) {
  const ComputeDType d = GetParam();
  const int NH = 2, C = NH * 64, cap = 300;
  const KvRing ring{cap, 250};
  const auto w = rounded<__half>(random_vector(size_t(3) * C * C, rng, 0.1f));
  const auto in = random_vector(size_t(C), rng), b = random_vector(size_t(3) * C, rng, 0.2f);
  DeviceBuffer<__half> d_w(w.size());
  DeviceBuffer<float> d_in(in.size()), d_b(b.size()), d_out(static_cast<size_t>(C)), d_staged(size_t(2) * C);
  d_w.upload(w);
  d_in.upload(in);
  d_b.upload(b);
  k::StepParams step;
  step.pos = 77;
  step.ring = ring;
  DeviceBuffer<k::StepParams> d_step(1);
  CUDA_CHECK(cudaMemcpy(d_step.get(), &step, sizeof(step), cudaMemcpyHostToDevice));
  DeviceRings dev(d, cap, C, NH);
  k::GemvParams<__half> p;
  p.w = d_w.get();
  p.IC = C;
  p.OC = 3 * C;
  p.in = d_in.get();
  p.bias = d_b.get();
  p.out = d_out.get();
  p.epilogue = k::GemvEpilogue::Qkv;
  p.kv = dev.kv;
  p.kv_staged = d_staged.get();
  p.step = d_step.get();
  p.C = C;
  k::gemv<__half>(p, nullptr);
  if (d == ComputeDType::Int8) k::kv_store_staged(dev.kv, d_staged.get(), 1, d_step.get(), nullptr, cap, nullptr);
  std::vector<float> y(size_t(3) * C);
  cpu::matmul(y.data(), in.data(), w.data(), b.data(), 1, C, 3 * C);
  const size_t slot = size_t(ring.slot(step.pos)), row_bytes = kv_row_bytes(d, C, NH);
  const auto gk = decode_ring(DeviceRings::bytes(dev.k), d, C, NH), gv = decode_ring(DeviceRings::bytes(dev.v), d, C, NH);
  std::vector<uint8_t> want_row(row_bytes);
  std::vector<float> want(static_cast<size_t>(C));
  for (int kind = 0; kind < 2; ++kind) {
    encode_row(y.data() + (kind + 1) * C, d, C, NH, want_row.data(), want.data());
    const std::vector<float>& got = kind == 0 ? gk : gv;
    const std::vector<float> row(got.begin() + slot * C, got.begin() + (slot + 1) * C);
    // The device's sums differ from cpu::matmul's in rounding, so compare the decoded values: by
    // the format's error plus fp32 rounding (a wrong scale or slot is off by far more).
    EXPECT_LE(nmse(row, want), 1e-10 + 2 * format_tolerance(d)) << (kind ? "V" : "K") << " at slot " << slot;
    size_t written = 0;
    for (float x : got) written += !std::isnan(x);
    EXPECT_EQ(written, size_t(C)) << "only the step's slot is written";
  }
}

// The batched decode step's write path (--parallel): gemv_batch's Qkv epilogue (fp16 weights)
// for B = 10 rows (two tiles of kBatchTile), each a different sequence of 11 (one left out), in
// an order other than the sequences', rings starting anywhere (some wrap), then, for int8,
// kv_store_staged for the rows. The cache (11 x 16 rows) must hold exactly the host's encoding
// of each row's key and value at rows[b].seq * capacity + ring.slot(pos), and nothing else. The
// values encoded are the same gemv_batch's Store outputs (its sums are the Qkv ones: one
// epilogue function), themselves checked against cpu::matmul; so the bytes compare exactly.
TEST_P(KvFormats, GemvBatchQkvAndStoreStagedWriteEachRowsSlotOnly) {
  const ComputeDType d = GetParam();
  const int NH = 2, C = NH * 64, cap = 16, n_seqs = 11, B = 10;
  const std::vector<int> seq_of_row = {7, 0, 10, 3, 9, 1, 4, 8, 2, 6};  // sequence 5: untouched
  std::vector<k::BatchRow> rows;
  for (int b = 0; b < B; ++b) {
    const int seq = seq_of_row[size_t(b)];
    rows.push_back(k::BatchRow{seq, 0, (seq * 5) % 23, KvRing{cap, (seq * 7) % cap}});  // pos up to 22: wraps
  }
  const auto w = rounded<__half>(random_vector(size_t(3) * C * C, rng, 0.1f));
  const auto in = random_vector(size_t(B) * C, rng), bias = random_vector(size_t(3) * C, rng, 0.2f);
  DeviceBuffer<__half> d_w(w.size());
  DeviceBuffer<float> d_in(in.size()), d_bias(bias.size()), d_y(size_t(B) * 3 * C), d_q(size_t(B) * C),
      d_staged(size_t(B) * 2 * C);
  d_w.upload(w);
  d_in.upload(in);
  d_bias.upload(bias);
  d_staged.poison();
  DeviceBuffer<k::BatchRow> d_rows(rows.size());
  CUDA_CHECK(cudaMemcpy(d_rows.get(), rows.data(), rows.size() * sizeof(k::BatchRow), cudaMemcpyHostToDevice));
  DeviceRings dev(d, n_seqs * cap, C, NH);
  k::GemvBatchParams<__half> p;
  p.w = d_w.get();
  p.IC = C;
  p.OC = 3 * C;
  p.B = B;
  p.in = d_in.get();
  p.bias = d_bias.get();
  p.rows = d_rows.get();
  p.out = d_y.get();  // Store: y (B, 3C), the values the rings must encode
  k::gemv_batch<__half>(p, nullptr);
  p.out = d_q.get();
  p.epilogue = k::GemvEpilogue::Qkv;
  p.kv = dev.kv;
  p.kv_staged = d_staged.get();
  p.capacity = cap;
  p.C = C;
  k::gemv_batch<__half>(p, nullptr);
  if (d == ComputeDType::Int8) k::kv_store_staged(dev.kv, d_staged.get(), B, nullptr, d_rows.get(), cap, nullptr);
  const std::vector<float> y = d_y.download();
  std::vector<float> want_y(y.size());
  for (int b = 0; b < B; ++b)
    cpu::matmul(want_y.data() + size_t(b) * 3 * C, in.data() + size_t(b) * C, w.data(), bias.data(), 1, C, 3 * C);
  EXPECT_LE(nmse(y, want_y), 1e-10) << "gemv_batch's Store against cpu::matmul";
  std::vector<float> kr(size_t(n_seqs) * cap * C, NAN), vr(kr.size(), NAN);  // the cache's rows, NaN: unwritten
  for (int b = 0; b < B; ++b) {
    const size_t row = size_t(rows[size_t(b)].seq) * cap + size_t(rows[size_t(b)].ring.slot(rows[size_t(b)].pos));
    const float* yb = y.data() + size_t(b) * 3 * C;
    std::copy(yb + C, yb + 2 * C, kr.begin() + row * C);
    std::copy(yb + 2 * C, yb + 3 * C, vr.begin() + row * C);
  }
  EXPECT_TRUE(DeviceRings::bytes(dev.k) == encode_ring(kr, d, C, NH).bytes) << "K cache bytes";
  EXPECT_TRUE(DeviceRings::bytes(dev.v) == encode_ring(vr, d, C, NH).bytes) << "V cache bytes";
  const std::vector<float> q = d_q.download();  // the queries: y's first C of each row, bit for bit
  for (int b = 0; b < B; ++b)
    EXPECT_EQ(std::memcmp(q.data() + size_t(b) * C, y.data() + size_t(b) * 3 * C, size_t(C) * 4), 0) << "row " << b;
}

// The prefill attention (fp16 compute) reads the ring in its format: cpu::attention over the
// decoded ring, at odd sizes, wrapping, gpt2-xl's 25 heads (int8 rows of 1700 bytes).
TEST_P(KvFormats, AttentionPrefillReadsTheFormat) {
  const ComputeDType d = GetParam();
  struct Case { int n, pos, start, cap, NH; };
  for (const Case& c : {Case{37, 60, 90, 128, 2}, Case{65, 3, 1000, 1024, 25}}) {
    const int C = c.NH * 64;
    const KvRing ring{c.cap, c.start};
    RingData data(rng, d, c.pos + c.n, ring, C, c.NH);
    const auto qkv = rounded<__half>(random_vector(size_t(c.n) * 3 * C, rng));
    DeviceBuffer<__half> d_qkv(qkv.size()), d_out(size_t(c.n) * C);
    d_qkv.upload(qkv);
    d_out.poison();
    DeviceRings dev(d, c.cap, C, c.NH);
    dev.upload(data.hk, data.hv);
    k::attention_prefill<__half>(d_out.get(), d_qkv.get(), dev.kv, c.n, c.pos, ring, 64, 32, nullptr);
    std::vector<float> want(size_t(c.n) * C);
    cpu::attention(want.data(), qkv.data(), data.hk.values.data(), data.hv.values.data(), c.n, c.pos, ring, c.NH, 64);
    EXPECT_LE(nmse(d_out.download(), want), nmse_tolerance<__half>()) << "n=" << c.n << " NH=" << c.NH;
  }
}

// The three decode kernels (attention_decode, the attn1 variant, the batched one with two
// sequences) read the ring in its format: cpu::attention over the decoded ring, in fp32.
TEST_P(KvFormats, AttentionDecodeReadsTheFormat) {
  const ComputeDType d = GetParam();
  struct Case { int len, start, cap, NH; };
  for (const Case& c : {Case{100, 37, 100, 2}, Case{129, 1000, 1024, 25}}) {
    const int C = c.NH * 64, pos = c.len - 1;
    const KvRing ring{c.cap, c.start};
    RingData data(rng, d, c.len, ring, C, c.NH);
    const auto qkv = random_vector(size_t(3) * C, rng);
    const std::vector<float> q(qkv.begin(), qkv.begin() + C);
    std::vector<float> want(static_cast<size_t>(C));
    cpu::attention(want.data(), qkv.data(), data.hk.values.data(), data.hv.values.data(), 1, pos, ring, c.NH, 64);
    DeviceRings dev(d, c.cap, C, c.NH);
    dev.upload(data.hk, data.hv);
    DeviceBuffer<float> d_q(static_cast<size_t>(C)), d_out(static_cast<size_t>(C)), d_partials(k::attention_decode_partials(c.NH, c.cap));
    d_q.upload(q);
    DeviceBuffer<unsigned int> d_counters(static_cast<size_t>(c.NH));
    CUDA_CHECK(cudaMemset(d_counters.get(), 0, size_t(c.NH) * sizeof(unsigned int)));
    k::StepParams step;
    step.pos = pos;
    step.ring = ring;
    DeviceBuffer<k::StepParams> d_step(1);
    CUDA_CHECK(cudaMemcpy(d_step.get(), &step, sizeof(step), cudaMemcpyHostToDevice));
    for (auto launch : {k::attention_decode, k::attention_decode_one_round}) {
      d_out.poison();
      launch(d_out.get(), d_q.get(), dev.kv, d_step.get(), d_partials.get(), d_counters.get(), 64, c.cap, nullptr,
             false);
      EXPECT_LE(nmse(d_out.download(), want), 1e-10) << (launch == k::attention_decode ? "decode" : "attn1")
                                                      << " len=" << c.len << " NH=" << c.NH;
    }
    if (c.cap > 128) continue;  // the batched kernel: the small case (the emulator's time)
    // Two sequences: sequence 1's ring holds the data, sequence 0's rows are unwritten (poison).
    DeviceRings cache(d, 2 * c.cap, C, c.NH);
    const size_t ring_bytes = data.hk.bytes.size();
    CUDA_CHECK(cudaMemcpy(cache.k.get() + ring_bytes, data.hk.bytes.data(), ring_bytes, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(cache.v.get() + ring_bytes, data.hv.bytes.data(), ring_bytes, cudaMemcpyHostToDevice));
    std::vector<int> history(size_t(2) * c.cap, 1);
    DeviceBuffer<int> d_history(history.size());
    CUDA_CHECK(cudaMemcpy(d_history.get(), history.data(), history.size() * sizeof(int), cudaMemcpyHostToDevice));
    const k::BatchRow row{1, 0, pos, ring};
    DeviceBuffer<k::BatchRow> d_rows(1);
    CUDA_CHECK(cudaMemcpy(d_rows.get(), &row, sizeof(row), cudaMemcpyHostToDevice));
    d_out.poison();
    k::attention_decode_batch(d_out.get(), d_q.get(), cache.kv, d_rows.get(), 1, d_history.get(), d_partials.get(),
                              d_counters.get(), 64, c.cap, nullptr);
    EXPECT_LE(nmse(d_out.download(), want), 1e-10) << "batched len=" << c.len;
  }
}

INSTANTIATE_TEST_SUITE_P(AllFormats, KvFormats,
                         ::testing::Values(ComputeDType::F32, ComputeDType::F16, ComputeDType::BF16, ComputeDType::Int8),
                         [](const ::testing::TestParamInfo<ComputeDType>& i) { return compute_dtype_name(i.param); });

}  // namespace
}  // namespace gpt2
