// Stop strings (stop_strings.h) on hand-made pieces of text, and through the streaming decoder
// with GPT-2's real tokenizer, as the app drives them (stops.push(stream.push(id))): a stop
// string split over tokens, one inside a character whose bytes span two tokens, and the
// hold-back that never prints part of a stop string.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_support.h"
#include "text/stop_strings.h"
#include "text/tokenizer.h"

namespace gpt2 {
namespace {

// What push() shows for each piece, then release() at the end.
std::vector<std::string> shown(StopStrings& stops, const std::vector<std::string>& pieces) {
  std::vector<std::string> out;
  for (const std::string& p : pieces) out.push_back(stops.push(p));
  out.push_back(stops.release());
  return out;
}

TEST(StopStrings, NoStopStringsShowEverythingAtOnce) {
  StopStrings none({});
  EXPECT_EQ(shown(none, {"Hello", " world"}), (std::vector<std::string>{"Hello", " world", ""}));
  EXPECT_FALSE(none.matched());
}

TEST(StopStrings, HoldsBackOnlyWhatCouldStillBecomeAStopString) {
  StopStrings stops({"\n\nUser:"});
  // "Hi\n" could start "\n\nUser:": "\n" is held; "\nUs" keeps "\n\nUs" held; "ed" breaks it.
  EXPECT_EQ(shown(stops, {"Hi\n", "\nUs", "ed"}), (std::vector<std::string>{"Hi", "", "\n\nUsed", ""}));
  EXPECT_FALSE(stops.matched());
  StopStrings at_end({"END"});
  EXPECT_EQ(shown(at_end, {"the E", "N"}), (std::vector<std::string>{"the ", "", "EN"}));  // released at the end
}

TEST(StopStrings, ASplitStopStringEndsAtItsStartAndHidesTheRest) {
  StopStrings stops({"world"});
  EXPECT_EQ(stops.push("Hello wo"), "Hello ");
  EXPECT_EQ(stops.push("rld! more"), "");
  EXPECT_TRUE(stops.matched());
  EXPECT_EQ(stops.match(), "world");
  EXPECT_EQ(stops.push("after"), "");
  EXPECT_EQ(stops.release(), "");
}

TEST(StopStrings, TheEarliestMatchWinsAndAtTheVeryStartNothingIsShown) {
  StopStrings stops({"cd", "b"});
  EXPECT_EQ(stops.push("abcd"), "a");
  EXPECT_EQ(stops.match(), "b");
  StopStrings first({"He"});
  EXPECT_EQ(first.push("Hello"), "");
  EXPECT_TRUE(first.matched());
}

class StopStringsWithTokens : public ::testing::Test {
 protected:
  static const Tokenizer& tok() {
    static const Tokenizer t = Tokenizer::load(test::shared_dir() + "/gpt2-tokenizer", 50257);
    return t;
  }
  // The app's pipeline: every token through the streaming decoder, then the stop strings.
  static std::string run(StopStrings& stops, const std::vector<int>& ids) {
    StreamDecoder stream(tok());
    std::string out;
    for (int id : ids) {
      out += stops.push(stream.push(id));
      if (stops.matched()) return out;
    }
    return out + stops.push(stream.finish()) + stops.release();
  }
};

TEST_F(StopStringsWithTokens, ACharacterWhoseBytesSpanTwoTokens) {
  // "é" is C3 A9. GPT-2's byte tokens: "Ã" (id 127) is byte C3 and "©" (id 102) is byte A9.
  const std::vector<int> ids = {66, 1878, 127, 102, 318};  // "c" "af" C3 A9 " is"
  ASSERT_EQ(tok().decode(ids), "caf\xc3\xa9 is");
  StopStrings e({"\xc3\xa9"});
  EXPECT_EQ(run(e, ids), "caf");
  EXPECT_EQ(e.match(), "\xc3\xa9");
  StopStrings fe({"f\xc3\xa9 "});  // from inside the second token to inside the last
  EXPECT_EQ(run(fe, ids), "ca");
  StopStrings miss({"\xc3\xa9t"});  // held back while it might match, then shown whole
  EXPECT_EQ(run(miss, ids), "caf\xc3\xa9 is");
  EXPECT_FALSE(miss.matched());
}

TEST_F(StopStringsWithTokens, AStopStringSplitOverTwoTokens) {
  const std::vector<int> ids = tok().encode("What is KV caching? It is");
  ASSERT_EQ(ids, (std::vector<int>{2061, 318, 509, 53, 40918, 30, 632, 318}));
  StopStrings kv({"KV"});  // "K" and "V" are tokens 509 and 53
  EXPECT_EQ(run(kv, ids), "What is ");
  StopStrings q({"? It"});
  EXPECT_EQ(run(q, ids), "What is KV caching");
}

}  // namespace
}  // namespace gpt2
