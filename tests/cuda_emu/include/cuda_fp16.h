// cuda-emu: __half and __half2 as bit patterns, converted with gpt2-gen's bit-exact IEEE
// binary16 routines (src/half.h; round to nearest even like __float2half_rn).
#pragma once
#include <cstdint>

#include "cuda_runtime.h"
#include "half.h"

struct __half {
  uint16_t __x;
};
struct __attribute__((aligned(4))) __half2 {
  __half x, y;
};

inline float __half2float(__half h) { return gpt2::fp16_to_float(h.__x); }
inline __half __float2half_rn(float f) { return __half{gpt2::float_to_fp16(f)}; }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
