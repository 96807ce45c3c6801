// The weight file's validation: a corruption suite in the spirit of ggml's test-gguf.cpp and
// the safetensors reference implementation's own errors. Every case must be refused with a
// gpt2::Error naming the problem, never a crash or a read outside the buffer (the ASan/UBSan
// CI build runs this file too).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "test_support.h"

namespace gpt2 {
namespace {

using nlohmann::json;

// A safetensors image: 8-byte little-endian header length, the header, the data.
std::string image(const std::string& header, const std::string& data, int64_t declared_len = -1) {
  const uint64_t n = declared_len >= 0 ? uint64_t(declared_len) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Two F32 tensors a (2) and b (3): the valid baseline every case corrupts.
json baseline() {
  return {{"a", {{"dtype", "F32"}, {"shape", {2}}, {"data_offsets", {0, 8}}}},
          {"b", {{"dtype", "F32"}, {"shape", {3}}, {"data_offsets", {8, 20}}}}};
}
const std::string kData(20, '\x01');

SafetensorsFile parse(const std::string& bytes) {
  return SafetensorsFile::parse(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "w.safetensors");
}

void expect_refused(const std::string& bytes, const std::string& needle) {
  try {
    parse(bytes);
    ADD_FAILURE() << "accepted a corrupted file; expected an error containing \"" << needle << "\"";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.rfind("w.safetensors", 0), 0u) << "the message must name the file: " << msg;
  }
}

TEST(Safetensors, AcceptsTheBaseline) {
  const auto f = parse(image(baseline().dump(), kData));
  ASSERT_EQ(f.tensors().size(), 2u);
  ASSERT_NE(f.find("b"), nullptr);
  EXPECT_EQ(f.find("b")->numel, 3);
  EXPECT_EQ(f.find("b")->nbytes, 12u);
  EXPECT_EQ(f.find("c"), nullptr);
}

TEST(Safetensors, HeaderLength) {
  expect_refused("", "too short");
  expect_refused(std::string(7, '\0'), "too short");
  expect_refused(image(baseline().dump(), kData, 0), "header length is zero");
  expect_refused(image(baseline().dump(), kData, 1'000'000), "runs past the end");
  expect_refused(image(baseline().dump(), kData, int64_t(100'000'001)), "100 MB");
  expect_refused(image(baseline().dump(), kData, INT64_MAX), "100 MB");
}

TEST(Safetensors, HeaderNotJsonObject) {
  expect_refused(image("[1, 2, 3]", ""), "start with '{'");
  expect_refused(image("{\"a\": ", ""), "not valid JSON");
  const std::string h = baseline().dump();
  expect_refused(image(h.substr(0, h.size() - 5), kData), "not valid JSON");  // truncated
  expect_refused(image("{\"a\": 1}", ""), "not an object");
  expect_refused(image(std::string("{\"a\xff\": {}}"), ""), "not valid JSON");
}

TEST(Safetensors, DuplicateNames) {
  const std::string h =
      R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
      R"( "a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})";
  expect_refused(image(h, std::string(16, '\0')), "listed twice");
}

TEST(Safetensors, DtypesAndShapes) {
  json j = baseline();
  j["a"]["dtype"] = "F64";
  expect_refused(image(j.dump(), kData), "not supported");
  j = baseline();
  j["a"].erase("dtype");
  expect_refused(image(j.dump(), kData), "missing \"dtype\"");
  for (const json& bad_dim : {json(-1), json(2.5), json("2"), json(nullptr)}) {
    j = baseline();
    j["a"]["shape"] = json::array({bad_dim});
    expect_refused(image(j.dump(), kData), "not a non-negative integer");
  }
  j = baseline();
  j["a"]["shape"] = "2";
  expect_refused(image(j.dump(), kData), "shape");
}

TEST(Safetensors, ElementCountOverflowIsCaughtByDivision) {
  json j = baseline();
  j["a"]["shape"] = {uint64_t(1) << 32, uint64_t(1) << 32};  // 2^64 elements
  expect_refused(image(j.dump(), kData), "overflows 64 bits");
  j["a"]["shape"] = {uint64_t(1) << 62};                      // fits, but 4 bytes each does not
  expect_refused(image(j.dump(), kData), "overflows 64 bits");
  j["a"]["shape"] = {0, uint64_t(1) << 62};                   // zero elements: no overflow
  j["a"]["data_offsets"] = {0, 0};
  j["b"]["data_offsets"] = {0, 12};
  EXPECT_NO_THROW(parse(image(j.dump(), std::string(12, '\0'))));
  // Next to a zero the product never overflows, but a dimension above 2^63 - 1 cannot be
  // held in a signed shape: refused on its own (found by fuzz_safetensors).
  j["a"]["shape"] = {0, uint64_t(1) << 63};
  expect_refused(image(j.dump(), std::string(12, '\0')), "exceeds 2^63 - 1");
}

TEST(Safetensors, OffsetsMustTileTheBuffer) {
  json j = baseline();
  j["b"]["data_offsets"] = {8, 24};
  j["b"]["shape"] = {4};
  expect_refused(image(j.dump(), kData), "truncated");                 // out of bounds
  j = baseline();
  j["b"]["data_offsets"] = {4, 16};
  expect_refused(image(j.dump(), kData), "overlaps");
  j = baseline();
  j["b"]["data_offsets"] = {12, 24};
  expect_refused(image(j.dump(), kData + "1234"), "hole");
  expect_refused(image(baseline().dump(), kData + "trailing"), "cover 20 of the 28");
  j = baseline();
  j["a"]["data_offsets"] = {8, 0};
  expect_refused(image(j.dump(), kData), "begin > end");
  j = baseline();
  j["a"]["data_offsets"] = {0};
  expect_refused(image(j.dump(), kData), "data_offsets");
  j = baseline();
  j["a"]["data_offsets"] = {-8, 0};
  expect_refused(image(j.dump(), kData), "data_offsets");
}

TEST(Safetensors, SizeMustMatchDtypeTimesShape) {
  json j = baseline();
  j["a"]["dtype"] = "F16";
  expect_refused(image(j.dump(), kData), "needs 4");
}

TEST(Safetensors, MetadataMustBeStrings) {
  json j = baseline();
  j["__metadata__"] = {{"format", "gpt2-gen"}};
  EXPECT_EQ(parse(image(j.dump(), kData)).metadata().at("format"), "gpt2-gen");
  j["__metadata__"] = {{"n", 1}};
  expect_refused(image(j.dump(), kData), "__metadata__");
  j["__metadata__"] = "x";
  expect_refused(image(j.dump(), kData), "__metadata__");
}

TEST(Safetensors, EveryTruncationOfARealFileIsRefused) {
  const std::string good = image(baseline().dump(), kData);
  for (size_t n = 0; n < good.size(); ++n) EXPECT_THROW(parse(good.substr(0, n)), Error) << n;
}

TEST(Safetensors, AFifoIsRefusedWithoutBlocking) {
  const std::string path = test::temp_dir() + "/model.safetensors";
  const std::string message = test::error_loading_fifo(path, [&] { SafetensorsFile::open(path); });
  EXPECT_NE(message.find("model.safetensors: cannot open the weight file: it is not a regular file"),
            std::string::npos) << message;
  EXPECT_EQ(message.rfind("blocked", 0), std::string::npos) << message;
}

TEST(Safetensors, OpenNamesMissingFilesAndDirectories) {
  EXPECT_THROW(SafetensorsFile::open("/nonexistent/model.safetensors"), Error);
  EXPECT_THROW(SafetensorsFile::open(test::temp_dir()), Error);
  const std::string empty = test::temp_dir() + "/empty.safetensors";
  test::write_file(empty, "");
  EXPECT_THROW(SafetensorsFile::open(empty), Error);
}

// Model-level checks: a converted tiny model, rewritten with one defect at a time.
class ModelFile : public ::testing::Test {
 protected:
  // Copies the tiny fp32 model into a fresh directory, letting `edit` change its header (and
  // data) and config first. Returns the directory.
  std::string variant(const std::function<void(json& header, std::string& data, json& config)>& edit) {
    const std::string src = test::tiny_model("fp32");
    const std::string bytes = test::read_file(model_weights_path(src));
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
    json header = json::parse(bytes.substr(8, n));
    std::string data = bytes.substr(8 + n);
    json config = json::parse(test::read_file(model_config_path(src)));
    edit(header, data, config);
    const std::string dir = test::temp_dir();
    test::write_file(model_weights_path(dir), image(header.dump(), data));
    test::write_file(model_config_path(dir), config.dump());
    return dir;
  }
  void expect_refused(const std::string& dir, const std::string& needle) {
    try {
      const Model m = load_model(dir);
      make_cpu_backend(m, BackendOptions{});
      ADD_FAILURE() << "accepted; expected \"" << needle << "\"";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
};

TEST_F(ModelFile, TheUnchangedCopyLoads) {
  EXPECT_NO_THROW(load_model(variant([](json&, std::string&, json&) {})));
}

TEST_F(ModelFile, MissingTensor) {
  expect_refused(variant([](json& h, std::string& d, json&) {
                   const auto off = h["ln_f.bias"]["data_offsets"];
                   // Drop ln_f.bias and cut its bytes out, shifting later tensors down.
                   const uint64_t b = off[0], e = off[1];
                   h.erase("ln_f.bias");
                   d.erase(b, e - b);
                   for (auto& [k, v] : h.items())
                     if (k != "__metadata__" && v["data_offsets"][0].get<uint64_t>() >= e) {
                       v["data_offsets"][0] = v["data_offsets"][0].get<uint64_t>() - (e - b);
                       v["data_offsets"][1] = v["data_offsets"][1].get<uint64_t>() - (e - b);
                     }
                 }),
                 "\"ln_f.bias\" is missing");
}

TEST_F(ModelFile, RightNameWrongShape) {
  expect_refused(variant([](json& h, std::string&, json&) { h["h.0.attn.proj.weight"]["shape"] = {64, 256}; }),
                 "has shape [64, 256] but config.json implies [128, 128]");
}

TEST_F(ModelFile, ConfigContradictsTheWeights) {
  expect_refused(variant([](json&, std::string&, json& c) { c["n_layer"] = 3; }), "\"h.2.ln_1.weight\" is missing");
  expect_refused(variant([](json&, std::string&, json& c) { c["n_layer"] = 1; }), "unexpected tensor");
  expect_refused(variant([](json&, std::string&, json& c) { c["n_embd"] = 64; }), "has shape");
  expect_refused(variant([](json&, std::string&, json& c) { c["n_head"] = 3; }), "not divisible");
}

TEST_F(ModelFile, NaNAndInfInWeightsAreRefusedAtLoad) {
  for (const float bad : {NAN, INFINITY}) {
    expect_refused(variant([bad](json& h, std::string& d, json&) {
                     const uint64_t off = h["h.1.mlp.fc.weight"]["data_offsets"][0];
                     std::memcpy(&d[off + 40], &bad, 4);
                   }),
                   std::isnan(bad) ? "holds NaN at element 10" : "holds Inf at element 10");
  }
}

TEST_F(ModelFile, AHuggingFaceCheckpointGetsAConversionHint) {
  expect_refused(variant([](json& h, std::string&, json&) {
                   json renamed;
                   for (auto& [k, v] : h.items()) renamed[k == "wte" ? "transformer.wte.weight" : k] = v;
                   h = renamed;
                 }),
                 "convert it with tools/convert_weights.py");
}

TEST_F(ModelFile, MissingDirectoryExplainsHowToConvert) {
  try {
    load_model("/nonexistent/models/gpt2");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("convert_weights.py"), std::string::npos) << e.what();
  }
}

TEST_F(ModelFile, TruncatedWeightFile) {
  const std::string dir = variant([](json&, std::string&, json&) {});
  const std::string bytes = test::read_file(model_weights_path(dir));
  test::write_file(model_weights_path(dir), bytes.substr(0, bytes.size() / 2));
  expect_refused(dir, "truncated");
}

}  // namespace
}  // namespace gpt2
