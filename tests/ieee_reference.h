// IEEE 754 binary16 and bfloat16, written from their definitions in double arithmetic: the
// independent rule that tests/test_half.cpp holds src/base/half.h to, and what the CUDA emulator's
// __float2half_rn / __float2bfloat16_rn compute (tests/cuda_emu/include). Nothing here looks at
// bit patterns beyond the three fields of the definition, and rounding is done by nearbyint()
// (round half to even in the default rounding mode), not by integer tricks like half.h's.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace ieee_reference {

struct Format {
  int mantissa_bits;  // stored fraction bits (the significand has one more)
  int exponent_bits;
  int bias() const { return (1 << (exponent_bits - 1)) - 1; }
  int emin() const { return 1 - bias(); }
  int emax() const { return bias(); }
  double max_finite() const { return std::ldexp(2.0 - std::ldexp(1.0, -mantissa_bits), emax()); }
};
constexpr Format kBinary16{10, 5};
constexpr Format kBfloat16{7, 8};

// The value of a 16-bit pattern: (-1)^s 2^(e - bias) 1.m, or 2^emin 0.m when e = 0, or inf/NaN
// when e is all ones.
inline double decode(uint16_t bits, Format f) {
  const int m_bits = f.mantissa_bits;
  const double sign = (bits >> 15) ? -1.0 : 1.0;
  const int e = (bits >> m_bits) & ((1 << f.exponent_bits) - 1);
  const int m = bits & ((1 << m_bits) - 1);
  if (e == (1 << f.exponent_bits) - 1) return m ? std::numeric_limits<double>::quiet_NaN() : sign * INFINITY;
  if (e == 0) return sign * std::ldexp(double(m), f.emin() - m_bits);
  return sign * std::ldexp(double((1 << m_bits) + m), e - f.bias() - m_bits);
}

// x rounded to the nearest value of the format, ties to the even significand; +-inf past the
// largest finite value (x at or beyond max + half an ulp rounds up to 2^(emax+1), which is
// past it). The sign of zero and NaN are kept.
inline double round_to(double x, Format f) {
  if (std::isnan(x) || std::isinf(x) || x == 0.0) return x;
  const int exponent = std::max(std::ilogb(x), f.emin());              // subnormals: emin
  const double ulp = std::ldexp(1.0, exponent - f.mantissa_bits);
  const double r = std::copysign(std::nearbyint(x / ulp) * ulp, x);    // exact scaling by 2^k
  return std::fabs(r) > f.max_finite() ? std::copysign(INFINITY, x) : r;
}

// The 16-bit pattern of a value the format holds exactly (what round_to returns): sign,
// biased exponent and fraction read back from the value; NaN becomes the quiet NaN with only
// the top fraction bit set, its sign kept.
inline uint16_t encode(double v, Format f) {
  const uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  const int all_ones = (1 << f.exponent_bits) - 1;
  if (std::isnan(v)) return uint16_t(sign | (all_ones << f.mantissa_bits) | (1 << (f.mantissa_bits - 1)));
  const double a = std::fabs(v);
  if (std::isinf(a)) return uint16_t(sign | (all_ones << f.mantissa_bits));
  if (a < std::ldexp(1.0, f.emin()))  // subnormal or zero: a = m 2^(emin - mantissa_bits)
    return uint16_t(sign | int(std::ldexp(a, f.mantissa_bits - f.emin())));
  const int e = std::ilogb(a);
  const int m = int(std::ldexp(a, f.mantissa_bits - e)) - (1 << f.mantissa_bits);
  return uint16_t(sign | ((e + f.bias()) << f.mantissa_bits) | m);
}

inline uint16_t float_to(float x, Format f) { return encode(round_to(double(x), f), f); }
inline float to_float(uint16_t bits, Format f) { return float(decode(bits, f)); }

}  // namespace ieee_reference
