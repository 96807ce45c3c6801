// The SIMD inner loops of the fast CPU path (src/cpu/cpu_fast.cpp), single-threaded. Built with
// Google Highway when it is found (one source, compiled for SSE4 / AVX2+FMA+F16C / AVX-512 /
// AVX-512 with VNNI+BF16..., the best the running CPU supports chosen at run time), else as
// plain loops (same results up to summation order). Tested against cpu_ops in
// tests/test_cpu_fast.cpp.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "model/dtype.h"

namespace gpt2::simd {

// How a weight matrix is held in memory. Q8: int8 values with one fp32 scale per block of
// kQ8Block consecutive inputs of a row (model/dtype.h): w = q * scale.
enum class WType { F32, F16, BF16, Q8 };
using gpt2::kQ8Block;
using gpt2::q8_blocks;
const char* wtype_name(WType t);  // "fp32", "fp16", "bf16", "int8"

// A (rows, cols) row-major weight matrix in one of those types. F16 and BF16 hold the raw
// 16-bit patterns; scales (Q8 only) is (rows, q8_blocks(cols)).
struct WeightView {
  WType type = WType::F32;
  const void* data = nullptr;
  const float* scales = nullptr;
  int rows = 0, cols = 0;

  // Bytes the matrix occupies, scales included: what a product streams from memory.
  size_t bytes() const {
    const size_t n = size_t(rows) * size_t(cols);
    switch (type) {
      case WType::F32: return 4 * n;
      case WType::F16:
      case WType::BF16: return 2 * n;
      case WType::Q8: return n + sizeof(float) * size_t(rows) * size_t(q8_blocks(cols));
    }
    return n;
  }
};

// out[r - r0] = dot(row r of w, x) for r in [r0, r1); x has w.cols floats. Weights are widened
// to fp32 in registers; sums are fp32.
void dot_rows(const WeightView& w, const float* x, int r0, int r1, float* out);

// dot_rows for B inputs at once (the decode step of B sequences): out[b * out_stride + r - r0]
// = dot(row r of w, x + b * x_stride). Each (row, input) is summed exactly as dot_rows sums it
// for that input alone, whatever B is (batch invariance), but a block of rows is read from
// memory once for all B inputs.
void dot_rows_batch(const WeightView& w, const float* x, long x_stride, int B, int r0, int r1, float* out,
                    long out_stride);

// Q8 weights multiply an input quantised by their own rule (q8_rule.h, llama.cpp's q8_0
// activations: per block of kQ8Block values, scale = max |x| / 127, q = round(x / scale)), and
// each block's int8 x int8 products are summed in integers, exactly: with vpmaddubsw/vpmaddwd on
// AVX2 and better, in scalar code below that. dot_rows and dot_rows_batch quantise a float input
// themselves; a caller that reuses one input for many calls quantises it once (quantize_q8_row)
// and calls dot_rows_q8. Rows of at most kQ8MaxCols inputs (the quantised input is on the stack).
constexpr int kQ8MaxCols = 8192;
void quantize_q8_row(const float* x, int n, int8_t* q, float* scales);  // q (n), scales (q8_blocks(n))
void dot_rows_q8(const WeightView& w, const int8_t* xq, const float* xs, int r0, int r1, float* out);

// Rows [r0, r1) of w widened (and Q8 dequantised) to fp32: out is (r1 - r0, cols).
void widen_rows(const WeightView& w, int r0, int r1, float* out);

float dot(const float* a, const float* b, int n);
void axpy(float* y, float a, const float* x, int n);  // y += a * x
void scale(float* x, float a, int n);                 // x *= a

// x[i] = exp(x[i] - max x); returns the sum of the new values.
float exp_shifted(float* x, int n);

// x = gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
void gelu(float* x, long n);

// How far ahead of its reads a decode kernel asks for the weights it will read: each thread's
// rows of a matrix are one byte stream, and every cache line of it is prefetched this many bytes
// before it is read (0 asks for each line as it is read: no prefetch in effect). The CPU backend sets it once at start-up, from a
// probe of the machine (fast::tune_prefetch); until then kDefaultPrefetchBytes.
constexpr size_t kDefaultPrefetchBytes = 8192;
namespace detail {
inline std::atomic<size_t> prefetch_bytes{kDefaultPrefetchBytes};
}
inline void set_prefetch_distance(size_t bytes) { detail::prefetch_bytes.store(bytes, std::memory_order_relaxed); }
inline size_t prefetch_distance() { return detail::prefetch_bytes.load(std::memory_order_relaxed); }

// The instruction set the dispatcher chose ("AVX3", "AVX2", ...; "plain loops" without Highway).
const char* target_name();

}  // namespace gpt2::simd
