// The attention inner loops over K/V rows held in a --kv-dtype format (engine/kv_format.h),
// single-threaded: they read the ring's rows as stored, widening fp16/bf16 and int8 in
// registers (no pass that widens the ring into a buffer). Built with Google Highway when it is
// found (kv_simd_hwy.cpp, dispatched at run time as cpu_simd.h), else as plain loops
// (kv_simd_plain.cpp). Tested against cpu_ops' K/V reference in tests/test_cpu_fast.cpp.
#pragma once
#include <cstdint>

#include "model/dtype.h"

namespace gpt2::simd {

// Heads [head, head + heads) of K/V rows: rows hold n_embd values in `type` (int8: then the
// per-head scales); head h's values are [h * head_dim, (h + 1) * head_dim) of each row. The
// loops walk the rows position by position, all the heads of a row together: a row's heads are
// adjacent in memory, so the rows stream from memory rather than one strided head at a time.
constexpr int kMaxKvHeads = 16;  // heads per call
struct KvHead {
  ComputeDType type = ComputeDType::F32;
  int n_embd = 0, head = 0, head_dim = 0;
  int heads = 1;  // 1..kMaxKvHeads

  KvHead one(int h) const { return {type, n_embd, h, head_dim, 1}; }
};

// For each head g (0 = kh.head) and row j < n: score[g * n + j] = mult * (q_g . K_j), with q_g at
// q + g * head_dim. int8: the int8 dot product in fp32, times the head's scale once per row.
// Each score is computed alike for any heads and n.
void kv_dots(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score);

// For each head g: o_g (head_dim, at o + g * head_dim) += sum_j w[g * n + j] * V_j over the
// n rows rows[j] (int8: times the row's head scale once per row). acc: kh.heads * head_dim
// floats of scratch. Each o_g is computed alike for any heads.
void kv_weighted_sum(float* o, const float* w, const uint8_t* const* rows, int n, const KvHead& kh,
                     float* acc);

}  // namespace gpt2::simd
