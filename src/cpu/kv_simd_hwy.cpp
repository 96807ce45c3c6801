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

// The loops below take the head size as a template argument where it is GPT-2's 64, so that
// their vector loops are unrolled into straight code; kAnyHd (0) reads it at run time.
constexpr int kAnyHd = 0;
template <int HD>
inline int head_size(const KvHead& kh) {
  return HD == kAnyHd ? kh.head_dim : HD;
}

// One FMA chain over a head's vectors, a sum of its lanes, then the scalar remainder: every
// score is computed this way, whichever loop computes it.
template <class T, int HD>
float dot1(const float* q, const T* k, int hd) {
  const DF df;
  const int N = int(hn::Lanes(df));
  VF a = hn::Zero(df);
  int i = 0;
  for (; i + N <= hd; i += N) a = hn::MulAdd(load_widen(df, k + i), hn::LoadU(df, q + i), a);
  float s = hn::GetLane(hn::SumOfLanes(df, a));
  for (; i < hd; ++i) s += widen1(k[i]) * q[i];
  return s;
}

// All the heads of a row, then the next row: the rows are read in position order, each row's
// bytes in address order (the hardware prefetchers follow that stream; reading four rows a head
// at a time streamed at 12-13 GB/s where this order streams at 16-20, two threads on the AMD
// EPYC). The heads' chains are independent, so the core overlaps them.
template <class T, int HD>
void dots_t(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score) {
  const int hd = head_size<HD>(kh);
  for (int j = 0; j < n; ++j)
    for (int g = 0; g < kh.heads; ++g) {
      const KvHead one = kh.one(kh.head + g);
      score[g * n + j] = mult * head_scale(rows[j], one) * dot1<T, HD>(q + g * hd, head_of<T>(rows[j], one), hd);
    }
}

// Up to kRows rows into each head's output: per value of the output one FMA chain over the rows
// in order, from 0, added to o at the end, so each o_g's arithmetic is the same for any number
// of heads or rows in a call, and in both loops below. acc: the chains (heads x head_dim floats).
constexpr int kRows = 64;

// o_g += acc_g for each head g of kh.
template <int HD>
void add_chains(float* o, const float* acc, const KvHead& kh) {
  const DF df;
  const int N = int(hn::Lanes(df)), hd = head_size<HD>(kh), vec = hd / N * N;
  for (int g = 0; g < kh.heads; ++g) {
    const float* c = acc + size_t(g) * hd;
    float* og = o + g * hd;
    for (int i = 0; i < vec; i += N) hn::StoreU(hn::Add(hn::LoadU(df, og + i), hn::LoadU(df, c + i)), df, og + i);
    for (int i = vec; i < hd; ++i) og[i] += c[i];
  }
}

// For several heads (a decode step, its rows read from memory): row by row, all the heads of a
// row in turn, so each row's bytes are read in address order (as in q.K), the chains waiting in
// acc in L1. Measured in the decode step at context ~1014 on the AMD EPYC (attention per layer,
// interleaved with weighted_sum_held's order, four formats): lower in 34 of 41 pairs, e.g.
// fp16 174-219 -> 165-200 us, int8 171-195 -> 141-206 in the last three rounds. From L1 it costs
// more (~21 against 11-15 cycles per row and head), hence the other loop for one head.
template <class T, int HD>
void weighted_sum_streamed(float* o, const float* a, const uint8_t* const* rows, int m, const KvHead& kh, int stride,
                           float* acc) {
  const DF df;
  const int N = int(hn::Lanes(df)), hd = head_size<HD>(kh), vec = hd / N * N;
  std::fill_n(acc, size_t(kh.heads) * hd, 0.0f);
  for (int j = 0; j < m; ++j)
    for (int g = 0; g < kh.heads; ++g) {
      const T* v = head_of<T>(rows[j], kh.one(kh.head + g));
      const float aj = a[g * stride + j];
      const VF av = hn::Set(df, aj);
      float* c = acc + size_t(g) * hd;
      for (int i = 0; i < vec; i += N)
        hn::StoreU(hn::MulAdd(av, load_widen(df, v + i), hn::LoadU(df, c + i)), df, c + i);
      for (int i = vec; i < hd; ++i) c[i] += aj * widen1(v[i]);
    }
  add_chains<HD>(o, acc, kh);
}

// For one head (the rows path, whose key tile is in cache and serves 16 queries): the rows
// kSubRows at a time, the head's chains held in registers over them, waiting in acc in between.
constexpr int kSubRows = 8, kVecBlock = 8;  // kVecBlock: chains in registers at once
template <class T, int HD>
void weighted_sum_held(float* o, const float* a, const uint8_t* const* rows, int m, const KvHead& kh, int stride,
                       float* acc) {
  const DF df;
  const int N = int(hn::Lanes(df)), hd = head_size<HD>(kh), vec = hd / N * N;
  std::fill_n(acc, size_t(kh.heads) * hd, 0.0f);
  for (int r0 = 0; r0 < m; r0 += kSubRows) {
    const int r1 = std::min(m, r0 + kSubRows);
    for (int g = 0; g < kh.heads; ++g) {
      const KvHead one = kh.one(kh.head + g);
      const float* ag = a + g * stride;
      float* c = acc + size_t(g) * hd;
      for (int i0 = 0; i0 < vec; i0 += kVecBlock * N) {
        const int nv = std::min(kVecBlock, (vec - i0) / N);
        VF chain[kVecBlock];
        for (int u = 0; u < nv; ++u) chain[u] = hn::LoadU(df, c + i0 + u * N);
        for (int j = r0; j < r1; ++j) {
          const T* v = head_of<T>(rows[j], one) + i0;
          const VF aj = hn::Set(df, ag[j]);
          for (int u = 0; u < nv; ++u) chain[u] = hn::MulAdd(aj, load_widen(df, v + u * N), chain[u]);
        }
        for (int u = 0; u < nv; ++u) hn::StoreU(chain[u], df, c + i0 + u * N);
      }
      for (int i = vec; i < hd; ++i)
        for (int j = r0; j < r1; ++j) c[i] += ag[j] * widen1(head_of<T>(rows[j], one)[i]);
    }
  }
  add_chains<HD>(o, acc, kh);
}

template <class T, int HD>
void weighted_sum_t(float* o, const float* w, const uint8_t* const* rows, int n, const KvHead& kh,
                    float* acc) {
  float a[kMaxKvHeads * kRows];
  for (int c0 = 0; c0 < n; c0 += kRows) {
    const int m = std::min(kRows, n - c0);
    for (int g = 0; g < kh.heads; ++g)
      for (int j = 0; j < m; ++j) a[g * kRows + j] = w[g * n + c0 + j] * head_scale(rows[c0 + j], kh.one(kh.head + g));
    if (kh.heads == 1) weighted_sum_held<T, HD>(o, a, rows + c0, m, kh, kRows, acc);
    else weighted_sum_streamed<T, HD>(o, a, rows + c0, m, kh, kRows, acc);
  }
}

// GPT-2's head size gets its own copy of each loop.
template <class T>
void dots_any(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score) {
  if (kh.head_dim == 64) return dots_t<T, 64>(q, rows, n, kh, mult, score);
  dots_t<T, kAnyHd>(q, rows, n, kh, mult, score);
}
template <class T>
void weighted_sum_any(float* o, const float* w, const uint8_t* const* rows, int n, const KvHead& kh,
                      float* acc) {
  if (kh.head_dim == 64) return weighted_sum_t<T, 64>(o, w, rows, n, kh, acc);
  weighted_sum_t<T, kAnyHd>(o, w, rows, n, kh, acc);
}

}  // namespace

void KvDots(const float* q, const uint8_t* const* rows, int n, const KvHead& kh, float mult, float* score) {
  switch (kh.type) {
    case ComputeDType::F32: return dots_any<float>(q, rows, n, kh, mult, score);
    case ComputeDType::F16: return dots_any<hwy::float16_t>(q, rows, n, kh, mult, score);
    case ComputeDType::BF16: return dots_any<hwy::bfloat16_t>(q, rows, n, kh, mult, score);
    case ComputeDType::Int8: return dots_any<int8_t>(q, rows, n, kh, mult, score);
  }
}

void KvWeightedSum(float* o, const float* w, const uint8_t* const* rows, int n, const KvHead& kh,
                   float* acc) {
  switch (kh.type) {
    case ComputeDType::F32: return weighted_sum_any<float>(o, w, rows, n, kh, acc);
    case ComputeDType::F16: return weighted_sum_any<hwy::float16_t>(o, w, rows, n, kh, acc);
    case ComputeDType::BF16: return weighted_sum_any<hwy::bfloat16_t>(o, w, rows, n, kh, acc);
    case ComputeDType::Int8: return weighted_sum_any<int8_t>(o, w, rows, n, kh, acc);
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
void kv_weighted_sum(float* o, const float* w, const uint8_t* const* rows, int n, const KvHead& kh,
                     float* acc) {
  HWY_DYNAMIC_DISPATCH(KvWeightedSum)(o, w, rows, n, kh, acc);
}
}  // namespace gpt2::simd
#endif
