// cpu_simd.h with Google Highway: this file is compiled once per x86 target by
// hwy/foreach_target.h and HWY_DYNAMIC_DISPATCH calls the best one the CPU supports.
// Every loop runs whole vectors and finishes the remainder with scalar code, so any size works
// and nothing is read past an array's end.
#include <algorithm>
#include <cmath>
#include <cstring>

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/cpu_simd_hwy.cpp"
#include <hwy/foreach_target.h>  // must come before highway.h
#include <hwy/highway.h>
#include <hwy/contrib/math/math-inl.h>
#include "cpu/hwy_widen-inl.h"  // widen1, load_widen; per target

#include "base/half.h"
#include "cpu/cpu_simd.h"
#include "cpu/q8_rule.h"

HWY_BEFORE_NAMESPACE();
namespace gpt2::simd {
namespace HWY_NAMESPACE {

// Software prefetch of the weight stream. A thread's rows of a matrix are contiguous in memory,
// so its share is one byte stream, read K rows at a time; the kernels ask for each cache line of
// that stream once, prefetch_distance() bytes ahead of the rows being read (pf starts at the
// first row + the distance and advances with the reads). The hardware prefetchers alone left
// decode at ~75% of the read bandwidth (the Intel VM); a prefetch per row and vector, as before,
// asked for each line 2-4 times, and its distance in a row's stream meant a different distance
// in the matrix for fp16 and fp32 rows. Measured on the 2-core AMD EPYC (Zen 3), 124M, medians
// of 5 interleaved runs, decode tokens/s: fp16 58.9 (per row, 8 KB) -> 66.3 (per line, 8 KB).
// A prefetch never faults, so running past a matrix's end is harmless; the address is formed as
// an integer so no out-of-range pointer is formed in C++.
template <int kBytes>
inline void prefetch_stream(uintptr_t& pf) {
  for (int b = 0; b < kBytes; b += 64) __builtin_prefetch(reinterpret_cast<const void*>(pf + b));
  pf += kBytes;
}
inline uintptr_t stream_start(const void* rows) { return reinterpret_cast<uintptr_t>(rows) + prefetch_distance(); }

// The bytes of weights one vector step of the four-row loops reads (four rows, a vector each).
template <class T>
constexpr int kPassBytes = 4 * int(sizeof(T)) * int(HWY_LANES(float));

// Four rows at a time: x is loaded once per vector for four independent FMA chains, and four
// weight streams keep the prefetchers busy (decode is bound by how fast weights stream in).
template <class T>
void dot_rows_t(const T* w, int n, const float* x, int r0, int r1, float* out) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T* w0 = w + size_t(r) * n;
    const T *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
    VF a0 = hn::Zero(df), a1 = hn::Zero(df), a2 = hn::Zero(df), a3 = hn::Zero(df);
    int i = 0;
    uintptr_t pf = stream_start(w0);
    for (; i + N <= n; i += N) {
      prefetch_stream<kPassBytes<T>>(pf);
      const VF xv = hn::LoadU(df, x + i);
      a0 = hn::MulAdd(load_widen(df, w0 + i), xv, a0);
      a1 = hn::MulAdd(load_widen(df, w1 + i), xv, a1);
      a2 = hn::MulAdd(load_widen(df, w2 + i), xv, a2);
      a3 = hn::MulAdd(load_widen(df, w3 + i), xv, a3);
    }
    float s[4] = {hn::GetLane(hn::SumOfLanes(df, a0)), hn::GetLane(hn::SumOfLanes(df, a1)),
                  hn::GetLane(hn::SumOfLanes(df, a2)), hn::GetLane(hn::SumOfLanes(df, a3))};
    for (; i < n; ++i) {
      s[0] += widen1(w0[i]) * x[i];
      s[1] += widen1(w1[i]) * x[i];
      s[2] += widen1(w2[i]) * x[i];
      s[3] += widen1(w3[i]) * x[i];
    }
    for (int k = 0; k < 4; ++k) out[r - r0 + k] = s[k];
  }
  for (; r < r1; ++r) {
    const T* wr = w + size_t(r) * n;
    VF a = hn::Zero(df);
    int i = 0;
    for (; i + N <= n; i += N) a = hn::MulAdd(load_widen(df, wr + i), hn::LoadU(df, x + i), a);
    float s = hn::GetLane(hn::SumOfLanes(df, a));
    for (; i < n; ++i) s += widen1(wr[i]) * x[i];
    out[r - r0] = s;
  }
}

// dot_rows_t for JB inputs: four rows' widened weights are loaded once per vector and used by
// JB x 4 FMA chains. Each chain is one (row, input) pair accumulated in the order dot_rows_t
// uses for it (one vector accumulator over i, SumOfLanes, the scalar tail), so the results are
// bitwise those of dot_rows_t input by input.
template <int JB, class T>
void dot_rows_group(const T* w, int n, const float* x, long x_stride, int r0, int r1, float* out, long out_stride) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int r = r0;
  for (; r + 4 <= r1; r += 4) {
    const T* wr[4] = {w + size_t(r) * n, w + size_t(r + 1) * n, w + size_t(r + 2) * n, w + size_t(r + 3) * n};
    VF a[4][JB];
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < JB; ++j) a[k][j] = hn::Zero(df);
    int i = 0;
    uintptr_t pf = stream_start(wr[0]);
    for (; i + N <= n; i += N) {
      prefetch_stream<kPassBytes<T>>(pf);
      VF wv[4];
      for (int k = 0; k < 4; ++k) wv[k] = load_widen(df, wr[k] + i);
      for (int j = 0; j < JB; ++j) {
        const VF xv = hn::LoadU(df, x + j * x_stride + i);
        for (int k = 0; k < 4; ++k) a[k][j] = hn::MulAdd(wv[k], xv, a[k][j]);
      }
    }
    for (int j = 0; j < JB; ++j) {
      const float* xj = x + j * x_stride;
      for (int k = 0; k < 4; ++k) {
        float s = hn::GetLane(hn::SumOfLanes(df, a[k][j]));
        for (int t = i; t < n; ++t) s += widen1(wr[k][t]) * xj[t];
        out[j * out_stride + r - r0 + k] = s;
      }
    }
  }
  for (int j = 0; j < JB && r < r1; ++j) dot_rows_t(w, n, x + j * x_stride, r, r1, out + j * out_stride + (r - r0));
}

template <class T>
void dot_rows_batch_t(const T* w, int n, const float* x, long x_stride, int B, int r0, int r1, float* out,
                      long out_stride) {
  if (B == 1) return dot_rows_t(w, n, x, r0, r1, out);
  int b = 0;
  for (; b + 4 <= B; b += 4) dot_rows_group<4>(w, n, x + b * x_stride, x_stride, r0, r1, out + b * out_stride, out_stride);
  switch (B - b) {
    case 3: return dot_rows_group<3>(w, n, x + b * x_stride, x_stride, r0, r1, out + b * out_stride, out_stride);
    case 2: return dot_rows_group<2>(w, n, x + b * x_stride, x_stride, r0, r1, out + b * out_stride, out_stride);
    case 1: return dot_rows_t(w, n, x + b * x_stride, r0, r1, out + b * out_stride);
  }
}

// quantize_q8_row: q8_rule.h's rule, whole blocks in vectors (x / scale divides exactly as the
// scalar code does, and NearestInt rounds to nearest even as lrint does: the same q bit for bit).
void QuantizeQ8Row(const float* x, int n, int8_t* q, float* scales) {
  const DF df;
  const hn::Rebind<int32_t, DF> di;
  const hn::Rebind<int8_t, DF> d8;
  const int N = int(hn::Lanes(df));
  for (int b = 0; b * kQ8Block < n; ++b) {
    const int i0 = b * kQ8Block, len = std::min(kQ8Block, n - i0);
    if (len < kQ8Block || N > kQ8Block) {
      q8::quantize_block(x + i0, len, q + i0, scales + b);
      continue;
    }
    VF m = hn::Zero(df);
    for (int i = i0; i < i0 + kQ8Block; i += N) m = hn::Max(m, hn::Abs(hn::LoadU(df, x + i)));
    const float s = hn::GetLane(hn::MaxOfLanes(df, m)) / 127.0f;
    scales[b] = s;
    const VF sv = hn::Set(df, s);
    for (int i = i0; i < i0 + kQ8Block; i += N) {
      const auto qi = s > 0.0f ? hn::NearestInt(hn::Div(hn::LoadU(df, x + i), sv)) : hn::Zero(di);
      hn::StoreU(hn::DemoteTo(d8, qi), d8, q + i);
    }
  }
}

#if HWY_ARCH_X86 && HWY_TARGET <= HWY_AVX2
// 32 int8 weights times 32 int8 inputs, summed into 8 int32 lanes. vpmaddubsw multiplies
// unsigned by signed bytes, so |w| meets x carrying w's sign (llama.cpp's trick); |q| <= 127 by
// the rule, so a pair never saturates the int16 (2 * 127 * 127 < 32767) and the sum is exact.
inline __m256i dot32_i8(__m256i w, __m256i x) {
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

inline float sum_lanes(__m256 v) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

// K consecutive rows from w (row stride n bytes): each whole block's integer sum, widened to
// fp32 and times its two scales, accumulates lane by lane; the lanes, then the last partial
// block (scalar) are added at the end. The input block is loaded once for the K rows, and one
// prefetch per cache line runs ahead of the K-row stream (prefetch_stream), and another ahead of
// the rows' scales, a second stream of 4 bytes per 32 weights: the same distance in weights, so
// an eighth of it in bytes, one line per 64 bytes consumed.
template <int K>
void dot_rows_q8_k(const int8_t* w, const float* ws, int n, int nb, const int8_t* xq, const float* xs,
                   float* out) {
  __m256 acc[K];
  for (int k = 0; k < K; ++k) acc[k] = _mm256_setzero_ps();
  const int whole = n / kQ8Block;
  uintptr_t pf = stream_start(w);
  uintptr_t spf = reinterpret_cast<uintptr_t>(ws) + prefetch_distance() / (kQ8Block / sizeof(float));
  for (int b = 0; b < whole; ++b) {
    prefetch_stream<K * kQ8Block>(pf);
    const size_t scale_bytes = size_t(b) * K * sizeof(float);  // the rows' scales consumed so far
    if (scale_bytes % 64 == 0) __builtin_prefetch(reinterpret_cast<const void*>(spf + scale_bytes));
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * kQ8Block));
    for (int k = 0; k < K; ++k) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + size_t(k) * n + b * kQ8Block));
      const __m256 d = _mm256_set1_ps(ws[size_t(k) * nb + b] * xs[b]);
      acc[k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot32_i8(wv, xv)), d, acc[k]);
    }
  }
  for (int k = 0; k < K; ++k)
    out[k] = sum_lanes(acc[k]) + q8::row_dot(w + size_t(k) * n, ws + size_t(k) * nb, xq, xs, n, whole);
}

void DotRowsQ8(const WeightView& w, const int8_t* xq, const float* xs, int r0, int r1, float* out) {
  const int n = w.cols, nb = q8_blocks(n);
  const int8_t* q = static_cast<const int8_t*>(w.data);
  int r = r0;
  for (; r + 4 <= r1; r += 4)
    dot_rows_q8_k<4>(q + size_t(r) * n, w.scales + size_t(r) * nb, n, nb, xq, xs, out + (r - r0));
  for (; r < r1; ++r) dot_rows_q8_k<1>(q + size_t(r) * n, w.scales + size_t(r) * nb, n, nb, xq, xs, out + (r - r0));
}
#else
// Below AVX2: the rule's scalar row product.
void DotRowsQ8(const WeightView& w, const int8_t* xq, const float* xs, int r0, int r1, float* out) {
  q8::rows_dot(static_cast<const int8_t*>(w.data), w.scales, w.cols, xq, xs, r0, r1, out);
}
#endif

// A float input's Q8 product: the input quantised on the stack, then DotRowsQ8.
void dot_rows_q8_float(const WeightView& w, const float* x, int r0, int r1, float* out) {
  int8_t xq[kQ8MaxCols];
  float xs[kQ8MaxCols / kQ8Block];
  QuantizeQ8Row(x, w.cols, xq, xs);
  DotRowsQ8(w, xq, xs, r0, r1, out);
}

void DotRows(const WeightView& w, const float* x, int r0, int r1, float* out) {
  const int n = w.cols;
  switch (w.type) {
    case WType::F32: return dot_rows_t(static_cast<const float*>(w.data), n, x, r0, r1, out);
    case WType::F16: return dot_rows_t(static_cast<const hwy::float16_t*>(w.data), n, x, r0, r1, out);
    case WType::BF16: return dot_rows_t(static_cast<const hwy::bfloat16_t*>(w.data), n, x, r0, r1, out);
    case WType::Q8: return dot_rows_q8_float(w, x, r0, r1, out);
  }
}

void DotRowsBatch(const WeightView& w, const float* x, long x_stride, int B, int r0, int r1, float* out,
                  long out_stride) {
  const int n = w.cols;
  switch (w.type) {
    case WType::F32:
      return dot_rows_batch_t(static_cast<const float*>(w.data), n, x, x_stride, B, r0, r1, out, out_stride);
    case WType::F16:
      return dot_rows_batch_t(static_cast<const hwy::float16_t*>(w.data), n, x, x_stride, B, r0, r1, out, out_stride);
    case WType::BF16:
      return dot_rows_batch_t(static_cast<const hwy::bfloat16_t*>(w.data), n, x, x_stride, B, r0, r1, out,
                              out_stride);
    case WType::Q8:  // input by input, the rows from cache for every input after the first
      for (int b = 0; b < B; ++b) dot_rows_q8_float(w, x + b * x_stride, r0, r1, out + b * out_stride);
      return;
  }
}

template <class T>
void widen_t(const T* w, size_t count, float* out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  size_t i = 0;
  for (; i + N <= count; i += N) hn::StoreU(load_widen(df, w + i), df, out + i);
  for (; i < count; ++i) out[i] = widen1(w[i]);
}

void WidenRows(const WeightView& w, int r0, int r1, float* out) {
  const size_t n = size_t(w.cols), count = size_t(r1 - r0) * n, first = size_t(r0) * n;
  switch (w.type) {
    case WType::F32: return widen_t(static_cast<const float*>(w.data) + first, count, out);
    case WType::F16: return widen_t(static_cast<const hwy::float16_t*>(w.data) + first, count, out);
    case WType::BF16: return widen_t(static_cast<const hwy::bfloat16_t*>(w.data) + first, count, out);
    case WType::Q8: {
      const int nb = q8_blocks(w.cols);
      widen_t(static_cast<const int8_t*>(w.data) + first, count, out);
      for (int r = r0; r < r1; ++r)
        for (int b = 0; b < nb; ++b) {
          const int end = std::min(w.cols, (b + 1) * kQ8Block);
          float* o = out + size_t(r - r0) * n;
          for (int i = b * kQ8Block; i < end; ++i) o[i] *= w.scales[size_t(r) * nb + b];
        }
      return;
    }
  }
}

float Dot(const float* a, const float* b, int n) {
  const DF df;
  const int N = int(hn::Lanes(df));
  VF acc = hn::Zero(df);
  int i = 0;
  for (; i + N <= n; i += N) acc = hn::MulAdd(hn::LoadU(df, a + i), hn::LoadU(df, b + i), acc);
  float s = hn::GetLane(hn::SumOfLanes(df, acc));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void Axpy(float* y, float a, const float* x, int n) {
  const DF df;
  const int N = int(hn::Lanes(df));
  const VF av = hn::Set(df, a);
  int i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::MulAdd(av, hn::LoadU(df, x + i), hn::LoadU(df, y + i)), df, y + i);
  for (; i < n; ++i) y[i] += a * x[i];
}

void Scale(float* x, float a, int n) {
  const DF df;
  const int N = int(hn::Lanes(df));
  int i = 0;
  for (; i + N <= n; i += N) hn::StoreU(hn::Mul(hn::LoadU(df, x + i), hn::Set(df, a)), df, x + i);
  for (; i < n; ++i) x[i] *= a;
}

float ExpShifted(float* x, int n) {
  const DF df;
  const int N = int(hn::Lanes(df));
  float m = -INFINITY;
  for (int i = 0; i < n; ++i) m = std::max(m, x[i]);
  const VF mv = hn::Set(df, m);
  VF sum = hn::Zero(df);
  int i = 0;
  for (; i + N <= n; i += N) {
    const VF e = hn::Exp(df, hn::Sub(hn::LoadU(df, x + i), mv));
    hn::StoreU(e, df, x + i);
    sum = hn::Add(sum, e);
  }
  float s = hn::GetLane(hn::SumOfLanes(df, sum));
  for (; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  return s;
}

void Gelu(float* x, long n) {
  const DF df;
  const long N = long(hn::Lanes(df));
  const float k = std::sqrt(2.0f / float(M_PI));
  const VF half = hn::Set(df, 0.5f), one = hn::Set(df, 1.0f), kv = hn::Set(df, k), c = hn::Set(df, 0.044715f);
  auto gelu_vec = [&](float* p) {
    const VF v = hn::LoadU(df, p);
    const VF inner = hn::Mul(kv, hn::MulAdd(hn::Mul(c, v), hn::Mul(v, v), v));
    hn::StoreU(hn::Mul(hn::Mul(half, v), hn::Add(one, hn::Tanh(df, inner))), df, p);
  };
  long i = 0;
  for (; i + N <= n; i += N) gelu_vec(x + i);
  // The remainder through the same vector code, so an element's value does not depend on where
  // the range it came in starts or ends (the rows a thread took of a product).
  if (i < n) {
    HWY_ALIGN float rest[HWY_MAX_BYTES / sizeof(float)] = {};
    std::copy(x + i, x + n, rest);
    gelu_vec(rest);
    std::copy(rest, rest + (n - i), x + i);
  }
}

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace gpt2::simd
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace gpt2::simd {
HWY_EXPORT(DotRows);
HWY_EXPORT(DotRowsBatch);
HWY_EXPORT(QuantizeQ8Row);
HWY_EXPORT(DotRowsQ8);
HWY_EXPORT(WidenRows);
HWY_EXPORT(Dot);
HWY_EXPORT(Axpy);
HWY_EXPORT(Scale);
HWY_EXPORT(ExpShifted);
HWY_EXPORT(Gelu);
HWY_EXPORT(TargetName);

void dot_rows(const WeightView& w, const float* x, int r0, int r1, float* out) {
  HWY_DYNAMIC_DISPATCH(DotRows)(w, x, r0, r1, out);
}
void dot_rows_batch(const WeightView& w, const float* x, long x_stride, int B, int r0, int r1, float* out,
                    long out_stride) {
  HWY_DYNAMIC_DISPATCH(DotRowsBatch)(w, x, x_stride, B, r0, r1, out, out_stride);
}
void quantize_q8_row(const float* x, int n, int8_t* q, float* scales) {
  HWY_DYNAMIC_DISPATCH(QuantizeQ8Row)(x, n, q, scales);
}
void dot_rows_q8(const WeightView& w, const int8_t* xq, const float* xs, int r0, int r1, float* out) {
  HWY_DYNAMIC_DISPATCH(DotRowsQ8)(w, xq, xs, r0, r1, out);
}
void widen_rows(const WeightView& w, int r0, int r1, float* out) { HWY_DYNAMIC_DISPATCH(WidenRows)(w, r0, r1, out); }
float dot(const float* a, const float* b, int n) { return HWY_DYNAMIC_DISPATCH(Dot)(a, b, n); }
void axpy(float* y, float a, const float* x, int n) { HWY_DYNAMIC_DISPATCH(Axpy)(y, a, x, n); }
void scale(float* x, float a, int n) { HWY_DYNAMIC_DISPATCH(Scale)(x, a, n); }
float exp_shifted(float* x, int n) { return HWY_DYNAMIC_DISPATCH(ExpShifted)(x, n); }
void gelu(float* x, long n) { HWY_DYNAMIC_DISPATCH(Gelu)(x, n); }
const char* target_name() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }
}  // namespace gpt2::simd
#endif
