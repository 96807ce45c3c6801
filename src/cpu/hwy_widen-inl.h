// The widening loads that the Highway kernels share (cpu_simd_hwy.cpp, kv_simd_hwy.cpp): a stored
// value (fp32, fp16, bf16, int8) widened to fp32, one in scalar code (the remainders) or Lanes(df)
// of them in a register. Included after hwy/highway.h and compiled once per target, as Highway's
// own -inl headers are (hence the toggled guard instead of #pragma once).
#if defined(GPT2_CPU_HWY_WIDEN_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GPT2_CPU_HWY_WIDEN_INL_H_
#undef GPT2_CPU_HWY_WIDEN_INL_H_
#else
#define GPT2_CPU_HWY_WIDEN_INL_H_
#endif

#include <hwy/highway.h>

#include <cstdint>
#include <cstring>

#include "base/half.h"

HWY_BEFORE_NAMESPACE();
namespace gpt2::simd {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;
using VF = hn::Vec<DF>;

inline float widen1(float x) { return x; }
inline float widen1(hwy::float16_t x) { uint16_t b; std::memcpy(&b, &x, 2); return fp16_to_float(b); }
inline float widen1(hwy::bfloat16_t x) { uint16_t b; std::memcpy(&b, &x, 2); return bf16_to_float(b); }
inline float widen1(int8_t x) { return float(x); }

inline VF load_widen(DF df, const float* p) { return hn::LoadU(df, p); }
template <class T>
inline VF load_widen(DF df, const T* p) {
  const hn::Rebind<T, DF> dn;
  return hn::PromoteTo(df, hn::LoadU(dn, p));
}
inline VF load_widen(DF df, const int8_t* p) {
  const hn::Rebind<int8_t, DF> d8;
  const hn::Rebind<int32_t, DF> d32;
  return hn::ConvertTo(df, hn::PromoteTo(d32, hn::LoadU(d8, p)));
}

}  // namespace HWY_NAMESPACE
}  // namespace gpt2::simd
HWY_AFTER_NAMESPACE();

#endif  // the toggled guard
