// Beam search on the CUDA backend, emulated on the CPU: the BeamGolden suite (beam_suite.cpp:
// transformers' 24 recorded searches, with and without the cache) on the CUDA backend's batched
// decode and its history-table reorder() (src/cuda/backend_cuda.cpp), fp32.
#include <gtest/gtest.h>

#include "beam_suite.h"
#include "cuda/backend_cuda.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

const Model& tiny_model() {
  static const Model model = load_model(test::tiny_model("fp32"));
  return model;
}

std::unique_ptr<Backend> cuda_backend(int n_seqs) {
  BackendOptions o;
  o.device = Device::Cuda;
  o.dtype = ComputeDType::F32;
  o.n_seqs = n_seqs;
  return make_cuda_backend(tiny_model(), o);
}

using test::BeamGolden;
INSTANTIATE_TEST_SUITE_P(CudaEmu, BeamGolden, ::testing::Values(test::BeamBackend{"CudaEmu", cuda_backend}),
                         test::beam_backend_name);

}  // namespace
}  // namespace gpt2
