// --explain's counting convention (src/app/explain.h) against numbers worked out by hand for
// GPT-2 124M (C = 768, 12 layers, 12 heads, V = 50257, fp32 K/V), and the other mode's forwards.
#include <gtest/gtest.h>

#include "app/explain.h"

namespace gpt2 {
namespace {

ExplainModel gpt2_124m() {
  ExplainModel m;
  m.n_layer = 12;
  m.n_head = 12;
  m.n_embd = 768;
  m.n_inner = 3072;
  m.vocab_size = 50257;
  m.weight_bytes = 124439808.0 * 4;  // n_params of GPT-2 124M, fp32
  m.kv_format = "fp32";
  m.kv_row_bytes = 768 * 4;
  m.kv_ring_bytes = 2.0 * 12 * 1024 * 768 * 4;
  return m;
}

TEST(ExplainCost, OneCachedTokenAtPosition9) {
  const StepCost c = step_cost(gpt2_124m(), ForwardCall{1, 9});  // L = 10
  EXPECT_EQ(c.linear, 169869312.0);    // 2 * 12 * 768^2 * 12
  EXPECT_EQ(c.attention, 368640.0);    // 4 * 768 * 10 pairs * 12
  EXPECT_EQ(c.lm_head, 77194752.0);    // 2 * 768 * 50257
  EXPECT_EQ(c.kv_read, 737280.0);      // 2 * 12 * 10 * 768 * 4
  EXPECT_EQ(c.kv_write, 73728.0);      // 2 * 12 * 1 * 768 * 4
  EXPECT_EQ(c.weights, 497759232.0);
  EXPECT_EQ(c.flops(), 169869312.0 + 368640.0 + 77194752.0);
}

TEST(ExplainCost, FullRecomputeScoresATriangle) {
  // 10 tokens from position 0: 1 + 2 + ... + 10 = 55 pairs = L(L+1)/2.
  EXPECT_EQ(scored_pairs(ForwardCall{10, 0}), 55.0);
  EXPECT_EQ(step_cost(gpt2_124m(), ForwardCall{10, 0}).attention, 4.0 * 768 * 55 * 12);
  // 3 tokens at position 5 (a chunk after a cached prefix): 6 + 7 + 8 = 21 pairs.
  EXPECT_EQ(scored_pairs(ForwardCall{3, 5}), 21.0);
  EXPECT_EQ(step_cost(gpt2_124m(), ForwardCall{3, 5}).linear, 3 * 169869312.0);
}

TEST(ExplainCost, KvHeldOnlyWithTheCache) {
  EXPECT_EQ(kv_held_bytes(gpt2_124m(), ForwardCall{1, 9}, true), 737280.0);
  EXPECT_EQ(kv_held_bytes(gpt2_124m(), ForwardCall{10, 0}, false), 0.0);
}

TEST(ExplainCost, OtherModeForwardsFollowTheContexts) {
  // With the cache: a 4-token prompt, two steps, a shift to a 2-token window, one step.
  const std::vector<ForwardCall> cached = {{4, 0}, {1, 4}, {1, 5}, {2, 0}, {1, 2}};
  const std::vector<ForwardCall> uncached = {{4, 0}, {5, 0}, {6, 0}, {2, 0}, {3, 0}};
  EXPECT_EQ(other_mode_forwards(cached, true), uncached);
  EXPECT_EQ(other_mode_forwards(uncached, false), cached);
}

TEST(ExplainCost, RunsSumTheirSteps) {
  const ExplainModel m = gpt2_124m();
  const ExplainRun run = explain_run(m, {{4, 0}, {1, 4}}, {10.0, 2.5}, true);
  EXPECT_EQ(run.steps[0].new_tokens, 4);
  EXPECT_EQ(run.steps[1].new_tokens, 1);
  EXPECT_EQ(run.total().flops(), step_cost(m, {4, 0}).flops() + step_cost(m, {1, 4}).flops());
  EXPECT_EQ(run.total_ms(), 12.5);
  EXPECT_TRUE(run.measured);
  EXPECT_FALSE(explain_run(m, {{4, 0}}, {}, false).measured);
}

}  // namespace
}  // namespace gpt2
