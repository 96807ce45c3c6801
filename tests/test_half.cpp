// src/base/half.h against independent rules: every fp16 and bf16 bit pattern widened to fp32, and a
// dense sweep of fp32 values narrowed (every fp32 rounding case of the 16-bit formats: exact
// values, ties, one fp32 ulp either side of them, subnormals, overflow, infinities, NaN). The
// references are the compiler's _Float16 (IEEE binary16 in hardware or libgcc, where the
// compiler has it: g++ 12 on x86-64 does) and tests/ieee_reference.h (the formats' definitions
// in double arithmetic; g++ 12 has no arithmetic __bf16, so bf16 is checked against that alone).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "base/half.h"
#include "ieee_reference.h"

namespace gpt2 {
namespace {

using ieee_reference::kBfloat16;
using ieee_reference::kBinary16;

#ifdef __FLT16_MAX__
constexpr bool kHaveFloat16 = true;
uint16_t compiler_fp16(float x) {
  const _Float16 h = static_cast<_Float16>(x);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float compiler_fp16_to_float(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}
#else
constexpr bool kHaveFloat16 = false;
uint16_t compiler_fp16(float) { return 0; }
float compiler_fp16_to_float(uint16_t) { return 0; }
#endif

// Equal as fp32 bit patterns (so -0 differs from +0), or both NaN.
bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return float_to_bits(a) == float_to_bits(b);
}

TEST(Half, EveryFp16PatternWidensToItsValue) {
  if (!kHaveFloat16) std::printf("no _Float16 in this compiler: checked against ieee_reference.h only\n");
  for (uint32_t b = 0; b <= 0xffff; ++b) {
    const float got = fp16_to_float(uint16_t(b));
    ASSERT_TRUE(same_float(got, ieee_reference::to_float(uint16_t(b), kBinary16))) << std::hex << b;
    if (kHaveFloat16) {
      ASSERT_TRUE(same_float(got, compiler_fp16_to_float(uint16_t(b)))) << std::hex << b;
    }
  }
}

TEST(Half, EveryBf16PatternWidensToItsValue) {
  for (uint32_t b = 0; b <= 0xffff; ++b)
    ASSERT_TRUE(same_float(bf16_to_float(uint16_t(b)), ieee_reference::to_float(uint16_t(b), kBfloat16))) << std::hex << b;
}

// The sweep: every combination of the top 19 bits of an fp32 pattern (sign, exponent, the 10
// fraction bits fp16 keeps) with low 13 bits at the rounding cases (0: exact; 0x1000: a tie for
// fp16 normals; 0xfff / 0x1001: one ulp either side; 1 and 0x1fff), which with the 3 bits
// between also gives bf16's cases in its low 16 bits (0x8000 a tie, 0x7fff, 0x8001, 0xffff...).
// Ties of fp16 subnormals sit in the top 19 bits, which run over every value. Then a million
// random patterns.
std::vector<uint32_t> fp32_sweep() {
  std::vector<uint32_t> v;
  v.reserve((size_t(1) << 19) * 6 + (1 << 20));
  for (uint32_t top = 0; top < (1u << 19); ++top)
    for (uint32_t low : {0x0u, 0x1u, 0xfffu, 0x1000u, 0x1001u, 0x1fffu}) v.push_back(top << 13 | low);
  std::mt19937 rng(2024);
  for (int i = 0; i < (1 << 20); ++i) v.push_back(rng());
  return v;
}

// Same 16-bit result, or both NaN with the same sign. `nan_above`: the largest non-NaN
// magnitude pattern (inf) of the format.
bool same_16(uint16_t got, uint16_t want, uint16_t nan_above) {
  const bool got_nan = (got & 0x7fff) > nan_above, want_nan = (want & 0x7fff) > nan_above;
  if (got_nan || want_nan) return got_nan && want_nan && (got & 0x8000) == (want & 0x8000);
  return got == want;
}

// Narrows every sweep value with `convert` and `reference`; reports the first few differences
// (a broken rounding would otherwise print millions of lines) and how many there were.
template <typename Convert, typename Reference>
void expect_narrowing_matches(Convert convert, Reference reference, uint16_t nan_above, const char* what) {
  long bad = 0;
  for (uint32_t u : fp32_sweep()) {
    const float x = bits_to_float(u);
    const uint16_t got = convert(x), want = reference(x);
    if (same_16(got, want, nan_above)) continue;
    if (++bad <= 5)
      ADD_FAILURE() << what << " of fp32 0x" << std::hex << u << " (" << x << "): 0x" << got << ", want 0x" << want;
  }
  EXPECT_EQ(bad, 0) << what << ": fp32 values rounded differently";
}

TEST(Half, Fp32ToFp16RoundsToNearestEven) {
  expect_narrowing_matches(float_to_fp16, [](float x) { return ieee_reference::float_to(x, kBinary16); }, 0x7c00,
                           "fp16 vs ieee_reference");
  if (kHaveFloat16) expect_narrowing_matches(float_to_fp16, compiler_fp16, 0x7c00, "fp16 vs _Float16");
}

TEST(Half, Fp32ToBf16RoundsToNearestEven) {
  expect_narrowing_matches(float_to_bf16, [](float x) { return ieee_reference::float_to(x, kBfloat16); }, 0x7f80,
                           "bf16 vs ieee_reference");
}

// A few cases worked out by hand (they also pin the reference down).
TEST(Half, HandWorkedCases) {
  const float fp16_ulp_at_1 = std::ldexp(1.0f, -10), bf16_ulp_at_1 = std::ldexp(1.0f, -7);
  EXPECT_EQ(float_to_fp16(1.0f + fp16_ulp_at_1 / 2), 0x3c00);      // tie, 1.0 is even: down
  EXPECT_EQ(float_to_fp16(1.0f + 3 * fp16_ulp_at_1 / 2), 0x3c02);  // tie, 1+2^-9 is even: up
  EXPECT_EQ(float_to_fp16(std::nextafter(1.0f + fp16_ulp_at_1 / 2, 2.0f)), 0x3c01);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);                      // the largest fp16
  EXPECT_EQ(float_to_fp16(std::nextafter(65520.0f, 0.0f)), 0x7bff);  // under max + half an ulp
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);                      // max + half an ulp: inf
  EXPECT_EQ(float_to_fp16(-INFINITY), 0xfc00);
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);          // the smallest subnormal
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);          // half of it: tie to 0
  EXPECT_EQ(float_to_fp16(std::ldexp(3.0f, -25)), 0x0002);          // 1.5 of it: tie to 2
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_bf16(1.0f + bf16_ulp_at_1 / 2), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * bf16_ulp_at_1 / 2), 0x3f82);
  EXPECT_EQ(float_to_bf16(std::nextafter(1.0f + bf16_ulp_at_1 / 2, 2.0f)), 0x3f81);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds past bf16's max
  EXPECT_EQ(float_to_bf16(std::ldexp(1.0f, -133)), 0x0001);        // the smallest bf16 subnormal
  EXPECT_EQ(float_to_bf16(std::ldexp(1.0f, -134)), 0x0000);        // tie to 0
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(bf16_to_float(0x3f81), 1.0f + bf16_ulp_at_1);
  EXPECT_TRUE(std::isnan(fp16_to_float(float_to_fp16(NAN))));
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(-NAN))));
}

}  // namespace
}  // namespace gpt2
