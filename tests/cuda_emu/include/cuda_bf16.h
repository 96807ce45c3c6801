// cuda-emu: __nv_bfloat16 and __nv_bfloat162 as bit patterns, converted with gpt2-gen's
// bit-exact bfloat16 routines (src/half.h; round to nearest even like __float2bfloat16_rn).
#pragma once
#include <cstdint>

#include "cuda_runtime.h"
#include "half.h"

struct __nv_bfloat16 {
  uint16_t __x;
};
struct __attribute__((aligned(4))) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 h) { return gpt2::bf16_to_float(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{gpt2::float_to_bf16(f)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return float2{__bfloat162float(h.x), __bfloat162float(h.y)}; }
