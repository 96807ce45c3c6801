// Batched generation (engine/batch.h) on the CPU backend and the tiny golden model: a request's
// tokens do not depend on the batch (its solo generate() run is the reference), decode_batch()'s
// logits are bitwise the one-sequence forward()'s in fp32, slots are refilled as requests end,
// and Ctrl-C or a caller's stop ends requests cleanly.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <string>

#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "engine/batch.h"
#include "engine/generator.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

const std::vector<int> kPrompt = {2061, 318, 509, 53, 40918, 30};

class Batch : public ::testing::Test {
 protected:
  void SetUp() override {
    static const Model model = load_model(test::tiny_model("fp32"));
    model_ = &model;
  }
  std::unique_ptr<Backend> backend(int n_seqs, std::optional<ComputeDType> dtype = {}) const {
    BackendOptions o;
    o.n_seqs = n_seqs;
    o.dtype = dtype;
    return make_cpu_backend(*model_, o);
  }
  GenerationResult solo(const BatchRequest& r) const {
    auto b = backend(1);
    return generate(*b, r.prompt, r.options, nullptr);
  }
  // The requests through generate_batch() on `parallel` slots, in `order`; results by request.
  std::vector<GenerationResult> batched(const std::vector<BatchRequest>& requests, int parallel,
                                        std::vector<int> order, BatchStats* stats = nullptr) const {
    auto b = backend(parallel);
    std::vector<GenerationResult> results(requests.size());
    size_t next = 0;
    BatchEvents ev;
    ev.next = [&](BatchRequest& r) {
      if (next == order.size()) return false;
      r = requests[size_t(order[next++])];
      return true;
    };
    ev.on_token = [](int, int) { return true; };
    ev.on_finish = [&](int id, GenerationResult& r) { results[size_t(order[size_t(id)])] = r; };
    const BatchStats s = generate_batch(*b, ev);
    if (stats) *stats = s;
    return results;
  }
  static GenerationOptions greedy(int n) {
    GenerationOptions o;
    o.max_new_tokens = n;
    o.ignore_eos = true;
    o.sampling.temperature = 0;
    return o;
  }
  const Model* model_ = nullptr;
};

// Different prompt lengths, settings and stop rules, finishing at different steps.
std::vector<BatchRequest> mixed_requests() {
  std::vector<BatchRequest> r(8);
  r[0] = {kPrompt, {}};
  r[0].options.max_new_tokens = 20, r[0].options.ignore_eos = true, r[0].options.sampling.temperature = 0;
  r[1] = r[0], r[1].prompt = {50256}, r[1].options.max_new_tokens = 5;
  r[2] = r[0], r[2].prompt.clear();
  for (int i = 0; i < 31; ++i) r[2].prompt.push_back((i * 7919 + 13) % 50257);
  r[2].options.sampling = SamplingParams{0.9f, 40, 0.9f}, r[2].options.seed = 7, r[2].options.max_new_tokens = 17;
  r[3] = r[0], r[3].options.max_new_tokens = 12;
  r[3].options.sampling.penalties = {1.3f, 0, 0.5f, 0.2f, 2};
  r[4] = r[0], r[4].options.context_shift = true, r[4].options.max_new_tokens = 130;  // 128 positions: shifts
  r[5] = r[0], r[5].options.use_cache = false, r[5].options.max_new_tokens = 9;
  r[6] = r[0], r[6].options.ignore_eos = false;  // its EOS id is set from its solo run below
  r[7] = r[2], r[7].prompt = {464, 3290}, r[7].options.seed = 11, r[7].options.sampling.min_p = 0.05f;
  r[7].options.max_new_tokens = 8;
  return r;
}

void expect_same(const GenerationResult& got, const GenerationResult& want, const std::string& what) {
  EXPECT_EQ(got.generated, want.generated) << what;
  EXPECT_EQ(finish_reason_name(got.finish), std::string(finish_reason_name(want.finish))) << what;
  EXPECT_EQ(got.context_shifts, want.context_shifts) << what;
  EXPECT_EQ(got.forwards, want.forwards) << what;
}

TEST_F(Batch, EachRequestGeneratesWhatItGeneratesAlone) {
  std::vector<BatchRequest> requests = mixed_requests();
  // Request 6 ends at EOS: the token its solo run generates fourth is made its EOS id.
  requests[6].options.eos_id = solo(requests[0]).generated[3];
  std::vector<GenerationResult> want;
  for (const BatchRequest& r : requests) want.push_back(solo(r));
  ASSERT_EQ(finish_reason_name(want[6].finish), std::string("eos"));
  ASSERT_GT(want[4].context_shifts, 0);

  const std::vector<int> forward_order = {0, 1, 2, 3, 4, 5, 6, 7}, reverse = {7, 6, 5, 4, 3, 2, 1, 0},
                         shuffled = {3, 6, 0, 7, 1, 4, 2, 5};
  const std::vector<std::pair<int, std::vector<int>>> runs = {
      {1, forward_order}, {3, reverse}, {3, shuffled}, {8, forward_order}, {8, shuffled}};
  for (const auto& [parallel, order] : runs) {
    {
      BatchStats stats;
      const auto got = batched(requests, parallel, order, &stats);
      for (size_t i = 0; i < requests.size(); ++i)
        expect_same(got[i], want[i], "request " + std::to_string(i) + ", --parallel " + std::to_string(parallel) +
                                         ", order starting " + std::to_string(order[0]));
      EXPECT_EQ(stats.requests, 8);
      EXPECT_LE(stats.max_rows, parallel);
      if (parallel > 1) {
        EXPECT_GT(stats.max_rows, 1) << "the decode steps never held two sequences";
      }
    }
  }
}

// decode_batch() against forward() on a one-sequence backend, step by step: the logits of every
// row are bitwise the same, with sequences at different positions and a wrapping ring.
TEST_F(Batch, DecodeBatchLogitsAreBitwiseTheSoloForwardLogits) {
  for (auto dtype : {ComputeDType::F32, ComputeDType::F16, ComputeDType::Int8}) {
    const int B = 5, V = model_->config.vocab_size;
    auto batch = backend(B, dtype);
    std::vector<std::unique_ptr<Backend>> alone;
    std::vector<SeqToken> rows;
    for (int s = 0; s < B; ++s) {
      alone.push_back(backend(1, dtype));
      const std::vector<int> prompt(kPrompt.begin(), kPrompt.begin() + 1 + s);
      const KvRing ring{batch->kv_capacity(), (batch->kv_capacity() - 4 + s) % batch->kv_capacity()};  // wraps
      batch->forward(s, prompt.data(), int(prompt.size()), 0, ring);
      alone[size_t(s)]->forward(prompt.data(), int(prompt.size()), 0, ring);
      rows.push_back(SeqToken{s, 0, int(prompt.size()), ring});
    }
    std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
    for (int step = 0; step < 6; ++step) {
      const int n = step % 2 ? B : B - 2;  // not every sequence in every step
      for (int r = 0; r < n; ++r) rows[size_t(r)].id = alone[size_t(rows[size_t(r)].seq)]->sample(SamplingParams{}, 0.0);
      batch->decode_batch(rows.data(), n);
      for (int r = 0; r < n; ++r) {
        SeqToken& t = rows[size_t(r)];
        alone[size_t(t.seq)]->forward(&t.id, 1, t.pos, t.ring);
        batch->read_logits(a.data(), t.seq);
        alone[size_t(t.seq)]->read_logits(b.data());
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
            << compute_dtype_name(dtype) << ": sequence " << t.seq << " at step " << step;
        EXPECT_EQ(batch->sample(t.seq, SamplingParams{}, 0.0), alone[size_t(t.seq)]->sample(SamplingParams{}, 0.0));
        ++t.pos;
      }
    }
  }
}

// prefill_batch() against forward() on one-sequence backends: chunks of 5, 16 (the longest
// that runs as rows), 20 (runs alone) and 1 tokens, after histories of 0, 7, 3 and 0 tokens in
// wrapping rings: every chunk's logits are bitwise the solo forward()'s.
TEST_F(Batch, PrefillBatchLogitsAreBitwiseTheSoloForwardLogits) {
  const std::vector<int> history = {0, 7, 3, 0}, lengths = {5, 16, 20, 1};
  const std::vector<int> ids = test::seeded_tokens(64, 5);
  for (auto dtype : {ComputeDType::F32, ComputeDType::F16, ComputeDType::Int8}) {
    const int B = int(history.size()), V = model_->config.vocab_size;
    auto batch = backend(B, dtype);
    std::vector<std::unique_ptr<Backend>> alone;
    std::vector<SeqChunk> chunks;
    for (int s = 0; s < B; ++s) {
      alone.push_back(backend(1, dtype));
      const KvRing ring{batch->kv_capacity(), (batch->kv_capacity() - 9 + 2 * s) % batch->kv_capacity()};  // wraps
      const int* h = ids.data() + 8 * s;
      if (history[size_t(s)] > 0) {
        batch->forward(s, h, history[size_t(s)], 0, ring);
        alone[size_t(s)]->forward(h, history[size_t(s)], 0, ring);
      }
      chunks.push_back(SeqChunk{s, h + history[size_t(s)], lengths[size_t(s)], history[size_t(s)], ring});
    }
    batch->prefill_batch(chunks.data(), B);
    std::vector<float> a(static_cast<size_t>(V)), b(static_cast<size_t>(V));
    for (const SeqChunk& c : chunks) {
      alone[size_t(c.seq)]->forward(c.ids, c.n, c.pos, c.ring);
      batch->read_logits(a.data(), c.seq);
      alone[size_t(c.seq)]->read_logits(b.data());
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
          << compute_dtype_name(dtype) << ": sequence " << c.seq << ", " << c.n << " tokens at " << c.pos;
      EXPECT_EQ(batch->sample(c.seq, SamplingParams{}, 0.0), alone[size_t(c.seq)]->sample(SamplingParams{}, 0.0));
    }
  }
}

// prefill_batch() checks its chunks once for every backend, as forward() and decode_batch() do.
TEST_F(Batch, PrefillBatchRefusesASequenceTwiceAndChunksThatDoNotFit) {
  auto b = backend(2);
  const KvRing ring{b->kv_capacity(), 0};
  const SeqChunk twice[] = {{1, kPrompt.data(), 2, 0, ring}, {1, kPrompt.data(), 2, 2, ring}};
  EXPECT_THROW(b->prefill_batch(twice, 2), Error);
  const SeqChunk too_long[] = {{0, kPrompt.data(), 2, b->context_window() - 1, ring}};
  EXPECT_THROW(b->prefill_batch(too_long, 1), Error);
  const SeqChunk three[] = {{0, kPrompt.data(), 1, 0, ring}, {1, kPrompt.data(), 1, 0, ring},
                            {0, kPrompt.data(), 1, 1, ring}};
  EXPECT_THROW(b->prefill_batch(three, 3), Error);  // more chunks than sequences
}

TEST_F(Batch, AFinishedRequestsSlotTakesTheNextRequestAtOnce) {
  auto b = backend(2);
  const std::vector<int> lengths = {3, 10, 4, 6, 2};
  std::vector<std::string> events;
  size_t next = 0;
  BatchEvents ev;
  ev.next = [&](BatchRequest& r) {
    if (next == lengths.size()) return false;
    r = {kPrompt, greedy(lengths[next])};
    events.push_back("start " + std::to_string(next++));
    return true;
  };
  ev.on_token = [](int, int) { return true; };
  ev.on_finish = [&](int id, GenerationResult& r) {
    EXPECT_EQ(int(r.generated.size()), lengths[size_t(id)]);
    events.push_back("finish " + std::to_string(id));
  };
  const BatchStats stats = generate_batch(*b, ev);
  EXPECT_EQ(stats.requests, 5);
  EXPECT_EQ(stats.max_rows, 2);
  auto at = [&](const std::string& e) { return std::find(events.begin(), events.end(), e) - events.begin(); };
  // Request 2 starts when request 0 ends, while request 1 (10 tokens) is still running; then
  // request 3 in request 2's slot, and request 4 in request 1's, while request 3 runs.
  EXPECT_EQ(at("start 2"), at("finish 0") + 1);
  EXPECT_EQ(at("start 3"), at("finish 2") + 1);
  EXPECT_LT(at("start 3"), at("finish 1"));
  EXPECT_EQ(at("start 4"), at("finish 1") + 1);
  EXPECT_LT(at("start 4"), at("finish 3"));
  EXPECT_EQ(events.size(), 10u);
}

TEST_F(Batch, ACallersStopEndsOneRequestAndCtrlCEndsTheBatch) {
  auto b = backend(3);
  std::atomic<bool> stop{false};
  std::map<int, GenerationResult> results;
  int started = 0, tokens_of_1 = 0;
  BatchEvents ev;
  ev.next = [&](BatchRequest& r) {
    if (started == 6) return false;
    r = {kPrompt, greedy(40)};
    ++started;
    return true;
  };
  ev.on_token = [&](int id, int) {
    if (id == 1 && ++tokens_of_1 == 3) return false;  // e.g. a stop string matched
    if (id == 3 && results.count(1)) stop = true;     // Ctrl-C, later
    return true;
  };
  ev.on_finish = [&](int id, GenerationResult& r) { results[id] = r; };
  generate_batch(*b, ev, &stop);
  EXPECT_EQ(results[1].finish, FinishReason::Interrupted);
  EXPECT_EQ(results[1].generated.size(), 3u);
  EXPECT_EQ(started, 4) << "request 3 took request 1's slot; nothing started after Ctrl-C";
  for (int id : {0, 2, 3}) {
    EXPECT_EQ(results[id].finish, FinishReason::Interrupted) << id;
    EXPECT_LT(results[id].generated.size(), 40u) << id;
  }
}

}  // namespace
}  // namespace gpt2
