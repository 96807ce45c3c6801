// The BeamGolden suite (beam_suite.h): every case of reference_beams.json, with and without the
// K/V cache, must return transformers' sequences token for token, best first, and its
// sequences_scores within 1e-4.
#include "beam_suite.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "engine/beam.h"
#include "test_support.h"

namespace gpt2::test {
namespace {

struct BeamCase {
  std::string settings;  // as the file writes them, for messages
  std::vector<int> prompt;
  GenerationOptions gen;
  BeamOptions beams;
  std::vector<std::vector<int>> sequences;
  std::vector<double> scores;
};

EarlyStopping early_stopping_of(const nlohmann::json& v) {
  if (v.is_string()) return EarlyStopping::Never;  // "never"
  return v.get<bool>() ? EarlyStopping::True : EarlyStopping::False;
}

// The cases with transformers' defaults where a setting is absent (early_stopping false,
// length_penalty 1, one returned sequence, no processors).
const std::vector<BeamCase>& beam_cases() {
  static const std::vector<BeamCase> cases = [] {
    const nlohmann::json j = nlohmann::json::parse(read_file(shared_dir() + "/golden/tiny-gpt2/reference_beams.json"));
    std::vector<BeamCase> out;
    for (const nlohmann::json& c : j.at("cases")) {
      const nlohmann::json& s = c.at("settings");
      BeamCase b;
      b.settings = s.dump();
      b.prompt = c.at("prompt").get<std::vector<int>>();
      b.gen.max_new_tokens = j.at("max_new_tokens").get<int>();
      b.gen.sampling.temperature = 0;
      b.gen.eos_id = s.at("eos_token_id").get<int>();
      b.gen.sampling.penalties.repeat_penalty = s.value("repetition_penalty", 1.0f);
      b.gen.sampling.penalties.no_repeat_ngram_size = s.value("no_repeat_ngram_size", 0);
      b.beams.num_beams = s.at("num_beams").get<int>();
      b.beams.length_penalty = s.value("length_penalty", 1.0f);
      b.beams.early_stopping = s.contains("early_stopping") ? early_stopping_of(s["early_stopping"]) : EarlyStopping::False;
      b.beams.num_return_sequences = s.value("num_return_sequences", 1);
      b.sequences = c.at("new_tokens").get<std::vector<std::vector<int>>>();
      b.scores = c.at("sequences_scores").get<std::vector<double>>();
      out.push_back(std::move(b));
    }
    return out;
  }();
  return cases;
}

// One backend for all cases, holding the most beams any case uses: each search must start
// clean whatever the one before left in the rings and history tables.
void expect_all_cases_match(const BeamBackend& factory, bool cache) {
  ASSERT_EQ(beam_cases().size(), 24u);
  int most_beams = 1;
  for (const BeamCase& c : beam_cases()) most_beams = std::max(most_beams, c.beams.num_beams);
  std::unique_ptr<Backend> backend = factory.make(most_beams);
  for (size_t i = 0; i < beam_cases().size(); ++i) {
    // Quick mode (the emulated GPU: a search there takes seconds): of each setting's three
    // prompts one, with the cache for even settings and without it for odd ones, so that every
    // setting and both modes are still checked, in a sixth of the time.
    const size_t setting = i / 3;
    if (quick() && (i % 3 != setting % 3 || cache != (setting % 2 == 0))) continue;
    const BeamCase& c = beam_cases()[i];
    SCOPED_TRACE(c.settings + (cache ? " with the cache" : " without the cache"));
    GenerationOptions gen = c.gen;
    gen.use_cache = cache;
    const BeamResult r = beam_search(*backend, c.prompt, gen, c.beams);
    ASSERT_EQ(r.sequences.size(), c.sequences.size());
    for (size_t i = 0; i < c.sequences.size(); ++i) {
      EXPECT_EQ(r.sequences[i].tokens, c.sequences[i]) << "sequence " << i;
      EXPECT_NEAR(r.sequences[i].score, c.scores[i], 1e-4) << "sequence " << i;
      const bool eos = !c.sequences[i].empty() && c.sequences[i].back() == c.gen.eos_id;
      EXPECT_EQ(r.sequences[i].finish, eos ? FinishReason::Eos : FinishReason::Length) << "sequence " << i;
    }
  }
}

TEST_P(BeamGolden, EveryCaseWithTheCache) { expect_all_cases_match(GetParam(), true); }
TEST_P(BeamGolden, EveryCaseWithoutTheCache) { expect_all_cases_match(GetParam(), false); }

}  // namespace

std::string beam_backend_name(const ::testing::TestParamInfo<BeamBackend>& info) { return info.param.name; }

}  // namespace gpt2::test
