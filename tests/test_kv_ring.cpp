// The ring's index arithmetic and the context-shift rule (kv_ring.h), checked against
// hand-computed cases.
#include <gtest/gtest.h>

#include "engine/kv_ring.h"

namespace gpt2 {
namespace {

TEST(KvRing, SlotWrapsAroundTheEnd) {
  const KvRing r{8, 5};
  const int expected[8] = {5, 6, 7, 0, 1, 2, 3, 4};
  for (int p = 0; p < 8; ++p) EXPECT_EQ(r.slot(p), expected[p]) << p;
}

TEST(KvRing, DroppingTheFrontKeepsSurvivorsInTheirSlots) {
  const KvRing r{8, 6};
  const KvRing d = r.dropped_front(3);
  for (int p = 0; p < 5; ++p) EXPECT_EQ(d.slot(p), r.slot(p + 3)) << p;
  EXPECT_EQ(d.capacity, 8);
  EXPECT_EQ(r.dropped_front(8).start, 6);  // dropping a whole lap changes nothing
}

TEST(ContextPolicy, KeepsTheContextWhileItFits) {
  const ContextPolicy p{10, false};
  EXPECT_EQ(p.next_begin(10, 0), 0);
  EXPECT_EQ(p.next_begin(15, 5), 5);
}

TEST(ContextPolicy, StopsOnOverflowWithoutShift) {
  EXPECT_EQ((ContextPolicy{10, false}).next_begin(11, 0), -1);
}

TEST(ContextPolicy, ShiftKeepsTheMostRecentHalf) {
  const ContextPolicy p{10, true};
  EXPECT_EQ(p.keep(), 5);
  EXPECT_EQ(p.next_begin(11, 0), 6);   // tokens 6..10: the last 5, the new one included
  EXPECT_EQ(p.next_begin(17, 6), 12);
  EXPECT_EQ((ContextPolicy{1, true}).next_begin(2, 0), 1);  // a 1-token window keeps 1
}

}  // namespace
}  // namespace gpt2
