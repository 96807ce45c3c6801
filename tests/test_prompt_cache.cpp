// The prompt cache (engine/prompt_cache.h) and the backends' read_kv()/write_kv(), on the tiny
// golden model: a warm run (K/V of a prefix loaded from the file, the rest prefilled) gives the
// logits of a cold run bitwise, for a prefix hit, a partial hit and a miss; a file for another
// model, device, dtype or K/V format, a truncated file and hostile headers are ignored with a
// note, never trusted. Built twice: on the CPU backend (test_prompt_cache) and on the emulated
// CUDA device (test_prompt_cache_emu, GPT2_TEST_CUDA_EMU).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "engine/kv_format.h"
#include "engine/prompt_cache.h"
#include "model/model.h"
#include "test_support.h"
#ifdef GPT2_TEST_CUDA_EMU
#include "cuda/backend_cuda.h"
#endif

namespace gpt2 {
namespace {

// fp32 weights and K/V unless asked (the files' byte layouts below are fp32's).
std::unique_ptr<Backend> make(const Model& m, std::optional<ComputeDType> dtype = ComputeDType::F32,
                              std::optional<ComputeDType> kv = ComputeDType::F32) {
  BackendOptions o;
  o.dtype = dtype;
  o.kv_dtype = kv;
#ifdef GPT2_TEST_CUDA_EMU
  return make_cuda_backend(m, o);
#else
  return make_cpu_backend(m, o);
#endif
}

const Model& tiny(const std::string& dtype = "fp32") {
  static std::map<std::string, Model> models;
  auto it = models.find(dtype);
  if (it == models.end()) it = models.emplace(dtype, load_model(test::tiny_model(dtype))).first;
  return it->second;
}

std::vector<float> logits_of(Backend& b) {
  std::vector<float> l(size_t(tiny().config.vocab_size));
  b.read_logits(l.data());
  return l;
}

class PromptCache : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::temp_dir(); }

  // A cold prefill of `ids` saved to a file, as the app's save does; returns its path.
  std::string save(const std::vector<int>& ids, Backend& b, const std::string& name = "p.cache") {
    const KvRing ring{b.kv_capacity(), 0};
    b.forward(ids.data(), int(ids.size()), 0, ring);
    PromptCacheImage img = prompt_cache_image(prompt_cache_key(tiny(), b), ids);
    auto* base = reinterpret_cast<uint8_t*>(&img.bytes[0]);
    b.read_kv(0, 0, int(ids.size()), ring, base + img.k_at, base + img.v_at, int(ids.size()));
    const std::string path = dir_ + "/" + name;
    test::write_file(path, img.bytes);
    return path;
  }

  // The logits after loading `path` for `prompt` and prefilling the rest; `reused` receives
  // how many tokens came from the file.
  std::vector<float> warm(const std::string& path, const std::vector<int>& prompt, int* reused, std::string* note,
                          const Model& model = tiny()) {
    auto b = make(model, ComputeDType::F32, kv_);
    const KvRing ring{b->kv_capacity(), 0};
    *reused = load_prompt_cache(path, prompt_cache_key(model, *b), prompt, *b, ring, note).reused;
    b->forward(prompt.data() + *reused, int(prompt.size()) - *reused, *reused, ring);
    return logits_of(*b);
  }

  // The cold reference for a warm run that reused `n` tokens of a file saved after the prefill
  // of `saved`: the same computation on one backend, nothing loaded: the prefill of `saved`,
  // then the rest of `prompt` at position n. A warm run must match it bitwise (the file's K/V
  // are exactly what that prefill wrote). It is not bitwise the one-call prefill of `prompt`:
  // the CPU's GEMM rounds a row differently for another row count (see the first test).
  std::vector<float> cold_continued(const std::vector<int>& saved, const std::vector<int>& prompt, int n) {
    auto b = make(tiny(), ComputeDType::F32, kv_);
    const KvRing ring{b->kv_capacity(), 0};
    if (n > 0) b->forward(saved.data(), int(saved.size()), 0, ring);
    b->forward(prompt.data() + n, int(prompt.size()) - n, n, ring);
    return logits_of(*b);
  }
  std::vector<float> cold_split(const std::vector<int>& prompt, int n) {
    return cold_continued(std::vector<int>(prompt.begin(), prompt.begin() + n), prompt, n);
  }

  std::string dir_;
  ComputeDType kv_ = ComputeDType::F32;  // the K/V format of warm() and cold_continued()
};

TEST_F(PromptCache, SamePromptReusesAllButItsLastTokenBitwiseAsTheSavingRunComputedIt) {
  const std::vector<int> p = test::seeded_tokens(40, 1);
  auto b = make(tiny());
  const std::string path = save(p, *b);
  const std::vector<float> cold_whole = logits_of(*b);
  int reused = 0;
  std::string note;
  const std::vector<float> w = warm(path, p, &reused, &note);
  EXPECT_EQ(reused, 39) << note;
  EXPECT_NE(note.find("reused 39 of 40"), std::string::npos) << note;
  EXPECT_EQ(w, cold_continued(p, p, 39));
  // Against the one-call cold prefill the last token's row goes another way through the
  // products (one row, not 40): equal to the last bits (measured: 1e-6 relative).
  float worst = 0;
  for (size_t i = 0; i < w.size(); ++i) worst = std::max(worst, std::fabs(w[i] - cold_whole[i]) / (1 + std::fabs(cold_whole[i])));
  EXPECT_LT(worst, 1e-4f);
  std::printf("warm vs one-call cold prefill: max relative difference %.3g\n", double(worst));
}

TEST_F(PromptCache, ALongerPromptReusesTheWholeFile) {
  const std::vector<int> p = test::seeded_tokens(40, 1);
  auto b = make(tiny());
  const std::string path = save(std::vector<int>(p.begin(), p.begin() + 25), *b);
  int reused = 0;
  std::string note;
  EXPECT_EQ(warm(path, p, &reused, &note), cold_split(p, 25));
  EXPECT_EQ(reused, 25) << note;
}

TEST_F(PromptCache, APartialHitReusesTheCommonPrefix) {
  const std::vector<int> p = test::seeded_tokens(40, 1);
  std::vector<int> q = p;
  q[17] = (q[17] + 1) % 50257;  // the prompts part at token 17
  auto b = make(tiny());
  const std::string path = save(p, *b);
  int reused = 0;
  std::string note;
  EXPECT_EQ(warm(path, q, &reused, &note), cold_continued(p, q, 17));
  EXPECT_EQ(reused, 17) << note;
  // A shorter prompt inside the file: all but its last token.
  const std::vector<int> shorter(p.begin(), p.begin() + 9);
  EXPECT_EQ(warm(path, shorter, &reused, &note), cold_continued(p, shorter, 8));
  EXPECT_EQ(reused, 8) << note;
}

#ifndef GPT2_TEST_CUDA_EMU
// int8 K/V rows (values, then per-head scales) go to the file as raw bytes (a U8 tensor) and
// come back bitwise: a partial hit equals the cold run that computed the same K/V; a file of
// int8 rows is ignored by an fp16 run, and a NaN scale makes the file ignored.
TEST_F(PromptCache, AnInt8RingRoundTripsThroughTheFile) {
  kv_ = ComputeDType::Int8;
  const std::vector<int> p = test::seeded_tokens(40, 1);
  std::vector<int> q = p;
  q[23] = (q[23] + 1) % 50257;
  auto b = make(tiny(), ComputeDType::F32, kv_);
  ASSERT_EQ(b->info().kv_dtype, ComputeDType::Int8);
  const std::string path = save(p, *b);
  int reused = 0;
  std::string note;
  EXPECT_EQ(warm(path, q, &reused, &note), cold_continued(p, q, 23));
  EXPECT_EQ(reused, 23) << note;
  kv_ = ComputeDType::F16;
  warm(path, q, &reused, &note);
  EXPECT_EQ(reused, 0);
  EXPECT_NE(note.find("K/V format"), std::string::npos) << note;

  kv_ = ComputeDType::Int8;
  std::string bytes = test::read_file(path);
  PromptCacheImage img = prompt_cache_image(prompt_cache_key(tiny(), *b), p);
  const float nan = NAN;
  std::memcpy(&bytes[img.k_at + kv_q8_scale_offset(tiny().config.n_embd, 1)], &nan, sizeof nan);  // row 0, head 1
  test::write_file(path, bytes);
  warm(path, q, &reused, &note);
  EXPECT_EQ(reused, 0);
  EXPECT_NE(note.find("NaN or Inf"), std::string::npos) << note;
}
#endif

TEST_F(PromptCache, AMissReusesNothing) {
  auto b = make(tiny());
  const std::string path = save(test::seeded_tokens(40, 1), *b);
  const std::vector<int> other = test::seeded_tokens(30, 2);
  int reused = -1;
  std::string note;
  EXPECT_EQ(warm(path, other, &reused, &note), cold_split(other, 0));
  EXPECT_EQ(reused, 0);
  EXPECT_NE(note.find("reused 0 of 30"), std::string::npos) << note;
  EXPECT_EQ(warm(dir_ + "/absent", other, &reused, &note), cold_split(other, 0));
  EXPECT_NE(note.find("none yet"), std::string::npos) << note;
}

TEST_F(PromptCache, AFileForAnotherModelDeviceOrFormatIsIgnored) {
  const std::vector<int> p = test::seeded_tokens(40, 1);
  auto b = make(tiny());
  const std::string path = save(p, *b);
  // Another weight file (the same model stored fp16) has another fingerprint.
  EXPECT_NE(model_fingerprint(tiny().config, tiny().file), model_fingerprint(tiny("fp16").config, tiny("fp16").file));
  int reused = -1;
  std::string note;
  warm(path, p, &reused, &note, tiny("fp16"));
  EXPECT_EQ(reused, 0);
  EXPECT_NE(note.find("ignored: it was written for model"), std::string::npos) << note;
  const PromptCacheKey key = prompt_cache_key(tiny(), *b);
  for (auto change : {+[](PromptCacheKey& k) { k.device = "other"; }, +[](PromptCacheKey& k) { k.dtype = "bf16"; },
                      +[](PromptCacheKey& k) { k.kv_format = "fp16"; }, +[](PromptCacheKey& k) { k.max_tokens = 8; }}) {
    PromptCacheKey k = key;
    change(k);
    auto fresh = make(tiny());
    EXPECT_EQ(load_prompt_cache(path, k, p, *fresh, KvRing{fresh->kv_capacity(), 0}, &note).reused, 0);
    EXPECT_NE(note.find("ignored: "), std::string::npos) << note;
  }
}

TEST_F(PromptCache, ATruncatedFileIsIgnored) {
  const std::vector<int> p = test::seeded_tokens(40, 1);
  auto b = make(tiny());
  const std::string bytes = test::read_file(save(p, *b));
  for (size_t cut : {size_t(0), size_t(5), size_t(8), size_t(100), size_t(300), bytes.size() / 2, bytes.size() - 1}) {
    const std::string path = dir_ + "/cut" + std::to_string(cut);
    test::write_file(path, bytes.substr(0, cut));
    std::string note;
    auto fresh = make(tiny());
    EXPECT_EQ(load_prompt_cache(path, prompt_cache_key(tiny(), *fresh), p, *fresh, KvRing{fresh->kv_capacity(), 0}, &note).reused, 0) << cut;
    EXPECT_NE(note.find("ignored: "), std::string::npos) << cut << ": " << note;
  }
}

// A valid file's header with one thing changed, and its data; each must be ignored.
TEST_F(PromptCache, HostileHeadersAreIgnored) {
  const std::vector<int> p = test::seeded_tokens(6, 1);
  auto b = make(tiny());
  const std::string bytes = test::read_file(save(p, *b));
  uint64_t hlen = 0;
  std::memcpy(&hlen, bytes.data(), 8);
  const std::string header = bytes.substr(8, size_t(hlen)), data = bytes.substr(8 + size_t(hlen));
  auto with = [&](const std::string& from, const std::string& to, const std::string& d) {
    std::string h = header;
    const size_t at = h.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) h.replace(at, from.size(), to);
    std::string out(8, '\0');
    const uint64_t n = h.size();
    std::memcpy(&out[0], &n, 8);
    return out + h + d;
  };
  const std::string ids = "\"ids\":\"" + std::to_string(p[0]);
  std::string nan_data = data;
  const float nan = std::nanf("");
  std::memcpy(&nan_data[12], &nan, 4);
  const std::vector<std::string> hostile = {
      with(ids, "\"ids\":\"50257", data),                   // an id outside the vocabulary
      with(ids, "\"ids\":\"-1", data),                      // negative
      with(ids, "\"ids\":\"99999999999999999999", data),    // overflowing
      with(ids, "\"ids\":\"," + std::to_string(p[0]), data),  // an empty entry
      with("\"n_tokens\":\"6\"", "\"n_tokens\":\"7\"", data),  // miscounted
      with("\"n_tokens\":\"6\"", "\"n_tokens\":6", data),   // not a string
      with("\"format\":\"gpt2-gen-prompt-cache/1\"", "\"format\":\"gpt2-gen-prompt-cache/2\"", data),
      with("\"dtype\":\"F32\"", "\"dtype\":\"F16\"", data),  // K as another type than the ring's
      with("[2,6,128]", "[2,3,256]", data),                  // same bytes, another shape
      with("\"__metadata__\"", "\"__metadata_\"", data),     // no metadata
      with("", "", nan_data),                                // a NaN in K
      with("\"k\":", "\"k\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"k2\":", data),  // overlapping
  };
  for (size_t i = 0; i < hostile.size(); ++i) {
    const std::string path = dir_ + "/hostile" + std::to_string(i);
    test::write_file(path, hostile[i]);
    std::string note;
    auto fresh = make(tiny());
    EXPECT_EQ(load_prompt_cache(path, prompt_cache_key(tiny(), *fresh), p, *fresh, KvRing{fresh->kv_capacity(), 0}, &note).reused, 0) << i;
    EXPECT_NE(note.find("ignored: "), std::string::npos) << i << ": " << note;
  }
}

// read_kv() through a wrapping ring gives the positions a forward() wrote, wherever their slots.
TEST_F(PromptCache, ReadAndWriteFollowTheRingsWrap) {
  const std::vector<int> p = test::seeded_tokens(20, 3);
  auto flat = make(tiny()), wrapped = make(tiny());
  const int cap = flat->kv_capacity();
  const KvRing ring0{cap, 0}, ring_w{cap, cap - 7};
  flat->forward(p.data(), 20, 0, ring0);
  wrapped->forward(p.data(), 20, 0, ring_w);
  const size_t bytes = size_t(tiny().config.n_layer) * 20 * flat->kv_row_bytes();
  std::vector<uint8_t> k0(bytes), v0(bytes), kw(bytes), vw(bytes);
  flat->read_kv(0, 0, 20, ring0, k0.data(), v0.data(), 20);
  wrapped->read_kv(0, 0, 20, ring_w, kw.data(), vw.data(), 20);
  EXPECT_EQ(k0, kw);
  EXPECT_EQ(v0, vw);
  // Written into another wrap and read back: the same bytes; and the rest prefilled after it
  // gives the logits of the flat ring's.
  auto loaded = make(tiny());
  const KvRing ring_l{cap, cap - 3};
  loaded->write_kv(0, p.data(), 0, 19, ring_l, k0.data(), v0.data(), 20);
  loaded->forward(p.data() + 19, 1, 19, ring_l);
  EXPECT_EQ(logits_of(*loaded), cold_continued(p, p, 19));
  EXPECT_THROW(loaded->read_kv(0, 0, 21, ring_l, kw.data(), vw.data(), 20), Error);  // stride < n
  EXPECT_THROW(loaded->write_kv(0, p.data(), 0, cap + 1, ring_l, k0.data(), v0.data(), cap + 1), Error);
}

TEST(PromptCachePrefix, LongestCommonPrefixLeavesTheLastPromptToken) {
  EXPECT_EQ(reusable_prefix({1, 2, 3}, {1, 2, 3}), 2);
  EXPECT_EQ(reusable_prefix({1, 2, 3}, {1, 2, 3, 4}), 3);
  EXPECT_EQ(reusable_prefix({1, 2, 3, 4}, {1, 2, 9, 4}), 2);
  EXPECT_EQ(reusable_prefix({5}, {1, 2}), 0);
  EXPECT_EQ(reusable_prefix({1}, {1}), 0);
  EXPECT_EQ(reusable_prefix({}, {1, 2}), 0);
}

}  // namespace
}  // namespace gpt2
