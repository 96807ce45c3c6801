#include "cpu/cpu_ops.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "base/half.h"
#include "engine/kv_format.h"

namespace gpt2::cpu {
namespace {

// The one dot product used everywhere, so every output is computed in the same order.
inline float dot(const float* a, const float* b, int n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void embedding(float* out, const int* ids, int T, int pos, const float* wte, const float* wpe, int C) {
  for (int t = 0; t < T; ++t) {
    const float* te = wte + long(ids[t]) * C;
    const float* pe = wpe + long(pos + t) * C;
    for (int c = 0; c < C; ++c) out[long(t) * C + c] = te[c] + pe[c];
  }
}

void layernorm(float* out, const float* x, const float* w, const float* b, int T, int C, float eps) {
  for (int t = 0; t < T; ++t) {
    const float* row = x + long(t) * C;
    float mean = 0.0f;
    for (int c = 0; c < C; ++c) mean += row[c];
    mean /= float(C);
    float var = 0.0f;
    for (int c = 0; c < C; ++c) var += (row[c] - mean) * (row[c] - mean);
    var /= float(C);
    const float rstd = 1.0f / std::sqrt(var + eps);
    for (int c = 0; c < C; ++c) out[long(t) * C + c] = (row[c] - mean) * rstd * w[c] + b[c];
  }
}

void matmul(float* out, const float* x, const float* w, const float* bias, int T, int IC, int OC) {
  // Parallel over output channels: each thread streams its rows of w once, for all T tokens.
#pragma omp parallel for schedule(static)
  for (int o = 0; o < OC; ++o) {
    const float* wrow = w + long(o) * IC;
    const float b = bias ? bias[o] : 0.0f;
    for (int t = 0; t < T; ++t) out[long(t) * OC + o] = dot(x + long(t) * IC, wrow, IC) + b;
  }
}

void gelu_new(float* x, long n) {
  const float k = std::sqrt(2.0f / float(M_PI));
  for (long i = 0; i < n; ++i) {
    const float v = x[i];
    x[i] = 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
  }
}

void residual_add(float* x, const float* y, long n) {
  for (long i = 0; i < n; ++i) x[i] += y[i];
}

void kv_append(float* k_ring, float* v_ring, const float* qkv, int T, int pos, const KvRing& ring, int C) {
  for (int t = 0; t < T; ++t) {
    const float* row = qkv + long(t) * 3 * C;
    const long slot = ring.slot(pos + t);
    for (int c = 0; c < C; ++c) {
      k_ring[slot * C + c] = row[C + c];
      v_ring[slot * C + c] = row[2 * C + c];
    }
  }
}

void attention(float* out, const float* qkv, const float* k_ring, const float* v_ring, int T, int pos,
               const KvRing& ring, int n_head, int head_dim) {
  const int C = n_head * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
#pragma omp parallel
  {
    std::vector<float> score(pos + T);
#pragma omp for collapse(2) schedule(static)
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < n_head; ++h) {
        const int p = pos + t;  // this token's position: it sees positions 0..p
        const float* q = qkv + long(t) * 3 * C + h * head_dim;
        float max_score = -INFINITY;
        for (int s = 0; s <= p; ++s) {
          score[s] = dot(q, k_ring + long(ring.slot(s)) * C + h * head_dim, head_dim) * scale;
          if (score[s] > max_score) max_score = score[s];
        }
        float total = 0.0f;
        for (int s = 0; s <= p; ++s) {
          score[s] = std::exp(score[s] - max_score);
          total += score[s];
        }
        float* o = out + long(t) * C + h * head_dim;
        for (int d = 0; d < head_dim; ++d) o[d] = 0.0f;
        for (int s = 0; s <= p; ++s) {
          const float wgt = score[s] / total;
          const float* v = v_ring + long(ring.slot(s)) * C + h * head_dim;
          for (int d = 0; d < head_dim; ++d) o[d] += wgt * v[d];
        }
      }
    }
  }
}

void kv_encode_row(uint8_t* row, const float* x, ComputeDType type, int C, int n_head) {
  for (int c = 0; c < C; ++c) {
    if (type == ComputeDType::F32) std::memcpy(row + size_t(c) * 4, &x[c], 4);
    if (type == ComputeDType::F16 || type == ComputeDType::BF16) {
      const uint16_t h = type == ComputeDType::F16 ? float_to_fp16(x[c]) : float_to_bf16(x[c]);
      std::memcpy(row + size_t(c) * 2, &h, 2);
    }
  }
  if (type != ComputeDType::Int8) return;
  const int HS = C / n_head;
  for (int h = 0; h < n_head; ++h) {
    const float scale = kv_q8_scale(x + h * HS, HS);
    for (int i = 0; i < HS; ++i) row[h * HS + i] = uint8_t(kv_q8_quantize(x[h * HS + i], scale));
    std::memcpy(row + kv_q8_scale_offset(C, h), &scale, sizeof scale);
  }
}

void kv_decode_row(float* x, const uint8_t* row, ComputeDType type, int C, int n_head) {
  const int HS = C / n_head;
  for (int c = 0; c < C; ++c) {
    uint16_t h;
    float scale;
    switch (type) {
      case ComputeDType::F32: std::memcpy(&x[c], row + size_t(c) * 4, 4); break;
      case ComputeDType::F16: std::memcpy(&h, row + size_t(c) * 2, 2); x[c] = fp16_to_float(h); break;
      case ComputeDType::BF16: std::memcpy(&h, row + size_t(c) * 2, 2); x[c] = bf16_to_float(h); break;
      case ComputeDType::Int8:
        std::memcpy(&scale, row + kv_q8_scale_offset(C, c / HS), sizeof scale);
        x[c] = float(int8_t(row[c])) * scale;
        break;
    }
  }
}

void kv_append(uint8_t* k_ring, uint8_t* v_ring, const float* qkv, int T, int pos, const KvRing& ring, int C,
               int n_head, ComputeDType type) {
  const size_t row_bytes = kv_row_bytes(type, C, n_head);
  for (int t = 0; t < T; ++t) {
    const float* row = qkv + long(t) * 3 * C;
    const size_t slot = size_t(ring.slot(pos + t));
    kv_encode_row(k_ring + slot * row_bytes, row + C, type, C, n_head);
    kv_encode_row(v_ring + slot * row_bytes, row + 2 * C, type, C, n_head);
  }
}

void attention(float* out, const float* qkv, const uint8_t* k_ring, const uint8_t* v_ring, int T, int pos,
               const KvRing& ring, int n_head, int head_dim, ComputeDType type) {
  const int C = n_head * head_dim;
  const size_t row_bytes = kv_row_bytes(type, C, n_head);
  std::vector<float> k(size_t(ring.capacity) * C), v(k.size());  // (capacity, C) decoded
  for (int s = 0; s < ring.capacity; ++s) {
    kv_decode_row(k.data() + size_t(s) * C, k_ring + size_t(s) * row_bytes, type, C, n_head);
    kv_decode_row(v.data() + size_t(s) * C, v_ring + size_t(s) * row_bytes, type, C, n_head);
  }
  attention(out, qkv, k.data(), v.data(), T, pos, ring, n_head, head_dim);
}

}  // namespace gpt2::cpu
