// The Q8 rule in scalar code, the one definition that the SIMD kernels (cpu_simd_hwy.cpp) match
// bit for bit where they vectorise it and fall back to elsewhere (cpu_simd_plain.cpp, targets
// below AVX2, a partial last block). Weights are quantised by it once at load and the inputs of
// a Q8 product at every product (llama.cpp's q8_0 activations), so a block's dot product is a
// sum of int8 x int8 products: exact in int32.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "model/dtype.h"

namespace gpt2::simd::q8 {

// One block of n <= kQ8Block values: scale = max |x| / 127, q = round-to-nearest-even(x / scale)
// (0 for an all-zero block), so |q| <= 127.
inline void quantize_block(const float* x, int n, int8_t* q, float* scale) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float s = amax / 127.0f;
  *scale = s;
  for (int i = 0; i < n; ++i) q[i] = int8_t(s > 0.0f ? std::lrint(x[i] / s) : 0);
}

// A row of n values: q (n), scales (q8_blocks(n)).
inline void quantize_row(const float* x, int n, int8_t* q, float* scales) {
  for (int b = 0; b * kQ8Block < n; ++b) {
    const int i0 = b * kQ8Block;
    quantize_block(x + i0, std::min(kQ8Block, n - i0), q + i0, scales + b);
  }
}

// The integer dot product of n int8 pairs: at most n * 127 * 127, exact in int32 for any row.
inline int32_t block_dot(const int8_t* a, const int8_t* b, int n) {
  int32_t s = 0;
  for (int i = 0; i < n; ++i) s += int32_t(a[i]) * int32_t(b[i]);
  return s;
}

// Blocks [b0, q8_blocks(n)) of one row's product: per block its exact integer sum times the
// weight's and the input's scales, summed in fp32 in block order.
inline float row_dot(const int8_t* w, const float* ws, const int8_t* xq, const float* xs, int n, int b0 = 0) {
  float s = 0.0f;
  for (int b = b0; b * kQ8Block < n; ++b) {
    const int i0 = b * kQ8Block;
    s += float(block_dot(w + i0, xq + i0, std::min(kQ8Block, n - i0))) * (ws[b] * xs[b]);
  }
  return s;
}

// Rows [r0, r1) of a Q8 matrix w (rows of n int8 values, scales (rows, q8_blocks(n))) times
// the quantised input: out[r - r0] = row_dot of row r.
inline void rows_dot(const int8_t* w, const float* ws, int n, const int8_t* xq, const float* xs, int r0, int r1,
                     float* out) {
  const int nb = q8_blocks(n);
  for (int r = r0; r < r1; ++r) out[r - r0] = row_dot(w + size_t(r) * n, ws + size_t(r) * nb, xq, xs, n);
}

}  // namespace gpt2::simd::q8
