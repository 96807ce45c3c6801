// The K/V rings' storage formats (--kv-dtype): the one place that says how one position's keys
// (or values) of one layer are laid out in bytes, for every format, on both backends. The CPU
// attention, the CUDA kernels and the prompt cache's file all read and write rows this way
// (compiles as host and device code).
//
// A row is the n_embd = n_head x head_size values of one position of one layer:
//   fp32, fp16, bf16: n_embd elements of that type, head h at elements [h*HS, (h+1)*HS).
//   int8:             n_embd int8 values, then n_head fp32 scales (one per head):
//                     value i of head h is q[h*HS + i] * scale[h].
// Why one scale per (position, head) for int8, not per block of 32 as q8_0: attention uses a
// head's 64 values only together (q . k, and p * v summed over the head), so one scale per head
// costs one multiply per key and head, and it is the smaller format: 64 + 4 bytes per 64 values,
// 0.266x fp32 (a q8_0 block of 32 with an fp32 scale is 0.281x). The scale is max |x| / 127 of
// the head's values, and q = round(x / scale) (0 for an all-zero head).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "base/host_device.h"
#include "model/dtype.h"

namespace gpt2 {

// Bytes of one element of a 16/32-bit format; for int8, the int8 value alone.
GPT2_HOST_DEVICE inline int kv_element_bytes(ComputeDType d) {
  return d == ComputeDType::F32 ? 4 : d == ComputeDType::Int8 ? 1 : 2;
}

// Bytes of one position's K (or V) of one layer: n_embd values, and for int8 the scales.
GPT2_HOST_DEVICE inline size_t kv_row_bytes(ComputeDType d, int n_embd, int n_head) {
  const size_t values = size_t(n_embd) * size_t(kv_element_bytes(d));
  return d == ComputeDType::Int8 ? values + size_t(n_head) * sizeof(float) : values;
}

// int8 rows: where head h's scale is, from the start of its row.
GPT2_HOST_DEVICE inline size_t kv_q8_scale_offset(int n_embd, int head) {
  return size_t(n_embd) + size_t(head) * sizeof(float);
}

// int8: the scale of one head's values x (head_size of them): max |x| / 127, 0 if all are 0.
GPT2_HOST_DEVICE inline float kv_q8_scale(const float* x, int head_size) {
  float amax = 0.f;
  for (int i = 0; i < head_size; ++i) amax = fmaxf(amax, fabsf(x[i]));
  return amax / 127.f;
}

// int8: one value quantised with its head's scale (round half away from zero, as q8_0).
GPT2_HOST_DEVICE inline int8_t kv_q8_quantize(float x, float scale) {
  if (scale == 0.f) return 0;
  const float r = roundf(x / scale);
  return int8_t(r > 127.f ? 127.f : r < -127.f ? -127.f : r);
}

}  // namespace gpt2
