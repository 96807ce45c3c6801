// The CUDA backend with each K/V ring format (BackendOptions::kv_dtype; engine/kv_format.h), on
// the tiny golden GPT-2: cache and --no-cache give the same greedy tokens across a context
// shift in every format; the logits of each format stay within its tolerance of fp32 K/V (fp32
// compute), and the CPU backend's (fp32 K/V) within it too; info() reports the format and its
// bytes; bf16 K/V is refused where bf16 is; with several sequences (--parallel) int8 K/V gives
// each batched row its one-sequence logits. Label `gpu`: skips where no device is usable.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "engine/kv_format.h"
#include "golden.h"
#include "gpu_test_util.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

std::unique_ptr<Backend> cuda_backend(const Model& m, ComputeDType dtype, ComputeDType kv, int capacity = 0) {
  BackendOptions o;
  o.device = Device::Cuda;
  o.dtype = dtype;
  o.kv_dtype = kv;
  o.kv_capacity = capacity;
  return make_cuda_backend(m, o);
}

// max |logit - ref| / max |ref| against fp32 K/V (fp32 compute), over the prompt's last logits
// and 4 teacher-forced decode steps, measured on cuda-emu (tiny golden, 2026-12-08): fp32 0,
// fp16 3.2e-4, bf16 3.1e-3, int8 9.8e-3 (mean NMSE 6.6e-8, 5.2e-6, 5.7e-5); about 4x each. (The tiny model's logits are small and
// its attention nearly uniform, so these say little about GPT-2 124M: tools/gpu_check.sh
// measures that on a GPU.)
double logits_tolerance(ComputeDType kv) {
  switch (kv) {
    case ComputeDType::F32: return 1e-6;
    case ComputeDType::F16: return 1.3e-3;
    case ComputeDType::BF16: return 1.2e-2;
    case ComputeDType::Int8: return 4e-2;
  }
  return 0;
}

class CudaKvFormat : public ::testing::TestWithParam<ComputeDType> {
 protected:
  void SetUp() override {
    GPT2_SKIP_WITHOUT_GPU();
    std::string why;
    if (!cuda_dtype_supported(GetParam(), &why)) GTEST_SKIP() << why;  // bf16 K/V: as bf16 compute
    model_ = std::make_unique<Model>(load_model(test::tiny_model("fp32")));
  }
  // The logits after the prompt and after each of `tokens` fed one by one (decode steps).
  std::vector<std::vector<float>> teacher_forced(Backend& b) {
    const KvRing ring{b.kv_capacity(), 0};
    const int V = model_->config.vocab_size;
    std::vector<std::vector<float>> out;
    b.forward(prompt_.data(), int(prompt_.size()), 0, ring);
    for (size_t i = 0; i <= tokens_.size(); ++i) {
      out.emplace_back(size_t(V));
      b.read_logits(out.back().data());
      if (i < tokens_.size()) b.forward(&tokens_[i], 1, int(prompt_.size() + i), ring);
    }
    return out;
  }
  std::unique_ptr<Model> model_;
  const std::vector<int> prompt_ = {2061, 318, 509, 53, 40918, 30};
  const std::vector<int> tokens_ = {262, 1266, 286, 13};
};

// Greedy, a 12-slot ring (6 prompt tokens + 8: a shift at the 13th, then the rows path over a
// wrapped ring and decode steps after it): the cache (decode graph, reading the ring in the
// format) and --no-cache (recomputing in the same format) give the same tokens. (Few tokens:
// every emulated decode step runs the 50257-row LM head.)
TEST_P(CudaKvFormat, CacheAndNoCacheAgreeAcrossAContextShift) {
  auto b = cuda_backend(*model_, ComputeDType::F16, GetParam(), 12);
  GenerationOptions opt;
  opt.max_new_tokens = 8;
  opt.context_shift = true;
  opt.ignore_eos = true;
  opt.sampling.temperature = 0.0f;
  const auto cached = generate(*b, prompt_, opt, nullptr);
  opt.use_cache = false;
  const auto uncached = generate(*b, prompt_, opt, nullptr);
  EXPECT_GE(cached.context_shifts, 1);
  EXPECT_EQ(cached.generated, uncached.generated);
}

// Each format's logits against fp32 K/V (fp32 compute both), and against the CPU backend.
TEST_P(CudaKvFormat, LogitsStayWithinTheFormatsToleranceOfFp32Kv) {
  auto ref_backend = cuda_backend(*model_, ComputeDType::F32, ComputeDType::F32);
  auto b = cuda_backend(*model_, ComputeDType::F32, GetParam());
  auto cpu = make_cpu_backend(*model_, BackendOptions{});
  const auto ref = teacher_forced(*ref_backend), got = teacher_forced(*b), on_cpu = teacher_forced(*cpu);
  double worst = 0, worst_cpu = 0, nmse_sum = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    worst = std::max(worst, test::max_rel_error(got[i].data(), ref[i].data(), ref[i].size()));
    worst_cpu = std::max(worst_cpu, test::max_rel_error(got[i].data(), on_cpu[i].data(), ref[i].size()));
    nmse_sum += test::nmse(got[i], ref[i]);
  }
  std::printf("[ measure  ] K/V %s vs fp32 K/V: logits max rel error %.3g, mean NMSE %.3g; vs CPU %.3g\n",
              compute_dtype_name(GetParam()), worst, nmse_sum / double(ref.size()), worst_cpu);
  EXPECT_LE(worst, logits_tolerance(GetParam()));
  EXPECT_LE(worst_cpu, logits_tolerance(GetParam()) + 1e-5);  // + fp32's own CUDA-vs-CPU tolerance
}

TEST_P(CudaKvFormat, InfoReportsTheFormatAndItsBytes) {
  const int cap = 40;
  auto b = cuda_backend(*model_, ComputeDType::F16, GetParam(), cap);
  const GPT2Config& c = model_->config;
  const size_t row = kv_row_bytes(GetParam(), c.n_embd, c.n_head);
  EXPECT_EQ(b->info().kv_dtype, GetParam());
  EXPECT_EQ(b->kv_row_bytes(), row);
  const size_t ring = (size_t(cap) * row + 255) / 256 * 256;  // each ring 256-byte aligned in the arena
  EXPECT_EQ(b->info().kv_bytes, size_t(2) * c.n_layer * ring);
}

INSTANTIATE_TEST_SUITE_P(AllFormats, CudaKvFormat,
                         ::testing::Values(ComputeDType::F32, ComputeDType::F16, ComputeDType::BF16, ComputeDType::Int8),
                         [](const ::testing::TestParamInfo<ComputeDType>& i) { return compute_dtype_name(i.param); });

// --parallel with int8 K/V (fp16 compute): 3 sequences of different lengths, one wrapping its
// ring, decoded in batched steps of 3, 2 and 1 rows in changing orders (the int8 write: the Qkv
// epilogue's staging and kv_store_staged by rows): every row's logits are bitwise those of a
// one-sequence backend with int8 K/V fed the same tokens (the batched kernels run the one-row
// kernels' per-row sums and the same quantisation), and within int8's tolerance of the CPU
// backend (fp32 K/V). The 2063-token model: the emulator's decode steps are the cost.
TEST(CudaKvBatch, Int8RowsGetTheirOneSequenceLogits) {
  GPT2_SKIP_WITHOUT_GPU();
  const Model m = load_model(test::small_vocab_model());
  const int S = 3, V = m.config.vocab_size;
  BackendOptions o;
  o.device = Device::Cuda;
  o.dtype = ComputeDType::F16;
  o.kv_dtype = ComputeDType::Int8;
  o.n_seqs = S;
  auto batch = make_cuda_backend(m, o);
  o.n_seqs = 1;
  auto cpu = make_cpu_backend(m, BackendOptions{});
  const std::vector<int> prompt = {2061, 318, 509, 53, 1918, 30}, fed = {262, 1266, 286, 13};
  std::vector<std::unique_ptr<Backend>> alone;
  std::vector<SeqToken> rows;
  const int cap = batch->kv_capacity();
  for (int s = 0; s < S; ++s) {
    alone.push_back(make_cuda_backend(m, o));
    const KvRing ring{cap, s == 1 ? cap - 4 : 0};  // sequence 1 wraps around its ring's end
    const int n = 2 + 2 * s;
    batch->forward(s, prompt.data(), n, 0, ring);
    alone.back()->forward(prompt.data(), n, 0, ring);
    rows.push_back(SeqToken{s, 0, n, ring});
  }
  std::vector<float> got(static_cast<size_t>(V)), want(got.size()), on_cpu(got.size());
  const std::vector<std::vector<int>> steps = {{2, 0, 1}, {1, 2}, {0}, {0, 2, 1}};  // rows, in order
  for (size_t step = 0; step < steps.size(); ++step) {
    std::vector<SeqToken> batch_rows;
    for (int s : steps[step]) {
      rows[size_t(s)].id = fed[(step + size_t(s)) % fed.size()];
      batch_rows.push_back(rows[size_t(s)]);
    }
    batch->decode_batch(batch_rows.data(), int(batch_rows.size()));
    for (int s : steps[step]) {
      SeqToken& t = rows[size_t(s)];
      alone[size_t(s)]->forward(&t.id, 1, t.pos, t.ring);
      batch->read_logits(got.data(), s);
      alone[size_t(s)]->read_logits(want.data());
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
          << "sequence " << s << " at step " << step << ": max rel error "
          << test::max_rel_error(got.data(), want.data(), got.size());
      ++t.pos;
    }
  }
  // The last row's history on the CPU (fp32 K/V, unwrapped ring): int8's tolerance.
  const SeqToken& last = rows[1];
  std::vector<int> history(prompt.begin(), prompt.begin() + 4);
  for (size_t step = 0; step < steps.size(); ++step)
    for (int s : steps[step])
      if (s == 1) history.push_back(fed[(step + 1) % fed.size()]);
  ASSERT_EQ(int(history.size()), last.pos);
  cpu->forward(history.data(), int(history.size()), 0, KvRing{cpu->kv_capacity(), 0});
  cpu->read_logits(on_cpu.data());
  batch->read_logits(got.data(), 1);
  EXPECT_LE(test::max_rel_error(got.data(), on_cpu.data(), got.size()), logits_tolerance(ComputeDType::Int8) + 7e-3)
      << "int8's tolerance + fp16 compute's own (test_gpu_backend.cpp's 7e-3)";
}

// Unset kv_dtype: the rings hold the compute dtype, as before.
TEST(CudaKvDefault, UnsetKvDtypeIsTheComputeDtype) {
  GPT2_SKIP_WITHOUT_GPU();
  const Model m = load_model(test::tiny_model("fp32"));
  BackendOptions o;
  o.device = Device::Cuda;
  o.dtype = ComputeDType::F32;
  EXPECT_EQ(make_cuda_backend(m, o)->info().kv_dtype, ComputeDType::F32);
  o.dtype.reset();
  EXPECT_EQ(make_cuda_backend(m, o)->info().kv_dtype, ComputeDType::F16);
}

}  // namespace
}  // namespace gpt2
