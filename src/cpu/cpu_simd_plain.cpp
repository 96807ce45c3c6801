// cpu_simd.h in plain loops: the build without Google Highway (libhwy-dev). Same results up to
// summation order; the compiler vectorises what it can for the build's baseline ISA.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half.h"
#include "cpu/cpu_simd.h"
#include "cpu/q8_rule.h"

namespace gpt2::simd {
namespace {

float widen1(WType t, const void* data, size_t i) {
  switch (t) {
    case WType::F32: return static_cast<const float*>(data)[i];
    case WType::F16: return fp16_to_float(static_cast<const uint16_t*>(data)[i]);
    case WType::BF16: return bf16_to_float(static_cast<const uint16_t*>(data)[i]);
    case WType::Q8: return float(static_cast<const int8_t*>(data)[i]);
  }
  return 0.0f;
}

// Row r of w as fp32 (Q8: dequantised).
void widen_row(const WeightView& w, int r, float* out) {
  const size_t first = size_t(r) * w.cols;
  for (int i = 0; i < w.cols; ++i) out[i] = widen1(w.type, w.data, first + i);
  if (w.type == WType::Q8)
    for (int i = 0; i < w.cols; ++i) out[i] *= w.scales[size_t(r) * q8_blocks(w.cols) + i / kQ8Block];
}

}  // namespace

void quantize_q8_row(const float* x, int n, int8_t* q, float* scales) { q8::quantize_row(x, n, q, scales); }

void dot_rows_q8(const WeightView& w, const int8_t* xq, const float* xs, int r0, int r1, float* out) {
  q8::rows_dot(static_cast<const int8_t*>(w.data), w.scales, w.cols, xq, xs, r0, r1, out);
}

void dot_rows(const WeightView& w, const float* x, int r0, int r1, float* out) {
  if (w.type == WType::Q8) {
    int8_t xq[kQ8MaxCols];
    float xs[kQ8MaxCols / kQ8Block];
    quantize_q8_row(x, w.cols, xq, xs);
    return dot_rows_q8(w, xq, xs, r0, r1, out);
  }
  float row[4096];  // a row in chunks, widened
  for (int r = r0; r < r1; ++r) {
    if (w.type == WType::F32) {
      out[r - r0] = dot(static_cast<const float*>(w.data) + size_t(r) * w.cols, x, w.cols);
      continue;
    }
    float s = 0.0f;
    for (int i0 = 0; i0 < w.cols; i0 += 4096) {
      const int n = std::min(4096, w.cols - i0);
      for (int i = 0; i < n; ++i) row[i] = widen1(w.type, w.data, size_t(r) * w.cols + i0 + i);
      s += dot(row, x + i0, n);
    }
    out[r - r0] = s;
  }
}

void dot_rows_batch(const WeightView& w, const float* x, long x_stride, int B, int r0, int r1, float* out,
                    long out_stride) {
  for (int b = 0; b < B; ++b) dot_rows(w, x + b * x_stride, r0, r1, out + b * out_stride);
}

void widen_rows(const WeightView& w, int r0, int r1, float* out) {
  for (int r = r0; r < r1; ++r) widen_row(w, r, out + size_t(r - r0) * w.cols);
}

float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy(float* y, float a, const float* x, int n) {
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

void scale(float* x, float a, int n) {
  for (int i = 0; i < n; ++i) x[i] *= a;
}

float exp_shifted(float* x, int n) {
  float m = -INFINITY, s = 0.0f;
  for (int i = 0; i < n; ++i) m = std::max(m, x[i]);
  for (int i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  return s;
}

void gelu(float* x, long n) {
  const float k = std::sqrt(2.0f / float(M_PI));
  for (long i = 0; i < n; ++i) x[i] = 0.5f * x[i] * (1.0f + std::tanh(k * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
}

const char* target_name() { return "plain loops"; }

}  // namespace gpt2::simd
