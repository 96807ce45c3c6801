// kv_simd.h in plain loops: the build without Google Highway. Same results up to summation order.
#include <cstring>

#include "base/half.h"
#include "cpu/kv_simd.h"
#include "engine/kv_format.h"

namespace gpt2::simd {
namespace {

// Value i of head kh.head of a row, widened, without the int8 scale.
float head_value(const uint8_t* row, const KvHead& kh, int i) {
  const size_t e = size_t(kh.head) * kh.head_dim + i;
  uint16_t h;
  switch (kh.type) {
    case ComputeDType::F32: {
      float f;
      std::memcpy(&f, row + e * 4, 4);
      return f;
    }
    case ComputeDType::F16: std::memcpy(&h, row + e * 2, 2); return fp16_to_float(h);
    case ComputeDType::BF16: std::memcpy(&h, row + e * 2, 2); return bf16_to_float(h);
    case ComputeDType::Int8: return float(int8_t(row[e]));
  }
  return 0.0f;
}

float head_scale(const uint8_t* row, const KvHead& kh) {
  if (kh.type != ComputeDType::Int8) return 1.0f;
  float s;
  std::memcpy(&s, row + kv_q8_scale_offset(kh.n_embd, kh.head), sizeof s);
  return s;
}

}  // namespace

void kv_dots(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score) {
  for (int j = 0; j < n; ++j)
    for (int g = 0; g < kh.heads; ++g) {
      const KvHead one = kh.one(kh.head + g);
      float s = 0.0f;
      for (int i = 0; i < kh.head_dim; ++i) s += q[g * kh.head_dim + i] * head_value(rows[j], one, i);
      score[g * n + j] = mult * head_scale(rows[j], one) * s;
    }
}

void kv_weighted_sum(float* o, const float* w, const uint8_t* const* rows, int n, const KvHead& kh,
                     float*) {
  for (int j = 0; j < n; ++j)
    for (int g = 0; g < kh.heads; ++g) {
      const KvHead one = kh.one(kh.head + g);
      const float a = w[g * n + j] * head_scale(rows[j], one);
      for (int i = 0; i < kh.head_dim; ++i) o[g * kh.head_dim + i] += a * head_value(rows[j], one, i);
    }
}

}  // namespace gpt2::simd
