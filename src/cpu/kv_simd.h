// The attention inner loops over K/V rows held in a --kv-dtype format (engine/kv_format.h),
// single-threaded: they read the ring's rows as stored, widening fp16/bf16 and int8 in
// registers (no pass that widens the ring into a buffer). Built with Google Highway when it is
// found (kv_simd_hwy.cpp, dispatched at run time as cpu_simd.h), else as plain loops
// (kv_simd_plain.cpp). Tested against cpu_ops' K/V reference in tests/test_cpu_fast.cpp.
#pragma once
#include <cstdint>

#include "model/dtype.h"

namespace gpt2::simd {

// One head of K/V rows: rows hold n_embd values in `type` (int8: then the per-head scales);
// the head's values are [head * head_dim, (head + 1) * head_dim) of each row.
struct KvHead {
  ComputeDType type = ComputeDType::F32;
  int n_embd = 0, head = 0, head_dim = 0;
};

// score[j] = mult * (q . K_j) for the n rows rows[j] (each a row's first byte); q (head_dim).
// int8: the int8 dot product in fp32, times the head's scale once per row.
void kv_dots(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score);

// o (head_dim) += sum_j f * w[j] * V_j over the n rows rows[j] (int8: w[j] times the row's head
// scale once per row).
void kv_weighted_sum(float* o, const float* w, float f, const uint8_t* const* rows, int n, const KvHead& kh);

}  // namespace gpt2::simd
