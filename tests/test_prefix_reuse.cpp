// Shared prefixes in a batch (engine/batch.h, engine/held_prefixes.h, Backend::copy_kv()) on the
// tiny golden model: every request generates its solo generate() run's tokens, a reused prefix
// gives bitwise the logits of a solo run split at the same point, and the reused counts are the
// ones worked out below from how the prompts were built (not from the scheduler): the cap at the
// prompt's length - 1, generated tokens held too, nothing across a context shift, nothing under
// --no-cache, nothing with reuse off. Built twice: on the CPU backend (test_prefix_reuse) and on
// the emulated CUDA device (test_prefix_reuse_emu, GPT2_TEST_CUDA_EMU: the default copy_kv()
// through read_kv()/write_kv()).
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "engine/batch.h"
#include "engine/generator.h"
#include "engine/held_prefixes.h"
#include "model/model.h"
#include "test_support.h"
#ifdef GPT2_TEST_CUDA_EMU
#include "cuda/backend_cuda.h"
#endif

namespace gpt2 {
namespace {

const Model& tiny() {
  static const Model model = load_model(test::tiny_model("fp32"));
  return model;
}

std::unique_ptr<Backend> make(int n_seqs) {
  BackendOptions o;
  o.dtype = ComputeDType::F32;
  o.n_seqs = n_seqs;
#ifdef GPT2_TEST_CUDA_EMU
  return make_cuda_backend(tiny(), o);
#else
  return make_cpu_backend(tiny(), o);
#endif
}

std::vector<int> concat(std::vector<int> a, const std::vector<int>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const std::vector<int> kPrefix = test::seeded_tokens(20, 1);  // the shared prefix: 20 tokens

GenerationOptions greedy(int n) {
  GenerationOptions o;
  o.max_new_tokens = n;
  o.ignore_eos = true;
  o.sampling.temperature = 0;
  return o;
}

GenerationResult solo(const BatchRequest& r) {
  auto b = make(1);
  return generate(*b, r.prompt, r.options, nullptr);
}

struct BatchOutcome {
  std::vector<GenerationResult> results;  // by request
  BatchStats stats;
};

// The requests in order through generate_batch() on `parallel` slots. `on_token`, if set, also
// sees each token (with the backend, to read a slot's logits).
BatchOutcome batched(const std::vector<BatchRequest>& requests, int parallel, BatchOptions options = {},
                     const std::function<void(Backend&, int id, int token)>& on_token = {}) {
  auto b = make(parallel);
  BatchOutcome out;
  out.results.resize(requests.size());
  size_t next = 0;
  BatchEvents ev;
  ev.next = [&](BatchRequest& r) {
    if (next == requests.size()) return false;
    r = requests[next++];
    return true;
  };
  ev.on_token = [&](int id, int token) {
    if (on_token) on_token(*b, id, token);
    return true;
  };
  ev.on_finish = [&](int id, GenerationResult& r) { out.results[size_t(id)] = r; };
  out.stats = generate_batch(*b, ev, nullptr, options);
  return out;
}

// Each request's tokens are its solo run's; its prefill started after `reused[i]` positions; the
// stats add them up.
void expect_outcome(const BatchOutcome& got, const std::vector<BatchRequest>& requests,
                    const std::vector<int>& reused, const std::string& what) {
  long want_reused = 0, want_computed = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    const GenerationResult want = solo(requests[i]);
    EXPECT_EQ(got.results[i].generated, want.generated) << what << ": request " << i;
    ASSERT_FALSE(got.results[i].forwards.empty()) << what << ": request " << i;
    EXPECT_EQ(got.results[i].forwards.front().pos, reused[i]) << what << ": request " << i << "'s reused prefix";
    want_reused += reused[i];
    want_computed += long(requests[i].prompt.size()) - reused[i];
  }
  EXPECT_EQ(got.stats.prompt_tokens_reused, want_reused) << what;
  EXPECT_EQ(got.stats.prompt_tokens_computed, want_computed) << what;
}

// Requests admitted in one fill see the ones before them; a prompt that is all of another's is
// capped at its length - 1; a prompt that is the shared prefix itself; a 15-token overlap (below
// kMinReusedPrefix = 16) and an unrelated prompt reuse nothing; a sampled request too.
TEST(PrefixReuse, SharedPrefixRequestsGenerateTheirSoloTokens) {
  const std::vector<int> a = concat(kPrefix, test::seeded_tokens(3, 2)), b = concat(kPrefix, test::seeded_tokens(4, 3));
  std::vector<BatchRequest> r(6);
  r[0] = {a, greedy(6)};                   // first: nothing held, 0
  r[1] = {b, greedy(4)};                   // shares kPrefix (20) with r[0]
  r[1].options.sampling = SamplingParams{0.9f, 40, 0.9f}, r[1].options.seed = 5;
  r[2] = {kPrefix, greedy(5)};             // all of kPrefix: 20 in common, capped at 19
  r[3] = {a, greedy(3)};                   // r[0]'s whole prompt: 23 in common, capped at 22
  r[4] = {test::seeded_tokens(20, 9), greedy(3)};    // unrelated: 0
  r[5] = {concat(std::vector<int>(kPrefix.begin(), kPrefix.begin() + 15), test::seeded_tokens(5, 4)),
          greedy(3)};  // 15: 0
  // --parallel 4: r[0..3] are admitted in one fill, in order, while r[0]'s prompt is held.
  expect_outcome(batched(r, 4), r, {0, 20, 19, 22, 0, 0}, "--parallel 4");
  // --parallel 1: r[3] follows r[2] (kPrefix and its generated tokens), so shares 20 only,
  // given that r[2]'s first token is not a's 21st (checked on the solo run).
  ASSERT_NE(solo(r[2]).generated[0], a[20]);
  expect_outcome(batched(r, 1), r, {0, 20, 19, 20, 0, 0}, "--parallel 1");
}

// The smallest case (the one the emulated CUDA device runs): two requests, one shared prefix.
TEST(PrefixReuse, TwoRequestsWithASharedPrefixGenerateTheirSoloTokens) {
  const std::vector<BatchRequest> r = {{concat(kPrefix, test::seeded_tokens(3, 2)), greedy(3)},
                                       {concat(kPrefix, test::seeded_tokens(4, 3)), greedy(3)}};
  expect_outcome(batched(r, 2), r, {0, 20}, "--parallel 2");
}

// The reused K/V came from another request's prefill of 23 tokens: request 1's first logits are
// bitwise those of one sequence prefilling request 0's prompt and then request 1's last 4 tokens
// at position 20.
TEST(PrefixReuse, ReusedLogitsAreBitwiseASoloRunSplitAtTheSamePoint) {
  const std::vector<int> a = concat(kPrefix, test::seeded_tokens(3, 2)), b = concat(kPrefix, test::seeded_tokens(4, 3));
  const int V = tiny().config.vocab_size;
  std::vector<float> got(size_t(V), 0.0f), want(size_t(V), 1.0f);
  bool read = false;
  batched({{a, greedy(2)}, {b, greedy(2)}}, 2, {}, [&](Backend& backend, int id, int) {
    if (id == 1 && !read) backend.read_logits(got.data(), 1), read = true;  // request 1 is slot 1
  });
  ASSERT_TRUE(read);
  auto alone = make(1);
  const KvRing ring{alone->kv_capacity(), 0};
  alone->forward(a.data(), int(a.size()), 0, ring);
  alone->forward(b.data() + 20, 4, 20, ring);
  alone->read_logits(want.data());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
}

// A slot's generated tokens are held too: after request 0 (23 + 5 generated, the last never
// forwarded), a prompt of its 23 + its first 4 generated + one more reuses 27 positions.
TEST(PrefixReuse, GeneratedTokensAreReusedToo) {
  const std::vector<int> a = concat(kPrefix, test::seeded_tokens(3, 2));
  const std::vector<BatchRequest> first = {{a, greedy(5)}};
  const std::vector<int> generated = solo(first[0]).generated;
  std::vector<int> longer = concat(a, std::vector<int>(generated.begin(), generated.begin() + 4));
  longer.push_back(1000);
  const std::vector<BatchRequest> r = {first[0], {longer, greedy(3)}};
  expect_outcome(batched(r, 1), r, {0, 27}, "--parallel 1");
}

// A context shift recomputes the kept tokens at other positions: the slot's record ends, so the
// next request in it computes its whole prompt. Without the shift it reuses the prefix.
TEST(PrefixReuse, NothingIsReusedAcrossAContextShift) {
  const std::vector<int> a = concat(kPrefix, test::seeded_tokens(3, 2)), b = concat(kPrefix, test::seeded_tokens(4, 3));
  std::vector<BatchRequest> r = {{a, greedy(110)}, {b, greedy(3)}};  // 23 + 110 > 128 positions
  r[0].options.context_shift = true;
  const BatchOutcome shifted = batched(r, 1);
  ASSERT_GT(shifted.results[0].context_shifts, 0);
  expect_outcome(shifted, r, {0, 0}, "after a context shift");
  r[0].options.max_new_tokens = 8;
  expect_outcome(batched(r, 1), r, {0, 20}, "without a shift");
}

// --no-cache rebuilds its ring every step: such a request neither lends its prefix nor takes one.
TEST(PrefixReuse, NoCacheRequestsNeitherLendNorTakeAPrefix) {
  const std::vector<int> a = concat(kPrefix, test::seeded_tokens(3, 2)), b = concat(kPrefix, test::seeded_tokens(4, 3));
  std::vector<BatchRequest> r = {{a, greedy(3)}, {b, greedy(3)}, {a, greedy(3)}};
  r[0].options.use_cache = false;
  r[2].options.use_cache = false;
  expect_outcome(batched(r, 2), r, {0, 0, 0}, "--no-cache");
}

TEST(PrefixReuse, ReuseOffPrefillsEveryPromptWhole) {
  const std::vector<int> a = concat(kPrefix, test::seeded_tokens(3, 2)), b = concat(kPrefix, test::seeded_tokens(4, 3));
  const std::vector<BatchRequest> r = {{a, greedy(3)}, {b, greedy(3)}, {a, greedy(3)}};
  BatchOptions off;
  off.prefix_reuse = false;
  expect_outcome(batched(r, 2, off), r, {0, 0, 0}, "reuse off");
}

// copy_kv() gives the destination rows of its own: a sequence that reorder() pointed at another's
// history, once copied into, attends over the copied rows (its next forward is bitwise a solo
// run's split at the same point), and the contract's bad calls throw.
TEST(PrefixReuse, CopyKvResetsTheDestinationsHistoryAndChecksItsCall) {
  const std::vector<int> a = test::seeded_tokens(12, 7), b = concat(kPrefix, test::seeded_tokens(4, 3));
  auto backend = make(3);
  const KvRing ring{backend->kv_capacity(), 0};
  for (int s : {0, 1}) backend->forward(s, a.data(), int(a.size()), 0, ring);
  backend->forward(2, b.data(), int(b.size()), 0, ring);
  const int parent[2] = {0, 0};
  backend->reorder(parent, 2, int(a.size()));  // sequence 1 now reads sequence 0's rows
  backend->copy_kv(2, 1, b.data(), 20, ring);
  backend->forward(1, b.data() + 20, 4, 20, ring);
  auto alone = make(1);
  alone->forward(b.data(), int(b.size()), 0, ring);
  alone->forward(b.data() + 20, 4, 20, ring);
  const int V = tiny().config.vocab_size;
  std::vector<float> got(static_cast<size_t>(V)), want(static_cast<size_t>(V));
  backend->read_logits(got.data(), 1);
  alone->read_logits(want.data());
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));

  EXPECT_THROW(backend->copy_kv(1, 1, b.data(), 4, ring), Error);
  EXPECT_THROW(backend->copy_kv(0, 3, b.data(), 4, ring), Error);
  EXPECT_THROW(backend->copy_kv(0, 1, b.data(), 0, ring), Error);
  EXPECT_THROW(backend->copy_kv(0, 1, b.data(), 129, ring), Error);
  EXPECT_THROW(backend->copy_kv(0, 1, b.data(), 4, KvRing{64, 0}), Error);
  const int bad[2] = {1, 50257};
  EXPECT_THROW(backend->copy_kv(0, 1, bad, 2, ring), Error);
}

// The record itself, on cases worked out by hand.
TEST(PrefixReuse, HeldPrefixesRecordsWritesAndFindsTheLongestPrefix) {
  HeldPrefixes held(3);
  const KvRing ring{128, 0};
  const std::vector<int> x = {1, 2, 3, 4, 5, 6}, y = {1, 2, 3, 9};
  held.wrote(0, x.data(), 6, 0, ring, true);
  held.wrote(1, y.data(), 4, 0, ring, true);
  EXPECT_EQ(held.longest({1, 2, 3, 4, 7}, 2).seq, 0);
  EXPECT_EQ(held.longest({1, 2, 3, 4, 7}, 2).n, 4);
  EXPECT_EQ(held.longest({1, 2, 3, 4, 5, 6}, 2).n, 5);  // capped at length - 1
  EXPECT_EQ(held.longest({1, 2, 3, 7}, 1).seq, 1);       // a tie: the preferred slot
  EXPECT_EQ(held.longest({1, 2, 3, 7}, 2).seq, 0);       // a tie: the first
  EXPECT_EQ(held.longest({8, 2}, 0).seq, -1);
  EXPECT_EQ(held.longest({1}, 0).n, 0);
  const int seven = 7;
  held.wrote(0, &seven, 1, 2, ring, true);  // position 2 rewritten: [1, 2, 7]
  EXPECT_EQ(held.longest({1, 2, 7, 4, 5}, 2).n, 3);
  held.wrote(0, &seven, 1, 5, ring, true);  // beyond the record: a gap, so nothing is known
  EXPECT_EQ(held.longest({1, 2, 7, 4}, 2).seq, 1);
  held.wrote(1, y.data(), 4, 0, KvRing{128, 64}, true);  // a ring not starting at 0
  EXPECT_EQ(held.longest({1, 2, 3, 9, 9}, 2).n, 0);
  held.wrote(2, y.data(), 4, 0, ring, false);  // not kept (--no-cache, a shift)
  EXPECT_EQ(held.longest({1, 2, 3, 9, 9}, 2).n, 0);
}

}  // namespace
}  // namespace gpt2
