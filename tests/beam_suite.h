// Beam search against transformers' recorded beams (../shared/golden/tiny-gpt2/
// reference_beams.json, 24 cases) on any backend. The suite is parameterised by a backend
// factory, so a backend joins with one INSTANTIATE_TEST_SUITE_P of BeamGolden (the CPU's:
// tests/test_beam.cpp; CUDA on the emulator: one more file compiling beam_suite.cpp with its own
// factory, once its reorder() lands).
#pragma once
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "engine/backend.h"

namespace gpt2::test {

// A backend of the tiny fp32 model holding `n_seqs` sequences.
struct BeamBackend {
  std::string name;  // for the test names: letters and digits only
  std::function<std::unique_ptr<Backend>(int n_seqs)> make;
};

inline void PrintTo(const BeamBackend& b, std::ostream* os) { *os << b.name; }  // gtest's name for a parameter

class BeamGolden : public ::testing::TestWithParam<BeamBackend> {};

// INSTANTIATE_TEST_SUITE_P's name generator: the factory's name.
std::string beam_backend_name(const ::testing::TestParamInfo<BeamBackend>& info);

}  // namespace gpt2::test
