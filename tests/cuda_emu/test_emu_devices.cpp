// The CUDA backend on each GPU cuda-emu plays (emu::DeviceSpec: a T4, an A100, an H100, and a
// V100 below what gpt2-gen runs on): the paths it chooses from the device's limits
// (src/cuda/device_paths.h), as BackendInfo::device_paths reports them and as its launches
// show them (the emulator counts PDL launches, L2 windows and the largest shared memory
// asked for, and refuses what the played GPU would); a prefill and a few decode tokens
// agreeing with the CPU backend; and the refusals. The expected paths are worked out by hand
// from the GPUs' published limits (the comments), not read from the code.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include "app/backend_choice.h"
#include "base/error.h"
#include "cpu/backend_cpu.h"
#include "cuda/backend_cuda.h"
#include "engine/generator.h"
#include "golden.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

void play(const char* key) {
  const emu::DeviceSpec* spec = emu::find_device(key);
  ASSERT_NE(spec, nullptr) << key;
  emu::select_device(*spec);
}

BackendOptions options(Device device, ComputeDType dtype) {
  BackendOptions o;
  o.device = device;
  o.dtype = dtype;
  return o;
}

// A CUDA backend made with GPT2_CUDA_VARIANTS=`variants`.
std::unique_ptr<Backend> cuda_backend(const Model& m, ComputeDType dtype, const char* variants) {
  setenv("GPT2_CUDA_VARIANTS", variants, 1);
  struct Unset {
    ~Unset() { unsetenv("GPT2_CUDA_VARIANTS"); }
  } unset;
  return make_cuda_backend(m, options(Device::Cuda, dtype));
}

// What a GPU gets, by hand from its limits, for the tiny model in fp32 (LM head: 50257 x 128 x
// 4 = 25,731,584 bytes) with GPT2_CUDA_VARIANTS=pdl,l2. The prefill's 64-key tile needs 67,840
// bytes of shared memory per block ((64 x 68 + 64 x 65 + 64 x 64 + 64 x 68) floats), its 32-key
// tile 42,752 ((64 x 68 + 64 x 33 + 32 x 64 + 32 x 68) floats).
struct Expected {
  const char* key;
  const char* paths;   // BackendInfo::device_paths
  size_t smem;         // the largest dynamic shared memory a launch asked for
  bool pdl;            // compute capability 9.0 or newer
  size_t window;       // min(LM head, persisting L2 max, window max, L2 / 2); 0 without persisting L2
};
const Expected kExpected[] = {
    // T4: 64 KiB opt-in < 67,840 bytes; 7.5 < 9.0; no persisting L2; 7.5 < 8.0.
    {"t4",
     "compute capability 7.5, 40 SMs: prefill key tile 32, pdl unavailable (needs compute capability 9.0), "
     "l2 window unavailable (no persisting L2), bf16 unavailable (needs compute capability 8.0)",
     42752, false, 0},
    // A100: 163 KiB opt-in; 8.0 < 9.0; the window is half its 40 MiB L2 (< 30 MiB set-aside max,
    // < the LM head).
    {"a100",
     "compute capability 8.0, 108 SMs: prefill key tile 64, pdl unavailable (needs compute capability 9.0), "
     "l2 window 20.0 MiB, bf16 available",
     67840, false, size_t(20) << 20},
    // H100: 227 KiB opt-in; 9.0 with sm_90 code; the whole LM head (< half its 50 MiB L2, < the
    // 37.5 MiB set-aside max).
    {"h100",
     "compute capability 9.0, 132 SMs: prefill key tile 64, pdl on, l2 window 24.5 MiB, bf16 available", 67840,
     true, 25731584},
};

void PrintTo(const Expected& e, std::ostream* os) { *os << e.key; }

class EmulatedGpu : public ::testing::TestWithParam<Expected> {};

// The paths each GPU gets, printed; then a 6-token prefill and 3 greedy tokens (the
// decode graph, with PDL and the window where the GPU has them) give the CPU backend's tokens
// and last logits (fp32, within the 1e-5 of test_gpu_backend).
TEST_P(EmulatedGpu, ChoosesPathsFromItsLimitsAndAgreesWithTheCpu) {
  const Expected& want = GetParam();
  const Model model = load_model(test::tiny_model("fp32"));
  play(want.key);
  auto gpu = cuda_backend(model, ComputeDType::F32, "pdl,l2");
  std::printf("%s: %s\n", want.key, gpu->info().device_paths.c_str());
  EXPECT_EQ(gpu->info().device_paths, want.paths);
  EXPECT_EQ(gpu->info().note, "");

  auto cpu = make_cpu_backend(model, BackendOptions{});
  GenerationOptions g;
  g.max_new_tokens = 3;
  g.ignore_eos = true;
  g.sampling.temperature = 0;
  const std::vector<int> prompt = {2061, 318, 509, 53, 40918, 30};
  EXPECT_EQ(generate(*gpu, prompt, g, nullptr).generated, generate(*cpu, prompt, g, nullptr).generated);
  const int V = model.config.vocab_size;
  std::vector<float> got(size_t(V), 0.0f), ref(size_t(V), 0.0f);
  gpu->read_logits(got.data());
  cpu->read_logits(ref.data());
  EXPECT_LE(test::max_rel_error(got.data(), ref.data(), got.size()), 1e-5);

  const emu::LaunchCounts launched = emu::launch_counts();  // since play(): load, warm-up, captures, the run
  EXPECT_EQ(launched.largest_smem, want.smem);
  EXPECT_EQ(launched.pdl_launches > 0, want.pdl);
  EXPECT_EQ(launched.window_launches > 0, want.window > 0);
  EXPECT_EQ(launched.largest_window, want.window);
}

INSTANTIATE_TEST_SUITE_P(Gpus, EmulatedGpu, ::testing::ValuesIn(kExpected),
                         [](const ::testing::TestParamInfo<Expected>& i) { return std::string(i.param.key); });

// An H100 running kernels built without sm_90 code (JIT-compiled from compute_80 PTX: no
// griddepcontrol in them) and whose driver refuses the persisting L2 set-aside (as under MPS or
// MIG): PDL stays off although asked for, and the l2 variant runs without its window, with a note.
TEST(EmulatedGpuPaths, WithoutSm90CodeNoPdlAndARefusedSetAsideSkipsTheWindow) {
  const Model model = load_model(test::tiny_model("fp32"));
  emu::DeviceSpec spec = *emu::find_device("h100");
  spec.ptx = 80;
  spec.refuses_set_aside = true;
  emu::select_device(spec);
  auto gpu = cuda_backend(model, ComputeDType::F32, "pdl,l2");
  EXPECT_EQ(gpu->info().device_paths,
            "compute capability 9.0, 132 SMs: prefill key tile 64, pdl unavailable (the kernels run from compute_80 "
            "code, which has no griddepcontrol; build for 90), l2 window skipped (the persisting L2 set-aside was "
            "refused: cudaErrorUnsupportedLimit), bf16 available");
  EXPECT_EQ(gpu->info().note,
            "note: GPT2_CUDA_VARIANTS=l2 runs without its L2 window: skipped (the persisting L2 set-aside was "
            "refused: cudaErrorUnsupportedLimit)");
  EXPECT_EQ(emu::launch_counts().pdl_launches, 0);
  EXPECT_EQ(emu::launch_counts().window_launches, 0);
}

// Below compute capability 7.5: one line saying so; --device cuda is refused, --device auto runs
// on the CPU with that line as its note, and the backend itself refuses too.
TEST(EmulatedGpuPaths, OlderThanTuringIsRefusedAndAutoFallsBackToTheCpu) {
  const Model model = load_model(test::tiny_model("fp32"));
  play("v100");
  const std::string why =
      "this GPU (cuda-emu as Tesla V100-SXM2-16GB) is compute capability 7.0; gpt2-gen needs 7.5 or newer";
  std::string got;
  EXPECT_FALSE(cuda_device_usable(&got));
  EXPECT_EQ(got, why);
  const auto refused = [&](const std::function<void()>& make) {
    try {
      make();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(refused([&] { make_backend(model, options(Device::Cuda, ComputeDType::F16), nullptr); }),
            "--device cuda: no usable CUDA device: " + why + "; use --device cpu");
  EXPECT_EQ(refused([&] { make_cuda_backend(model, options(Device::Cuda, ComputeDType::F16)); }), why);
  std::string note;
  auto b = make_backend(model, options(Device::Auto, ComputeDType::F32), &note);
  EXPECT_EQ(b->info().device, "cpu");
  EXPECT_EQ(note, "note: running on the CPU: no usable CUDA device: " + why);
}

// bf16 needs compute capability 8.0: refused on a T4 with one line (--device cuda, and the
// backend itself), --device auto runs on the CPU with that note; fp16 and fp32 are fine there;
// an A100 and an H100 take bf16.
TEST(EmulatedGpuPaths, Bf16IsRefusedBeforeAmpereWithOneLine) {
  const Model model = load_model(test::tiny_model("fp32"));
  const std::string why = "--dtype bf16 needs compute capability 8.0 or newer; this GPU (cuda-emu as Tesla T4) is "
                          "7.5: use --dtype fp16 or fp32";
  for (const char* key : {"a100", "h100", "t4"}) {
    play(key);
    std::string got;
    EXPECT_EQ(cuda_dtype_supported(ComputeDType::BF16, &got), std::string(key) != "t4") << key;
    EXPECT_TRUE(cuda_dtype_supported(ComputeDType::F16, nullptr)) << key;
    EXPECT_TRUE(cuda_dtype_supported(ComputeDType::F32, nullptr)) << key;
  }
  std::string got;
  cuda_dtype_supported(ComputeDType::BF16, &got);
  EXPECT_EQ(got, why);
  try {
    make_backend(model, options(Device::Cuda, ComputeDType::BF16), nullptr);
    ADD_FAILURE() << "--device cuda --dtype bf16 ran on a T4";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), why);
  }
  EXPECT_THROW(make_cuda_backend(model, options(Device::Cuda, ComputeDType::BF16)), Error);
  std::string note;
  auto b = make_backend(model, options(Device::Auto, ComputeDType::BF16), &note);
  EXPECT_EQ(b->info().device, "cpu");
  EXPECT_EQ(note, "note: running on the CPU: " + why);
}

}  // namespace
}  // namespace gpt2
