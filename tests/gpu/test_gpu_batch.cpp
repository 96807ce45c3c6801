// The CUDA backend holding several sequences (--parallel, beam search) on the tiny golden GPT-2:
// batched decode steps give each row the logits a one-sequence CUDA backend gives it (bit for bit:
// the batched kernels run the one-row kernels' per-row sums) and the CPU backend's within the
// CPU-vs-CUDA tolerance; a mixed batch through generate_batch() generates what each request
// generates alone, on CUDA and on the CPU; reorder() makes a sequence continue another's
// history (the CPU backend's forward of that history is the reference); and make_backend() puts
// --parallel on the GPU. Label `gpu`: skips where no device is usable.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "app/backend_choice.h"
#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "engine/backend.h"
#include "engine/batch.h"
#include "engine/generator.h"
#include "gpu_test_util.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

constexpr double kFp32Tolerance = 1e-5;  // test_gpu_backend.cpp's fp32 CPU-vs-CUDA bound

class CudaBatch : public ::testing::Test {
 protected:
  void SetUp() override {
    GPT2_SKIP_WITHOUT_GPU();
    static const Model model = load_model(test::tiny_model("fp32"));
    model_ = &model;
  }
  std::unique_ptr<Backend> cuda(int n_seqs, ComputeDType dtype = ComputeDType::F32) const {
    BackendOptions o;
    o.device = Device::Cuda;
    o.dtype = dtype;
    o.n_seqs = n_seqs;
    return make_cuda_backend(*model_, o);
  }
  std::unique_ptr<Backend> cpu() const { return make_cpu_backend(*model_, BackendOptions{}); }
  std::vector<float> logits(Backend& b, int seq = 0) const {
    std::vector<float> v(size_t(model_->config.vocab_size));
    b.read_logits(v.data(), seq);
    return v;
  }
  // max |a - ref| / max |ref|
  static double rel_error(const std::vector<float>& a, const std::vector<float>& ref) {
    double d = 0, m = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      d = std::max(d, double(std::fabs(a[i] - ref[i])));
      m = std::max(m, double(std::fabs(ref[i])));
    }
    return d / m;
  }
  static bool bitwise(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  }
  const Model* model_ = nullptr;
  const std::vector<int> prompt_ = {2061, 318, 509, 53, 40918, 30};
};

// Sequences of different lengths, one in a wrapping ring, decoded in batches of 2 and 1 rows (the
// batched step replayed from its graphs in fp32, enqueued eagerly in fp16):
// every row's logits and greedy token are bitwise a one-sequence backend's (the decode graph's
// kernels), whatever else is in the step.
TEST_F(CudaBatch, EachRowsLogitsAreBitwiseItsOneSequenceLogits) {
  for (ComputeDType dtype : {ComputeDType::F32, ComputeDType::F16}) {
    const int S = 2;
    // fp32: the batched step's graphs; fp16: the same kernels enqueued each step.
    if (dtype == ComputeDType::F16) setenv("GPT2_CUDA_DECODE", "eager", 1);
    auto batch = cuda(S, dtype);
    unsetenv("GPT2_CUDA_DECODE");
    std::vector<std::unique_ptr<Backend>> alone;
    std::vector<SeqToken> rows;
    for (int s = 0; s < S; ++s) {
      alone.push_back(cuda(1, dtype));
      const std::vector<int> prompt(prompt_.begin(), prompt_.begin() + 2 + 2 * s);
      const int cap = batch->kv_capacity();
      const KvRing ring{cap, s == 1 ? cap - 5 : 0};  // sequence 1 wraps around its ring's end
      batch->forward(s, prompt.data(), int(prompt.size()), 0, ring);
      alone[size_t(s)]->forward(prompt.data(), int(prompt.size()), 0, ring);
      rows.push_back(SeqToken{s, 0, int(prompt.size()), ring});
    }
    const std::vector<std::vector<int>> steps = {{0, 1}, {1}, {1, 0}};  // which rows, in which order
    for (size_t step = 0; step < steps.size(); ++step) {
      std::vector<SeqToken> batch_rows;
      for (int s : steps[step]) {
        rows[size_t(s)].id = alone[size_t(s)]->sample(SamplingParams{}, 0.0);
        batch_rows.push_back(rows[size_t(s)]);
      }
      batch->decode_batch(batch_rows.data(), int(batch_rows.size()));
      for (int s : steps[step]) {
        SeqToken& t = rows[size_t(s)];
        alone[size_t(s)]->forward(&t.id, 1, t.pos, t.ring);
        EXPECT_TRUE(bitwise(logits(*batch, s), logits(*alone[size_t(s)])))
            << compute_dtype_name(dtype) << ": sequence " << s << " at step " << step << ", "
            << rel_error(logits(*batch, s), logits(*alone[size_t(s)]));
        EXPECT_EQ(batch->sample(s, SamplingParams{}, 0.0), alone[size_t(s)]->sample(SamplingParams{}, 0.0));
        ++t.pos;
      }
    }
  }
}

// A mixed batch (prompt lengths 1 to 6, 3 to 9 new tokens: requests finish at different steps,
// more requests than slots) through generate_batch(): each request's tokens are its solo run's
// on a one-sequence CUDA backend and on the CPU; and the logits of a batch row against the CPU.
TEST_F(CudaBatch, AMixedBatchGeneratesWhatEachRequestGeneratesAloneOnCudaAndTheCpu) {
  std::vector<BatchRequest> requests;
  for (int i = 0; i < 5; ++i) {
    BatchRequest r;
    r.prompt.assign(prompt_.begin(), prompt_.begin() + 1 + (i * 2) % 6);
    r.options.max_new_tokens = 3 + (i * 5) % 7;
    r.options.ignore_eos = true;
    r.options.sampling.temperature = 0;
    if (i == 3) r.options.sampling.penalties = {1.3f, 0, 0.5f, 0.2f, 2};  // the processors per row
    requests.push_back(r);
  }
  BackendOptions o;  // through make_backend(): --device cuda --parallel 3 gets the GPU
  o.device = Device::Cuda;
  o.dtype = ComputeDType::F32;
  o.n_seqs = 3;
  auto batch = make_backend(*model_, o, nullptr);
  ASSERT_EQ(batch->info().device, "cuda");
  std::vector<GenerationResult> got(requests.size());
  size_t next = 0;
  BatchEvents ev;
  ev.next = [&](BatchRequest& r) {
    if (next == requests.size()) return false;
    r = requests[next++];
    return true;
  };
  ev.on_token = [](int, int) { return true; };
  ev.on_finish = [&](int id, GenerationResult& r) { got[size_t(id)] = r; };
  const BatchStats stats = generate_batch(*batch, ev);
  EXPECT_EQ(stats.requests, 5);
  EXPECT_EQ(stats.max_rows, 3);
  auto solo_cuda = cuda(1);
  auto solo_cpu = cpu();
  for (size_t i = 0; i < requests.size(); ++i) {
    const auto on_cuda = generate(*solo_cuda, requests[i].prompt, requests[i].options, nullptr);
    const auto on_cpu = generate(*solo_cpu, requests[i].prompt, requests[i].options, nullptr);
    EXPECT_EQ(got[i].generated, on_cuda.generated) << "request " << i;
    EXPECT_EQ(got[i].generated, on_cpu.generated) << "request " << i;
    EXPECT_EQ(int(got[i].generated.size()), requests[i].options.max_new_tokens);
  }
}

// Beam search's reorder on CUDA, against the CPU backend's forward of the history it names:
// sequences 0 and 1 hold different prompts of one length; reorder {1, 1}: both continue
// sequence 1's history; {1, 0}: they swap. The next batched decode (and a two-token forward()
// after it, which reads through the table one token at a time) gives each row the logits of a
// solo sequence whose context is its parent's prompt plus the new tokens.
TEST_F(CudaBatch, ReorderContinuesTheParentsHistoryWithoutCopyingKV) {
  const std::vector<std::vector<int>> prompt = {{2061, 318, 509, 53}, {464, 3290, 11, 40918}};
  const int P = 4, cap = model_->config.n_positions;
  const KvRing ring{cap, 0};
  auto reference = [&](const std::vector<int>& context) {  // the CPU's logits after `context`
    auto c = cpu();
    c->forward(context.data(), int(context.size()), 0, ring);
    return logits(*c);
  };
  for (const std::vector<int>& parent : {std::vector<int>{1, 1}, std::vector<int>{1, 0}}) {
    auto b = cuda(2);
    for (int s = 0; s < 2; ++s) b->forward(s, prompt[size_t(s)].data(), P, 0, ring);
    b->reorder(parent.data(), 2, P);
    const SeqToken rows[2] = {{0, 198, P, ring}, {1, 262, P, ring}};
    b->decode_batch(rows, 2);
    std::vector<std::vector<int>> context(2);
    for (int s = 0; s < 2; ++s) {
      context[size_t(s)] = prompt[size_t(parent[size_t(s)])];
      context[size_t(s)].push_back(rows[s].id);
      EXPECT_LT(rel_error(logits(*b, s), reference(context[size_t(s)])), kFp32Tolerance)
          << "parent {" << parent[0] << ", " << parent[1] << "}, sequence " << s;
    }
    const int more[2] = {1110, 373};  // positions P + 1 and P + 2 of sequence 0: its own ring
    b->forward(0, more, 2, P + 1, ring);
    context[0].insert(context[0].end(), more, more + 2);
    EXPECT_LT(rel_error(logits(*b, 0), reference(context[0])), kFp32Tolerance)
        << "parent {" << parent[0] << ", " << parent[1] << "}, after a forward of two tokens";
    auto c = cpu();
    c->forward(context[0].data(), int(context[0].size()), 0, ring);
    EXPECT_EQ(b->sample(0, SamplingParams{}, 0.0), c->sample(SamplingParams{}, 0.0));
  }
}

// Memory is planned for every sequence: the K/V bytes grow n_seqs-fold; int8 stays the CPU's.
TEST_F(CudaBatch, KvBytesHoldEverySequence) {
  const GPT2Config& c = model_->config;
  const size_t one = cuda(1, ComputeDType::F16)->info().kv_bytes;
  EXPECT_GE(one, size_t(2) * c.n_layer * c.n_positions * c.n_embd * 2);
  EXPECT_EQ(cuda(3, ComputeDType::F16)->info().kv_bytes, 3 * one);
  BackendOptions o;
  o.device = Device::Cuda;
  o.n_seqs = 2;
  o.dtype = ComputeDType::Int8;
  EXPECT_THROW(make_backend(*model_, o, nullptr), Error);  // int8 stays the CPU's
}

}  // namespace
}  // namespace gpt2
