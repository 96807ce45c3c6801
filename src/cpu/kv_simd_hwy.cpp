// kv_simd.h with Google Highway: compiled once per x86 target by hwy/foreach_target.h, the best
// one the CPU supports called through HWY_DYNAMIC_DISPATCH (as cpu_simd_hwy.cpp). Whole vectors
// over a head's values, the remainder in scalar code, so any head_dim works.
#include <algorithm>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/kv_simd_hwy.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>
#include "cpu/hwy_widen-inl.h"  // widen1, load_widen; per target

#include "base/half.h"
#include "cpu/kv_simd.h"
#include "engine/kv_format.h"

HWY_BEFORE_NAMESPACE();
namespace gpt2::simd {
namespace HWY_NAMESPACE {
namespace {

// The row's scale for head kh.head (int8; 1 for the other formats). memcpy: an odd n_embd
// leaves the scales unaligned.
inline float head_scale(const uint8_t* row, const KvHead& kh) {
  if (kh.type != ComputeDType::Int8) return 1.0f;
  float s;
  std::memcpy(&s, row + kv_q8_scale_offset(kh.n_embd, kh.head), sizeof s);
  return s;
}

template <class T>
inline const T* head_of(const uint8_t* row, const KvHead& kh) {
  return reinterpret_cast<const T*>(row) + size_t(kh.head) * kh.head_dim;
}

template <class T>
float dot1(const float* q, const T* k, int n) {
  const DF df;
  const int N = int(hn::Lanes(df));
  VF a = hn::Zero(df);
  int i = 0;
  for (; i + N <= n; i += N) a = hn::MulAdd(load_widen(df, k + i), hn::LoadU(df, q + i), a);
  float s = hn::GetLane(hn::SumOfLanes(df, a));
  for (; i < n; ++i) s += widen1(k[i]) * q[i];
  return s;
}

// Four keys at a time: q is loaded once per vector for four independent FMA chains.
template <class T>
void dots_t(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score) {
  const DF df;
  const int N = int(hn::Lanes(df)), hd = kh.head_dim;
  int j = 0;
  for (; j + 4 <= n; j += 4) {
    const T* k[4] = {head_of<T>(rows[j], kh), head_of<T>(rows[j + 1], kh), head_of<T>(rows[j + 2], kh),
                     head_of<T>(rows[j + 3], kh)};
    VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    int i = 0;
    for (; i + N <= hd; i += N) {
      const VF qv = hn::LoadU(df, q + i);
      a0 = hn::MulAdd(load_widen(df, k[0] + i), qv, a0);
      a1 = hn::MulAdd(load_widen(df, k[1] + i), qv, a1);
      a2 = hn::MulAdd(load_widen(df, k[2] + i), qv, a2);
      a3 = hn::MulAdd(load_widen(df, k[3] + i), qv, a3);
    }
    float s[4] = {hn::GetLane(hn::SumOfLanes(df, a0)), hn::GetLane(hn::SumOfLanes(df, a1)),
                  hn::GetLane(hn::SumOfLanes(df, a2)), hn::GetLane(hn::SumOfLanes(df, a3))};
    for (int r = 0; r < 4; ++r) {
      for (int t = i; t < hd; ++t) s[r] += widen1(k[r][t]) * q[t];
      score[j + r] = mult * head_scale(rows[j + r], kh) * s[r];
    }
  }
  for (; j < n; ++j) score[j] = mult * head_scale(rows[j], kh) * dot1(q, head_of<T>(rows[j], kh), hd);
}

// Up to kRows rows into o: per vector of o, four FMA chains over the rows (the rows' values stay
// in L1 between vectors: a key tile is 64 rows).
constexpr int kRows = 64;
template <class T>
void weighted_sum_rows(float* o, const float* a, const T* const* v, int m, int hd) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int i = 0;
  for (; i + N <= hd; i += N) {
    VF s0 = hn::Zero(df), s1 = hn::Zero(df), s2 = hn::Zero(df), s3 = hn::Zero(df);
    int j = 0;
    for (; j + 4 <= m; j += 4) {
      s0 = hn::MulAdd(hn::Set(df, a[j]), load_widen(df, v[j] + i), s0);
      s1 = hn::MulAdd(hn::Set(df, a[j + 1]), load_widen(df, v[j + 1] + i), s1);
      s2 = hn::MulAdd(hn::Set(df, a[j + 2]), load_widen(df, v[j + 2] + i), s2);
      s3 = hn::MulAdd(hn::Set(df, a[j + 3]), load_widen(df, v[j + 3] + i), s3);
    }
    for (; j < m; ++j) s0 = hn::MulAdd(hn::Set(df, a[j]), load_widen(df, v[j] + i), s0);
    hn::StoreU(hn::Add(hn::LoadU(df, o + i), hn::Add(hn::Add(s0, s1), hn::Add(s2, s3))), df, o + i);
  }
  for (; i < hd; ++i) {
    float s = 0.0f;
    for (int j = 0; j < m; ++j) s += a[j] * widen1(v[j][i]);
    o[i] += s;
  }
}

template <class T>
void weighted_sum_t(float* o, const float* w, float f, const uint8_t* const* rows, int n, const KvHead& kh) {
  float a[kRows];
  const T* v[kRows];
  for (int c0 = 0; c0 < n; c0 += kRows) {
    const int m = std::min(kRows, n - c0);
    for (int j = 0; j < m; ++j) {
      a[j] = f * w[c0 + j] * head_scale(rows[c0 + j], kh);
      v[j] = head_of<T>(rows[c0 + j], kh);
    }
    weighted_sum_rows(o, a, v, m, kh.head_dim);
  }
}

}  // namespace

void KvDots(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score) {
  switch (kh.type) {
    case ComputeDType::F32: return dots_t<float>(q, rows, n, kh, mult, score);
    case ComputeDType::F16: return dots_t<hwy::float16_t>(q, rows, n, kh, mult, score);
    case ComputeDType::BF16: return dots_t<hwy::bfloat16_t>(q, rows, n, kh, mult, score);
    case ComputeDType::Int8: return dots_t<int8_t>(q, rows, n, kh, mult, score);
  }
}

void KvWeightedSum(float* o, const float* w, float f, const uint8_t* const* rows, int n, const KvHead& kh) {
  switch (kh.type) {
    case ComputeDType::F32: return weighted_sum_t<float>(o, w, f, rows, n, kh);
    case ComputeDType::F16: return weighted_sum_t<hwy::float16_t>(o, w, f, rows, n, kh);
    case ComputeDType::BF16: return weighted_sum_t<hwy::bfloat16_t>(o, w, f, rows, n, kh);
    case ComputeDType::Int8: return weighted_sum_t<int8_t>(o, w, f, rows, n, kh);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gpt2::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace gpt2::simd {
HWY_EXPORT(KvDots);
HWY_EXPORT(KvWeightedSum);

void kv_dots(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score) {
  HWY_DYNAMIC_DISPATCH(KvDots)(q, rows, n, kh, mult, score);
}
void kv_weighted_sum(float* o, const float* w, float f, const uint8_t* const* rows, int n, const KvHead& kh) {
  HWY_DYNAMIC_DISPATCH(KvWeightedSum)(o, w, f, rows, n, kh);
}
}  // namespace gpt2::simd
#endif
