// Beam search on the CPU backend and the tiny golden model: the BeamGolden suite
// (beam_suite.cpp: transformers' 24 recorded searches, with and without the cache) instantiated
// for the CPU; reorder()'s history tables (after reorder, a decode step is bitwise the solo
// sequence with that history, in fp32, and the processors see that history's tokens); and the
// engine's refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "base/error.h"
#include "beam_suite.h"
#include "cpu/backend_cpu.h"
#include "engine/beam.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

const Model& tiny_model() {
  static const Model model = load_model(test::tiny_model("fp32"));
  return model;
}

std::unique_ptr<Backend> cpu_backend(int n_seqs) {
  BackendOptions o;
  o.n_seqs = n_seqs;
  o.threads = 2;
  return make_cpu_backend(tiny_model(), o);
}

using test::BeamGolden;
INSTANTIATE_TEST_SUITE_P(Cpu, BeamGolden, ::testing::Values(test::BeamBackend{"Cpu", cpu_backend}),
                         test::beam_backend_name);

const KvRing kRing{128, 0};
const std::vector<std::vector<int>> kPrompts = {
    {2061, 318, 509, 53, 40918, 30}, {464, 2068, 7586, 21831, 18045, 625}, {40, 716, 257, 1263, 3303, 2746}};

std::vector<float> logits_of(Backend& b, int seq) {
  std::vector<float> l(size_t(b.vocab_size()));
  b.read_logits(l.data(), seq);
  return l;
}

// The solo reference: `history` computed as the beams computed it (the prompt prefilled, then one
// token per decode step), then `token`; its logits.
std::vector<float> solo_logits(const std::vector<int>& prompt, const std::vector<int>& decoded, int token) {
  auto b = cpu_backend(1);
  b->forward(prompt.data(), int(prompt.size()), 0, kRing);
  int pos = int(prompt.size());
  for (int id : decoded) b->forward(&id, 1, pos++, kRing);
  b->forward(&token, 1, pos, kRing);
  return logits_of(*b, 0);
}

// Three sequences with distinct prompts and one decoded token each, then reordered twice (a
// parent that is itself reordered, a sequence dropped, one duplicated): each step's logits are
// bitwise those of the solo sequence with the history the parents say.
TEST(BeamReorder, ADecodeAfterReorderIsTheSoloSequenceWithThatHistory) {
  auto b = cpu_backend(3);
  for (int s = 0; s < 3; ++s) b->forward(s, kPrompts[size_t(s)].data(), 6, 0, kRing);
  const int first[3] = {11, 22, 33};
  std::vector<SeqToken> rows;
  for (int s = 0; s < 3; ++s) rows.push_back(SeqToken{s, first[s], 6, kRing});
  b->decode_batch(rows.data(), 3);

  const int parent1[3] = {1, 1, 0};  // histories: prompt 1 + 22, prompt 1 + 22, prompt 0 + 11
  b->reorder(parent1, 3, 7);
  const int second[3] = {44, 55, 66};
  for (int s = 0; s < 3; ++s) rows[size_t(s)] = SeqToken{s, second[s], 7, kRing};
  b->decode_batch(rows.data(), 3);
  EXPECT_EQ(logits_of(*b, 0), solo_logits(kPrompts[1], {22}, 44));
  EXPECT_EQ(logits_of(*b, 1), solo_logits(kPrompts[1], {22}, 55));
  EXPECT_EQ(logits_of(*b, 2), solo_logits(kPrompts[0], {11}, 66));

  const int parent2[3] = {2, 0, 2};  // prompt 0 + 11 + 66, prompt 1 + 22 + 44, prompt 0 + 11 + 66
  b->reorder(parent2, 3, 8);
  for (int s = 0; s < 3; ++s) rows[size_t(s)] = SeqToken{s, 77 + s, 8, kRing};
  b->decode_batch(rows.data(), 3);
  EXPECT_EQ(logits_of(*b, 0), solo_logits(kPrompts[0], {11, 66}, 77));
  EXPECT_EQ(logits_of(*b, 1), solo_logits(kPrompts[1], {22, 44}, 78));
  EXPECT_EQ(logits_of(*b, 2), solo_logits(kPrompts[0], {11, 66}, 79));
}

// The identity reorder changes nothing; a forward from position 0 starts a history of its own.
TEST(BeamReorder, IdentityAndAFreshPrefillLeaveTheSequencesTheirOwn) {
  auto b = cpu_backend(2);
  for (int s = 0; s < 2; ++s) b->forward(s, kPrompts[size_t(s)].data(), 6, 0, kRing);
  const int identity[2] = {0, 1};
  b->reorder(identity, 2, 6);
  const int token = 99;
  b->forward(1, &token, 1, 6, kRing);
  EXPECT_EQ(logits_of(*b, 1), solo_logits(kPrompts[1], {}, 99));

  const int swap[2] = {1, 0};
  b->reorder(swap, 2, 6);
  b->forward(0, kPrompts[2].data(), 6, 0, kRing);  // sequence 0 forgets the history it was given
  b->forward(0, &token, 1, 6, kRing);
  EXPECT_EQ(logits_of(*b, 0), solo_logits(kPrompts[2], {}, 99));
}

// The processors see the history's tokens. A repetition penalty below 1 multiplies the
// positive logits of the context's tokens (x1000 here), so greedy picks one of the context's own
// tokens. The step's token is chosen so that the solo sequence (prompt 1, then it) picks one of
// prompt 1's tokens; after a reorder onto prompt 1 the beam must pick that same token, which a
// context read from the sequence's own old prompt (disjoint from prompt 1) cannot give.
TEST(BeamReorder, TheProcessorsSeeTheReorderedContext) {
  SamplingParams greedy{0.0f, 0, 1.0f};
  greedy.penalties.repeat_penalty = 0.001f;
  auto in_prompt_1 = [](int id) { return std::find(kPrompts[1].begin(), kPrompts[1].end(), id) != kPrompts[1].end(); };
  auto solo = cpu_backend(1);
  solo->forward(kPrompts[1].data(), 6, 0, kRing);
  int token = 10, expected = -1;
  while (!in_prompt_1(expected) && ++token < 60) {
    solo->forward(&token, 1, 6, kRing);
    expected = solo->sample(0, greedy, 0.0);
  }
  ASSERT_TRUE(in_prompt_1(expected)) << "no step token in [11, 60) makes the solo sequence pick from its prompt";
  auto b = cpu_backend(2);
  for (int s = 0; s < 2; ++s) b->forward(s, kPrompts[size_t(s)].data(), 6, 0, kRing);
  const int parent[2] = {1, 1};
  b->reorder(parent, 2, 6);
  b->forward(0, &token, 1, 6, kRing);
  EXPECT_EQ(b->sample(0, greedy, 0.0), expected) << "step token " << token;
}

TEST(BeamReorder, BadCallsAreRefused) {
  auto b = cpu_backend(2);
  const int out_of_range[2] = {0, 2};
  EXPECT_THROW(b->reorder(out_of_range, 2, 4), Error);
  const int ok[2] = {0, 0};
  EXPECT_THROW(b->reorder(ok, 3, 4), Error);   // more sequences than held
  EXPECT_THROW(b->reorder(ok, 2, 0), Error);   // nothing to continue
  EXPECT_THROW(b->reorder(ok, 2, 129), Error); // past the ring
}

TEST(BeamSearch, RefusesWhatItCannotRun) {
  auto b = cpu_backend(2);
  GenerationOptions gen;
  gen.sampling.temperature = 0;
  BeamOptions beams;
  beams.num_beams = 3;  // the backend holds 2
  EXPECT_THROW(beam_search(*b, kPrompts[0], gen, beams), Error);
  beams.num_beams = 2;
  beams.num_return_sequences = 3;
  EXPECT_THROW(beam_search(*b, kPrompts[0], gen, beams), Error);
  beams.num_return_sequences = 1;
  gen.sampling.temperature = 0.8f;
  EXPECT_THROW(beam_search(*b, kPrompts[0], gen, beams), Error);
}

// The context window bounds the search: a prompt that leaves room for 3 tokens gives 3, finish
// reason "context", with and without the cache alike.
TEST(BeamSearch, StopsAtTheContextWindow) {
  std::vector<int> prompt(126, 30);
  GenerationOptions gen;
  gen.sampling.temperature = 0;
  gen.max_new_tokens = 10;
  BeamOptions beams;
  beams.num_beams = 2;
  for (bool cache : {true, false}) {
    gen.use_cache = cache;
    auto b = cpu_backend(2);
    const BeamResult r = beam_search(*b, prompt, gen, beams);
    ASSERT_EQ(r.sequences.size(), 1u);
    EXPECT_EQ(r.sequences[0].tokens.size(), 3u);
    EXPECT_EQ(r.sequences[0].finish, FinishReason::Context);
  }
}

}  // namespace
}  // namespace gpt2
