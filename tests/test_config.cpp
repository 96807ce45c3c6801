// config.json parsing and validation: every bad config is refused with a message naming the
// key, before anything is allocated.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "model/config.h"
#include "test_support.h"

namespace gpt2 {
namespace {

nlohmann::json tiny() {
  return {{"vocab_size", 50257}, {"n_positions", 128}, {"n_embd", 128}, {"n_layer", 2},
          {"n_head", 2},         {"n_inner", nullptr}, {"layer_norm_epsilon", 1e-5},
          {"activation_function", "gelu_new"}};
}

// Expects parse_config to throw a gpt2::Error whose message contains `needle`.
void expect_refused(const nlohmann::json& j, const std::string& needle) {
  try {
    parse_config(j.dump(), "config.json");
    ADD_FAILURE() << "accepted: " << j.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message must be one line";
  }
}

TEST(Config, ReadsTheGoldenHuggingFaceConfig) {
  const GPT2Config c =
      load_config(test::shared_dir() + "/golden/tiny-gpt2/config.json");
  EXPECT_EQ(c.vocab_size, 50257);
  EXPECT_EQ(c.n_positions, 128);
  EXPECT_EQ(c.n_embd, 128);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.n_head, 2);
  EXPECT_EQ(c.head_dim(), 64);
  EXPECT_EQ(c.n_inner, 512);  // null means 4 * n_embd
  EXPECT_FLOAT_EQ(c.layer_norm_epsilon, 1e-5f);
  EXPECT_EQ(c.eos_token_id, 50256);
}

TEST(Config, GPT2SmallParameterCount) {
  nlohmann::json j = tiny();
  j["n_positions"] = 1024; j["n_embd"] = 768; j["n_layer"] = 12; j["n_head"] = 12;
  EXPECT_EQ(parse_config(j.dump(), "c").n_params(), 124439808);  // Hugging Face's count for gpt2
}

TEST(Config, AcceptsNCtxForNPositions) {
  nlohmann::json j = tiny();
  j.erase("n_positions");
  j["n_ctx"] = 64;
  EXPECT_EQ(parse_config(j.dump(), "c").n_positions, 64);
}

TEST(Config, RefusesMissingKeys) {
  for (const char* key : {"vocab_size", "n_embd", "n_layer", "n_head"}) {
    nlohmann::json j = tiny();
    j.erase(key);
    expect_refused(j, key);
  }
}

TEST(Config, RefusesZeroNegativeAndNonIntegerSizes) {
  for (const char* key : {"vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner"}) {
    for (const nlohmann::json& bad : {nlohmann::json(0), nlohmann::json(-4), nlohmann::json(12.5),
                                      nlohmann::json("128"), nlohmann::json(true)}) {
      nlohmann::json j = tiny();
      j[key] = bad;
      expect_refused(j, key);
    }
  }
}

TEST(Config, RefusesHeadsThatDoNotDivideTheWidth) {
  nlohmann::json j = tiny();
  j["n_head"] = 3;
  expect_refused(j, "not divisible by n_head");
}

TEST(Config, RefusesAbsurdSizesBeforeAllocating) {
  nlohmann::json j = tiny();
  j["n_layer"] = 1000; j["n_embd"] = 32768; j["n_head"] = 128;
  expect_refused(j, "parameters");
  j = tiny();
  j["vocab_size"] = int64_t(1) << 40;
  expect_refused(j, "vocab_size");
  j = tiny();
  j["n_positions"] = 65536; j["n_embd"] = 4096; j["n_layer"] = 64; j["n_head"] = 32;
  expect_refused(j, "too large");
}

TEST(Config, RefusesOtherActivationsAndBadEpsilon) {
  nlohmann::json j = tiny();
  j["activation_function"] = "relu";
  expect_refused(j, "activation_function");
  j = tiny();
  j["layer_norm_epsilon"] = -1;
  expect_refused(j, "layer_norm_epsilon");
}

TEST(Config, RefusesTextThatIsNotAJsonObject) {
  for (const std::string text : {"", "{", "[1,2]", "null", "{\"n_embd\": 1", "\xff\xfe"}) {
    EXPECT_THROW(parse_config(text, "config.json"), Error) << text;
  }
}

TEST(Config, AFifoIsRefusedWithoutBlocking) {
  const std::string path = test::temp_dir() + "/config.json";
  const std::string message = test::error_loading_fifo(path, [&] { load_config(path); });
  EXPECT_NE(message.find("config.json: cannot read the model's config.json: it is not a regular file"),
            std::string::npos) << message;
  EXPECT_EQ(message.rfind("blocked", 0), std::string::npos) << message;
}

TEST(Config, MissingFileNamesThePath) {
  try {
    load_config("/nonexistent/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/config.json"), std::string::npos);
  }
}

}  // namespace
}  // namespace gpt2
