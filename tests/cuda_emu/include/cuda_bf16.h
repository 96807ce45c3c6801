// cuda-emu: __nv_bfloat16 and __nv_bfloat162 as bit patterns. Widening is the format's
// definition (the top half of an fp32); narrowing rounds to nearest even by the IEEE definition
// in tests/ieee_reference.h (g++ 12 has no arithmetic __bf16) -- never by src/base/half.h, the code
// the tests check.
#pragma once
#include <cstdint>
#include <cstring>

#include "../../ieee_reference.h"
#include "cuda_runtime.h"

struct __nv_bfloat16 {
  uint16_t __x;
};
struct __attribute__((aligned(4))) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t bits = uint32_t(h.__x) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  return __nv_bfloat16{ieee_reference::float_to(f, ieee_reference::kBfloat16)};
}
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return float2{__bfloat162float(h.x), __bfloat162float(h.y)}; }
