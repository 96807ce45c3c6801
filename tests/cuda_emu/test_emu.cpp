// cuda-emu's own tests: that it computes what CUDA computes (shuffles, block reductions, GEMM
// with both transposes, CUB's sort order) and that it refuses what a GPU would hang on, fault on
// or reject (divergent barriers, shuffles with exited lanes, bad launch configurations, copies
// outside an allocation, synchronous work during stream capture), so the `gpu` suites it runs
// can fail for the reasons they would fail on a GPU. Plus the backend's out-of-memory message,
// which needs a device with little memory.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cub/device/device_radix_sort.cuh>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "base/error.h"
#include "cuda/backend_cuda.h"
#include "device_common.cuh"
#include "engine/batch.h"
#include "engine/generator.h"
#include "model/model.h"
#include "test_support.h"

namespace gpt2 {
namespace {

// Each test starts from a device without a sticky error: the failing launches below run in
// child processes (death tests), since a failed launch poisons the device for good, as on a GPU.

template <typename T>
T* device_alloc(size_t n) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(T)), cudaSuccess);
  return static_cast<T*>(p);
}
template <typename T>
std::vector<T> download(const T* d, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

__global__ void warp_and_block_sums(const float* in, float* warp_out, float* block_out) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  warp_out[i] = cuda::warp_sum(in[i]);
  block_out[i] = cuda::block_sum(in[i]);
}

TEST(CudaEmu, WarpShufflesAndBlockReductionsComputeWhatCudaDoes) {
  const int blocks = 3, threads = 256, n = blocks * threads;
  std::vector<float> h(n);
  for (int i = 0; i < n; ++i) h[size_t(i)] = float(i % 7) - 2.0f;  // exact in fp32 sums
  float* in = device_alloc<float>(n);
  float* w = device_alloc<float>(n);
  float* b = device_alloc<float>(n);
  ASSERT_EQ(cudaMemcpy(in, h.data(), n * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  for (int order = 0; order < 2; ++order) {  // consecutive launches run threads in both orders
    emu::Launch(blocks, threads).run(warp_and_block_sums, in, w, b);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    const auto ws = download(w, n), bs = download(b, n);
    for (int i = 0; i < n; ++i) {
      const int warp0 = i & ~31, block0 = i / threads * threads;
      EXPECT_EQ(ws[size_t(i)], std::accumulate(&h[size_t(warp0)], &h[size_t(warp0 + 32)], 0.0f)) << i;
      EXPECT_EQ(bs[size_t(i)], std::accumulate(&h[size_t(block0)], &h[size_t(block0 + threads)], 0.0f)) << i;
    }
  }
  cudaFree(in);
  cudaFree(w);
  cudaFree(b);
}

// Reads its neighbour's shared slot without a barrier in between: on a GPU a race; here one of
// the two thread orders always reads the slot before the neighbour wrote it.
__global__ void missing_barrier(int* out) {
  __shared__ int slot[64];
  slot[threadIdx.x] = int(threadIdx.x);
  out[threadIdx.x] = slot[(threadIdx.x + 1) % 64];
}

TEST(CudaEmu, AMissingBarrierShowsInOneOfTheTwoThreadOrders) {
  int* out = device_alloc<int>(64);
  int wrong = 0;
  for (int order = 0; order < 2; ++order) {
    ASSERT_EQ(cudaMemset(out, 0xFF, 64 * sizeof(int)), cudaSuccess);
    emu::Launch(1, 64).run(missing_barrier, out);
    const auto h = download(out, 64);
    for (int t = 0; t < 64; ++t) wrong += h[size_t(t)] != (t + 1) % 64;
  }
  EXPECT_GT(wrong, 0);
  cudaFree(out);
}

// Half of each warp waits at the barrier, the other half at a shuffle that needs the first
// half: neither can complete (a hang on a GPU).
__global__ void barrier_in_a_branch(float* out) {
  if (threadIdx.x % 32 < 16) __syncthreads();
  out[threadIdx.x] = cuda::warp_sum(1.0f);
}
__global__ void shuffle_after_some_lanes_exit(float* out) {
  if (threadIdx.x % 32 >= 16) return;
  out[threadIdx.x] = cuda::warp_sum(1.0f);  // a full-mask shuffle with 16 lanes gone
}

// Launches in a child process and expects it to report `what` and fail.
template <typename Launch>
void expect_launch_failure(Launch launch, const char* what) {
  EXPECT_DEATH(
      {
        launch();
        const cudaError_t e = cudaDeviceSynchronize();
        std::fprintf(stderr, "%s\n", cudaGetErrorName(e));
        std::exit(e == cudaSuccess ? 0 : 1);
      },
      what);
}

TEST(CudaEmuDeathTest, DivergentSynchronisationFailsTheLaunch) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  expect_launch_failure([] { emu::Launch(1, 64).run(barrier_in_a_branch, device_alloc<float>(64)); },
                        "divergent synchronisation.*\n.*cudaErrorLaunchFailure");
  expect_launch_failure([] { emu::Launch(1, 64).run(shuffle_after_some_lanes_exit, device_alloc<float>(64)); },
                        "a warp shuffle that the rest of their warp never reaches");
}

__global__ void noop(int*) {}

TEST(CudaEmu, BadLaunchConfigurationsAreRejectedLikeOnAGpu) {
  int* p = device_alloc<int>(1);
  emu::Launch(1, 2048).run(noop, p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  emu::Launch(0, 32).run(noop, p);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  emu::Launch(1, 32, 64 * 1024).run(noop, p);  // > 48 KB of dynamic shared memory, not opted in
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  ASSERT_EQ(cudaFuncSetAttribute(noop, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024), cudaSuccess);
  emu::Launch(1, 32, 64 * 1024).run(noop, p);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  cudaFree(p);
}

__global__ void first_launched_behind_a_host_function(int* p) { *p = 1; }
__global__ void loaded_before(int* p) { *p = 2; }

// Modules load lazily, as CUDA's do by default, and a load may synchronise the context: behind a
// queued host function that waits for the host (--profile's stream gate), a deadlock on a GPU.
// So a kernel's first launch there is refused; one loaded before (cudaFuncGetAttributes, or an
// earlier launch) runs. Loading takes device memory, once per kernel.
TEST(CudaEmuDeathTest, AFirstLaunchBehindAQueuedHostFunctionIsRefused) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  expect_launch_failure(
      [] {
        cudaStream_t s;
        cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        cudaLaunchHostFunc(s, [](void*) {}, nullptr);
        emu::Launch(1, 1, 0, s).run(first_launched_behind_a_host_function, device_alloc<int>(1));
      },
      "its lazy loading may synchronise the context");
}

TEST(CudaEmu, KernelsLoadedBeforeRunBehindAHostFunctionAndLoadingTakesMemoryOnce) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* d = device_alloc<int>(1);
  size_t free0 = 0, free1 = 0, free2 = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free0, &total), cudaSuccess);
  cudaFuncAttributes attr{};
  ASSERT_EQ(cudaFuncGetAttributes(&attr, loaded_before), cudaSuccess);
  ASSERT_EQ(cudaMemGetInfo(&free1, &total), cudaSuccess);
  ASSERT_EQ(cudaLaunchHostFunc(s, [](void*) {}, nullptr), cudaSuccess);
  emu::Launch(1, 1, 0, s).run(loaded_before, d);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  ASSERT_EQ(cudaMemGetInfo(&free2, &total), cudaSuccess);
  EXPECT_EQ(download(d, 1)[0], 2);
  EXPECT_LT(free1, free0);   // the load
  EXPECT_EQ(free2, free1);   // the launch loads nothing more
  cudaFree(d);
  cudaStreamDestroy(s);
}

TEST(CudaEmu, CopiesMustStayInsideTheirAllocation) {
  EXPECT_DEATH(
      {
        int* d = device_alloc<int>(4);
        std::vector<int> h(5);
        std::exit(cudaMemcpy(d, h.data(), 5 * sizeof(int), cudaMemcpyHostToDevice) == cudaSuccess ? 0 : 1);
      },
      "reaches outside its device allocation");
}

TEST(CudaEmu, CapturedWorkRunsOnlyWhenTheGraphIsLaunched) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* d = device_alloc<int>(1);
  int host = 0;
  ASSERT_EQ(cudaMemset(d, 0, sizeof(int)), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), cudaSuccess);
  const int seven = 7;
  ASSERT_EQ(cudaMemcpyAsync(d, &seven, sizeof(int), cudaMemcpyHostToDevice, s), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);  // not while capturing
  EXPECT_EQ(cudaMemcpy(&host, d, sizeof(int), cudaMemcpyDeviceToHost), cudaErrorStreamCaptureImplicit);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(&host, d, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(host, 0);  // recorded, not run
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);  // cudaMemcpy does not wait for a non-blocking stream
  ASSERT_EQ(cudaMemcpy(&host, d, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(host, 7);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  cudaFree(d);
}

__global__ void add_one(int* p) { *p += 1; }

// Queued work runs when the host waits for it, reading pinned memory then and pageable memory
// when the copy was issued: the host-side mistakes that race on a GPU give wrong results here.
TEST(CudaEmu, StreamWorkRunsWhenTheHostWaitsForIt) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* d = device_alloc<int>(2);
  int *in = nullptr, *out = nullptr;
  ASSERT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&in), sizeof(int), cudaHostAllocDefault), cudaSuccess);
  ASSERT_EQ(cudaHostAlloc(reinterpret_cast<void**>(&out), sizeof(int), cudaHostAllocDefault), cudaSuccess);
  int pageable = 10;
  *in = 1;
  *out = -1;
  ASSERT_EQ(cudaMemcpyAsync(d, in, sizeof(int), cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(d + 1, &pageable, sizeof(int), cudaMemcpyHostToDevice, s), cudaSuccess);
  emu::Launch(1, 1, 0, s).run(add_one, d);
  ASSERT_EQ(cudaMemcpyAsync(out, d, sizeof(int), cudaMemcpyDeviceToHost, s), cudaSuccess);
  *in = 100;      // too early: the queued copy has not read it yet
  pageable = 20;  // fine: staged when the copy was issued
  EXPECT_EQ(*out, -1);  // nothing has run
  int legacy = 0;       // the legacy stream does not wait for a non-blocking one
  ASSERT_EQ(cudaMemcpy(&legacy, d + 1, sizeof(int), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(legacy, -1);  // the 0xFF bytes of fresh device memory
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(*out, 101);
  ASSERT_EQ(cudaMemcpyAsync(&legacy, d + 1, sizeof(int), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_EQ(legacy, 10);  // into pageable memory the copy is synchronous
  cudaFreeHost(in);
  cudaFreeHost(out);
  cudaFree(d);
  cudaStreamDestroy(s);
}

// --profile's plumbing (src/cuda/profile_cuda.h): events and host functions run in stream order,
// when the host waits; an event not yet reached has no time.
TEST(CudaEmu, EventsAndHostFunctionsRunInStreamOrder) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* d = device_alloc<int>(1);
  ASSERT_EQ(cudaMemsetAsync(d, 0, sizeof(int), s), cudaSuccess);
  cudaEvent_t begin, end;
  ASSERT_EQ(cudaEventCreate(&begin), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&end), cudaSuccess);
  struct Seen {
    int* device;
    int value = -1;
  } seen{d};
  ASSERT_EQ(cudaEventRecord(begin, s), cudaSuccess);
  emu::Launch(1, 1, 0, s).run(add_one, d);
  // Reads device memory as the stream reaches it (the emulation's memory is the host's).
  auto read = [](void* p) { static_cast<Seen*>(p)->value = *static_cast<Seen*>(p)->device; };
  ASSERT_EQ(cudaLaunchHostFunc(s, read, &seen), cudaSuccess);
  emu::Launch(1, 1, 0, s).run(add_one, d);
  ASSERT_EQ(cudaEventRecord(end, s), cudaSuccess);
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, begin, end), cudaErrorNotReady);
  EXPECT_EQ(seen.value, -1);
  ASSERT_EQ(cudaEventSynchronize(end), cudaSuccess);
  EXPECT_EQ(seen.value, 1);  // after the first kernel, before the second
  EXPECT_EQ(download(d, 1)[0], 2);
  ASSERT_EQ(cudaEventElapsedTime(&ms, begin, end), cudaSuccess);
  EXPECT_GE(ms, 0.0f);
  cudaEventDestroy(begin);
  cudaEventDestroy(end);
  cudaFree(d);
  cudaStreamDestroy(s);
}

// Launch-ahead waits for one event while later work is queued: cudaEventSynchronize runs the
// stream up to the event on one call and everything queued on the next, the two orders a GPU
// may show. A timing-free event refuses cudaEventElapsedTime.
TEST(CudaEmu, EventWaitsAlternateBetweenUpToTheEventAndEverything) {
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  int* d = device_alloc<int>(1);
  cudaEvent_t e;
  ASSERT_EQ(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), cudaSuccess);
  std::vector<int> after_wait;
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(cudaMemsetAsync(d, 0, sizeof(int), s), cudaSuccess);
    emu::Launch(1, 1, 0, s).run(add_one, d);
    ASSERT_EQ(cudaEventRecord(e, s), cudaSuccess);
    emu::Launch(1, 1, 0, s).run(add_one, d);  // queued behind the event
    ASSERT_EQ(cudaEventSynchronize(e), cudaSuccess);
    int seen = -1;
    std::memcpy(&seen, d, sizeof(int));  // the emulated device's memory is the host's
    after_wait.push_back(seen);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    EXPECT_EQ(download(d, 1)[0], 2);
  }
  std::sort(after_wait.begin(), after_wait.end());
  EXPECT_EQ(after_wait, (std::vector<int>{1, 2}));  // one wait stopped at the event, one ran on
  float ms = 0;
  EXPECT_EQ(cudaEventElapsedTime(&ms, e, e), cudaErrorInvalidResourceHandle);
  EXPECT_EQ(cudaEventCreateWithFlags(&e, 0x4), cudaErrorInvalidValue);
  cudaEventDestroy(e);
  cudaFree(d);
  cudaStreamDestroy(s);
}

// cublasGemmEx with every transpose combination against a double-precision loop.
TEST(CudaEmu, GemmExMatchesAReferenceForEveryTranspose) {
  const int m = 5, n = 3, k = 7;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> d(-1, 1);
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  for (auto ta : {CUBLAS_OP_N, CUBLAS_OP_T})
    for (auto tb : {CUBLAS_OP_N, CUBLAS_OP_T}) {
      const int lda = ta == CUBLAS_OP_N ? m + 1 : k + 2, ldb = tb == CUBLAS_OP_N ? k : n + 1, ldc = m + 3;
      const int a_cols = ta == CUBLAS_OP_N ? k : m, b_cols = tb == CUBLAS_OP_N ? n : k;
      std::vector<float> A(size_t(lda * a_cols)), B(size_t(ldb * b_cols)), C(size_t(ldc * n));
      for (float& v : A) v = d(rng);
      for (float& v : B) v = d(rng);
      for (float& v : C) v = d(rng);
      float* dA = device_alloc<float>(A.size());
      float* dB = device_alloc<float>(B.size());
      float* dC = device_alloc<float>(C.size());
      cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice);
      const float alpha = 0.5f, beta = 2.0f;
      ASSERT_EQ(cublasGemmEx(h, ta, tb, m, n, k, &alpha, dA, CUDA_R_32F, lda, dB, CUDA_R_32F, ldb, &beta, dC,
                             CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                CUBLAS_STATUS_SUCCESS);
      const auto got = download(dC, C.size());
      for (int j = 0; j < n; ++j)
        for (int i = 0; i < m; ++i) {
          double acc = 0;
          for (int p = 0; p < k; ++p) {
            const double a = ta == CUBLAS_OP_N ? A[size_t(p * lda + i)] : A[size_t(i * lda + p)];
            const double b = tb == CUBLAS_OP_N ? B[size_t(j * ldb + p)] : B[size_t(p * ldb + j)];
            acc += a * b;
          }
          const double want = alpha * acc + beta * C[size_t(j * ldc + i)];
          EXPECT_NEAR(got[size_t(j * ldc + i)], want, 1e-5) << ta << tb << " (" << i << ", " << j << ")";
        }
      cudaFree(dA);
      cudaFree(dB);
      cudaFree(dC);
    }
  // Type combinations outside cuBLAS's CUBLAS_COMPUTE_32F table are refused, as cuBLAS does.
  float* x = device_alloc<float>(4);
  const float one = 1.0f;
  const auto gemm = [&](cudaDataType_t a, cudaDataType_t b, cudaDataType_t c) {
    return cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, x, a, 1, x, b, 1, &one, x, c, 1,
                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  EXPECT_EQ(gemm(CUDA_R_16F, CUDA_R_16F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(gemm(CUDA_R_16BF, CUDA_R_16BF, CUDA_R_16BF), CUBLAS_STATUS_SUCCESS);
  EXPECT_EQ(gemm(CUDA_R_16F, CUDA_R_16BF, CUDA_R_32F), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(CUDA_R_32F, CUDA_R_32F, CUDA_R_16F), CUBLAS_STATUS_NOT_SUPPORTED);
  EXPECT_EQ(gemm(CUDA_R_16F, CUDA_R_16F, CUDA_R_16BF), CUBLAS_STATUS_NOT_SUPPORTED);
  cudaFree(x);
  cublasDestroy(h);
}

// The math mode is recorded: under CUBLAS_TF32_TENSOR_OP_MATH an fp32 GemmEx reads its inputs
// as TF32 (10 fraction bits), as tensor cores do; under the default math it stays exact.
TEST(CudaEmu, Tf32MathModeRoundsFp32InputsAndIsCounted) {
  cublasHandle_t h;
  ASSERT_EQ(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
  // 1 + 2^-12 holds 12 fraction bits: TF32 rounds it to 1, fp32 keeps it.
  const float a = 1.0f + std::ldexp(1.0f, -12), b = 1.0f, zero = 0.0f, one = 1.0f;
  float* d = device_alloc<float>(3);
  cudaMemcpy(d, &a, 4, cudaMemcpyHostToDevice);
  cudaMemcpy(d + 1, &b, 4, cudaMemcpyHostToDevice);
  const auto product = [&](cublasMath_t mode) {
    EXPECT_EQ(cublasSetMathMode(h, mode), CUBLAS_STATUS_SUCCESS);
    EXPECT_EQ(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 1, 1, 1, &one, d, CUDA_R_32F, 1, d + 1, CUDA_R_32F, 1, &zero,
                           d + 2, CUDA_R_32F, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              CUBLAS_STATUS_SUCCESS);
    return download(d + 2, 1)[0];
  };
  const emu::Fp32GemmCounts before = emu::fp32_gemm_counts();
  EXPECT_EQ(product(CUBLAS_DEFAULT_MATH), a);
  EXPECT_EQ(product(CUBLAS_TF32_TENSOR_OP_MATH), 1.0f);
  EXPECT_EQ(emu::fp32_gemm_counts().default_math, before.default_math + 1);
  EXPECT_EQ(emu::fp32_gemm_counts().tf32, before.tf32 + 1);
  cudaFree(d);
  cublasDestroy(h);
}

// CUB's descending radix order: by bits, so +0 before -0 and the sort is stable.
TEST(CudaEmu, RadixSortDescendingIsStableAndOrdersSignedZerosByBits) {
  const std::vector<float> keys = {1.0f, -0.0f, 3.0f, 0.0f, 1.0f, -2.0f, 0.0f};
  std::vector<int> ids(keys.size());
  std::iota(ids.begin(), ids.end(), 0);
  const int n = int(keys.size());
  float *k_in = device_alloc<float>(keys.size()), *k_out = device_alloc<float>(keys.size());
  int *v_in = device_alloc<int>(keys.size()), *v_out = device_alloc<int>(keys.size());
  cudaMemcpy(k_in, keys.data(), keys.size() * 4, cudaMemcpyHostToDevice);
  cudaMemcpy(v_in, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice);
  size_t bytes = 0;
  ASSERT_EQ(cub::DeviceRadixSort::SortPairsDescending(nullptr, bytes, k_in, k_out, v_in, v_out, n), cudaSuccess);
  char* temp = device_alloc<char>(bytes);
  ASSERT_EQ(cub::DeviceRadixSort::SortPairsDescending(temp, bytes, k_in, k_out, v_in, v_out, n), cudaSuccess);
  EXPECT_EQ(download(v_out, keys.size()), (std::vector<int>{2, 0, 4, 3, 6, 1, 5}));
  for (void* p : {static_cast<void*>(k_in), static_cast<void*>(k_out), static_cast<void*>(v_in),
                  static_cast<void*>(v_out), static_cast<void*>(temp)})
    cudaFree(p);
}

BackendOptions cuda_options(ComputeDType dtype, int kv_capacity = 0) {
  BackendOptions o;
  o.device = Device::Cuda;
  o.dtype = dtype;
  o.kv_capacity = kv_capacity;
  return o;
}

// The CUDA backend's out-of-memory error names what it asked for and what is free.
TEST(CudaEmu, TheBackendsOutOfMemoryErrorSaysHowManyBytes) {
  const Model model = load_model(test::tiny_model("fp32"));
  const BackendOptions o = cuda_options(ComputeDType::F32);
  emu::set_memory_size(size_t(8) << 20);
  try {
    make_cuda_backend(model, o);
    ADD_FAILURE() << "8 MiB of device memory did not run out";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("out of GPU memory: asked for "), std::string::npos) << m;
    EXPECT_NE(m.find(" free of 8388608 on "), std::string::npos) << m;
    EXPECT_NE(m.find("try a smaller --ctx-size"), std::string::npos) << m;
  }
  emu::set_memory_size(size_t(16) << 30);
  EXPECT_NO_THROW(make_cuda_backend(model, o));
}

// Every buffer is allocated at load: generating, with the cache (the decode graph, a context
// shift in a small ring, sampling) and without it, allocates and frees nothing on the device.
TEST(CudaEmu, TheBackendAllocatesNothingWhileGenerating) {
  const Model model = load_model(test::small_vocab_model());
  auto backend = make_cuda_backend(model, cuda_options(ComputeDType::F16, 24));
  const long before = emu::allocation_calls();
  for (bool cache : {true, false}) {
    GenerationOptions g;
    g.max_new_tokens = 24;  // 28 tokens in a 24-slot ring: a context shift
    g.use_cache = cache;
    g.context_shift = true;
    g.ignore_eos = true;
    g.sampling.temperature = cache ? 0.9f : 0.0f;
    const auto r = generate(*backend, {2061, 318, 509, 53}, g, nullptr);
    EXPECT_EQ(int(r.generated.size()), 24);
    EXPECT_GE(r.context_shifts, 1);
  }
  EXPECT_EQ(emu::allocation_calls(), before);
}

// ... and neither does a batched backend (--parallel 3) running five requests through
// generate_batch(): prefills into refilled slots, batched steps of 1 to 3 rows, per-row sampling
// with and without the logits processors, a reorder.
TEST(CudaEmu, ABatchedBackendAllocatesNothingWhileGenerating) {
  const Model model = load_model(test::small_vocab_model());
  BackendOptions o = cuda_options(ComputeDType::F16, 24);
  o.n_seqs = 3;
  auto backend = make_cuda_backend(model, o);
  const long before = emu::allocation_calls();
  int next = 0;
  BatchEvents ev;
  ev.next = [&](BatchRequest& r) {
    if (next == 5) return false;
    r.prompt = {2061, 318, 509, 53};
    r.prompt.resize(size_t(1 + next % 4));
    r.options.max_new_tokens = 4 + 2 * next;
    r.options.ignore_eos = true;
    r.options.sampling.temperature = next % 2 ? 0.9f : 0.0f;
    if (next == 2) r.options.sampling.penalties = {1.3f, 0, 0.5f, 0.2f, 2};
    ++next;
    return true;
  };
  ev.on_token = [](int, int) { return true; };
  ev.on_finish = [](int, GenerationResult&) {};
  EXPECT_EQ(generate_batch(*backend, ev).requests, 5);
  const int parent[3] = {2, 2, 0};
  backend->reorder(parent, 3, 4);
  EXPECT_EQ(emu::allocation_calls(), before);
}

// GPT2_CUDA_VARIANTS=ahead queues each decode step before the host waits for the token before
// it: n tokens are a prefill and n - 1 decode steps, each taken from a graph launched one step
// earlier (the first of the chain launches two), so n launches and n - 1 waits, where today's
// path launches n - 1 graphs and waits for none of them by event. Greedy and sampled (generate()
// hands each draw to the sample() before).
TEST(CudaEmu, LaunchAheadLaunchesEachStepBeforeWaitingForTheOneBefore) {
  const Model model = load_model(test::small_vocab_model());
  const int n = 6;
  for (const char* variants : {"none", "ahead"}) {
    setenv("GPT2_CUDA_VARIANTS", variants, 1);
    auto backend = make_cuda_backend(model, cuda_options(ComputeDType::F32));
    unsetenv("GPT2_CUDA_VARIANTS");
    for (float temperature : {0.0f, 0.8f}) {
      SCOPED_TRACE(std::string(variants) + ", temperature " + std::to_string(temperature));
      GenerationOptions g;
      g.max_new_tokens = n;
      g.ignore_eos = true;
      g.sampling.temperature = temperature;
      const emu::LaunchCounts before = emu::launch_counts();
      EXPECT_EQ(int(generate(*backend, {2061, 318, 509, 53}, g, nullptr).generated.size()), n);
      const emu::LaunchCounts after = emu::launch_counts();
      const bool ahead = std::string(variants) == "ahead";
      EXPECT_EQ(after.graph_launches - before.graph_launches, ahead ? n : n - 1);
      EXPECT_EQ(after.event_waits - before.event_waits, ahead ? n - 1 : 0);
    }
  }
}

// The backend's fp32 products stay in fp32: its cuBLAS calls (the rows path: a prefill and
// --no-cache) run under default math, never TF32.
TEST(CudaEmu, TheBackendsFp32GemmsUseDefaultMathNotTf32) {
  const Model model = load_model(test::tiny_model("fp32"));
  auto backend = make_cuda_backend(model, cuda_options(ComputeDType::F32));
  const emu::Fp32GemmCounts before = emu::fp32_gemm_counts();
  GenerationOptions g;
  g.max_new_tokens = 2;
  g.use_cache = false;
  g.sampling.temperature = 0;
  generate(*backend, {2061, 318, 509, 53}, g, nullptr);
  const emu::Fp32GemmCounts after = emu::fp32_gemm_counts();
  EXPECT_GT(after.default_math, before.default_math);
  EXPECT_EQ(after.tf32, before.tf32);
}

}  // namespace
}  // namespace gpt2
