// Nothing is allocated per token on the CPU backend. This binary replaces the C allocator
// (malloc and its relatives, which operator new, OpenMP and oneDNN all end up in) with
// glibc's own functions plus a counter, and counts every allocation from any thread while
// decode steps run after a warm-up: one token against the cache, or the whole window again
// (--no-cache, the rows path), greedy and sampled, with and without the logits processors, for
// every weight type.
//
// One exception, counted apart and printed: oneDNN's dnnl_sgemm allocates a few small blocks
// inside every call (its own bookkeeping; its API takes no buffer for them). This binary wraps
// dnnl_sgemm to tell those apart; every other allocation fails the test.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

#include "cpu/backend_cpu.h"
#include "engine/sampler.h"
#include "model/model.h"
#include "test_support.h"

#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
#define GPT2_COUNT_ALLOCATIONS 0  // ASan brings its own allocator; only glibc has __libc_malloc
#else
#define GPT2_COUNT_ALLOCATIONS 1
#endif

namespace {
std::atomic<bool> g_counting{false};
std::atomic<bool> g_in_gemm_library{false};  // inside dnnl_sgemm (no code of ours runs then)
std::atomic<long> g_allocations{0}, g_library_allocations{0};

inline void note_allocation() {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  (g_in_gemm_library.load(std::memory_order_relaxed) ? g_library_allocations : g_allocations)
      .fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

#if GPT2_COUNT_ALLOCATIONS
// glibc's allocator under its internal names: the replacements below count, then forward.
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);

void* malloc(size_t n) {
  note_allocation();
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  note_allocation();
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  note_allocation();
  return __libc_realloc(p, n);
}
void* memalign(size_t align, size_t n) {
  note_allocation();
  return __libc_memalign(align, n);
}
void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
int posix_memalign(void** p, size_t align, size_t n) {
  *p = memalign(align, n);
  return *p ? 0 : ENOMEM;
}
void free(void* p) { __libc_free(p); }
}

#ifdef GPT2_HAVE_DNNL
#include <dlfcn.h>
#include <dnnl.h>
// src/cpu/cpu_fast.cpp's calls land here (an executable's definition wins over the library's); the
// library's own follows, with its allocations counted apart.
extern "C" dnnl_status_t dnnl_sgemm(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K, float alpha,
                                    const float* A, dnnl_dim_t lda, const float* B, dnnl_dim_t ldb, float beta,
                                    float* C, dnnl_dim_t ldc) {
  static const auto library = reinterpret_cast<decltype(&dnnl_sgemm)>(dlsym(RTLD_NEXT, "dnnl_sgemm"));
  g_in_gemm_library = true;
  const dnnl_status_t s = library(transa, transb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  g_in_gemm_library = false;
  return s;
}
#endif
#endif

namespace gpt2 {
namespace {

const std::vector<int> kPrompt = {2061, 318, 509, 53, 40918, 30};
constexpr int kSteps = 8;  // counted decode steps per case

class NoAllocationPerToken : public ::testing::TestWithParam<ComputeDType> {
 protected:
  void SetUp() override {
    if (!GPT2_COUNT_ALLOCATIONS) GTEST_SKIP() << "allocations are counted only with glibc's allocator, not under ASan";
    static const Model model = load_model(test::tiny_model("fp32"));
    BackendOptions o;
    o.dtype = GetParam();
    backend_ = make_cpu_backend(model, o);
  }

  // The allocations made by `step` outside oneDNN (run kSteps times, after one uncounted run).
  template <typename Step>
  long allocations(Step&& step) {
    step(0);  // warm-up: thread pool, library caches, first-call buffers
    g_allocations = g_library_allocations = 0;
    g_counting = true;
    for (int i = 1; i <= kSteps; ++i) step(i);
    g_counting = false;
    if (g_library_allocations > 0)
      std::printf("(inside oneDNN's sgemm, not counted: %ld allocations in %d steps)\n", g_library_allocations.load(), kSteps);
    return g_allocations;
  }

  std::unique_ptr<Backend> backend_;
};

// Greedy and sampled (top-k, top-p and the softmax all run), each plain and with every logits
// processor on (penalties over the whole context, n-gram blocking).
std::vector<std::pair<const char*, SamplingParams>> sampling_cases() {
  SamplingParams greedy{0.0f, 0, 1.0f}, sampled{0.9f, 40, 0.9f};
  PenaltyParams all;
  all.repeat_penalty = 1.3f;
  all.presence_penalty = 0.5f;
  all.frequency_penalty = 0.2f;
  all.no_repeat_ngram_size = 2;
  SamplingParams greedy_processed = greedy, sampled_processed = sampled;
  greedy_processed.penalties = sampled_processed.penalties = all;
  return {{"greedy", greedy}, {"sampled", sampled}, {"greedy, processed", greedy_processed},
          {"sampled, processed", sampled_processed}};
}

TEST_P(NoAllocationPerToken, DecodeAgainstTheCache) {
  Backend& b = *backend_;
  const KvRing ring{b.kv_capacity(), 3};
  b.forward(kPrompt.data(), int(kPrompt.size()), 0, ring);
  int id = kPrompt.back(), pos = int(kPrompt.size());
  for (const auto& [name, sampling] : sampling_cases()) {
    const SamplingParams& params = sampling;  // a lambda cannot capture a structured binding (C++17)
    const long n = allocations([&](int i) {
      b.forward(&id, 1, pos++, ring);
      id = b.sample(params, (i + 0.5) / (kSteps + 1));
    });
    EXPECT_EQ(n, 0) << name << ": allocations in " << kSteps << " steps";
  }
}

TEST_P(NoAllocationPerToken, DecodeWithoutTheCache) {
  Backend& b = *backend_;
  const KvRing ring{b.kv_capacity(), 0};
  std::vector<int> ids = kPrompt;
  const auto cases = sampling_cases();
  ids.reserve(ids.size() + cases.size() * (kSteps + 1));  // the test's own vector must not grow while counted
  for (const auto& [name, sampling] : cases) {
    const SamplingParams& params = sampling;
    const long n = allocations([&](int i) {
      b.forward(ids.data(), int(ids.size()), 0, ring);  // the whole window, every step
      ids.push_back(b.sample(params, (i + 0.5) / (kSteps + 1)));
    });
    EXPECT_EQ(n, 0) << name << ": allocations in " << kSteps << " steps";
  }
}

// --parallel: a decode step of four sequences at once, each sampling from its own logits.
TEST_P(NoAllocationPerToken, DecodeABatchOfSequences) {
  static const Model model = load_model(test::tiny_model("fp32"));
  BackendOptions o;
  o.dtype = GetParam();
  o.n_seqs = 4;
  auto backend = make_cpu_backend(model, o);
  Backend& b = *backend;
  std::vector<SeqToken> rows;
  for (int s = 0; s < 4; ++s) {
    const KvRing ring{b.kv_capacity(), 5 * s};
    b.forward(s, kPrompt.data(), 1 + s, 0, ring);
    rows.push_back(SeqToken{s, kPrompt[size_t(s)], 1 + s, ring});
  }
  for (const auto& [name, sampling] : sampling_cases()) {
    const SamplingParams& params = sampling;
    const long n = allocations([&](int i) {
      b.decode_batch(rows.data(), int(rows.size()));
      for (SeqToken& r : rows) {
        r.id = b.sample(r.seq, params, (i + 0.5) / (kSteps + 1));
        ++r.pos;
      }
    });
    EXPECT_EQ(n, 0) << name << ": allocations in " << kSteps << " batched steps";
  }
}

INSTANTIATE_TEST_SUITE_P(WeightTypes, NoAllocationPerToken,
                         ::testing::Values(ComputeDType::F32, ComputeDType::F16, ComputeDType::BF16,
                                           ComputeDType::Int8),
                         [](const auto& info) { return std::string(compute_dtype_name(info.param)); });

}  // namespace
}  // namespace gpt2
