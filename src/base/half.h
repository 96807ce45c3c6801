// Host-side conversions between fp32 and the 16-bit float formats the weight file may hold.
// Bit-exact with IEEE 754 binary16 and bfloat16 (round to nearest even), so weights widened on
// the CPU equal what the GPU's __half2float/__bfloat162float produce.
#pragma once
#include <cstdint>
#include <cstring>

namespace gpt2 {

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);                                          // round to nearest even
  return uint16_t(u >> 16);
}

inline float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (mant << 13));  // inf / NaN
  if (exp != 0) return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_to_float(sign);                                  // +-0
  int e = 113;                                                                // subnormal: normalise
  while ((mant & 0x400u) == 0) { mant <<= 1; --e; }
  return bits_to_float(sign | (uint32_t(e) << 23) | ((mant & 0x3ffu) << 13));
}

inline uint16_t float_to_fp16(float f) {
  const uint32_t u = float_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00u);            // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00u);           // overflow (incl. inf) -> inf
  if (a < 0x38800000u) {                                            // subnormal or zero in fp16
    const float scaled = bits_to_float(a) * 16777216.0f;            // * 2^24: exact
    // Round half to even: the FPU's default rounding when converting to integer via nearbyint.
    const uint32_t m = uint32_t(__builtin_nearbyintf(scaled));
    return uint16_t(sign | m);
  }
  uint32_t r = a - 0x38000000u;                                     // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);                                   // round to nearest even
  return uint16_t(sign | (r >> 13));
}

}  // namespace gpt2
