// cuda-emu: __half and __half2 as bit patterns. Conversions by the compiler's _Float16 (IEEE
// binary16, round to nearest even like __float2half_rn) where it has one, else by the IEEE
// definition in tests/ieee_reference.h -- never by src/base/half.h, the code the tests check.
#pragma once
#include <cstdint>
#include <cstring>

#include "../../ieee_reference.h"
#include "cuda_runtime.h"

struct __half {
  uint16_t __x;
};
struct __attribute__((aligned(4))) __half2 {
  __half x, y;
};

#ifdef __FLT16_MAX__
inline float __half2float(__half h) {
  _Float16 f;
  std::memcpy(&f, &h.__x, 2);
  return static_cast<float>(f);
}
inline __half __float2half_rn(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  __half out;
  std::memcpy(&out.__x, &h, 2);
  return out;
}
#else
inline float __half2float(__half h) { return ieee_reference::to_float(h.__x, ieee_reference::kBinary16); }
inline __half __float2half_rn(float f) { return __half{ieee_reference::float_to(f, ieee_reference::kBinary16)}; }
#endif
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
