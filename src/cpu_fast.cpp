#include "cpu_fast.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "error.h"
#ifdef GPT2_HAVE_DNNL
#include <dnnl.h>
#endif

namespace gpt2::fast {
namespace {

constexpr int kChunk = 64;  // rows per dot_rows call: their results fit on the stack

// The calling thread's share [r0, r1) of n rows, cut at multiples of 4 (dot_rows' unit).
void thread_range(int n, int* r0, int* r1) {
  const long nt = omp_get_num_threads(), id = omp_get_thread_num(), units = (n + 3) / 4;
  *r0 = int(std::min<long>(n, units * id / nt * 4));
  *r1 = int(std::min<long>(n, units * (id + 1) / nt * 4));
}

// Rows [r0, r1) of the matrix-vector product with its epilogue (see Epilogue).
void gemv_range(float* out, const float* x, const WeightView& w, const float* bias, Epilogue e, int r0, int r1) {
  float y[kChunk];
  for (int c0 = r0; c0 < r1; c0 += kChunk) {
    const int c1 = std::min(r1, c0 + kChunk);
    simd::dot_rows(w, x, c0, c1, y);
    for (int r = c0; r < c1; ++r) {
      const float v = y[r - c0] + (bias ? bias[r] : 0.0f);
      if (e == Epilogue::AddTo) out[r] += v;
      else out[r] = v;
    }
    if (e == Epilogue::Gelu) simd::gelu(out + c0, c1 - c0);
  }
}

}  // namespace

void gemv(float* out, const float* x, const WeightView& w, const float* bias, Epilogue e) {
#pragma omp parallel
  {
    int r0, r1;
    thread_range(w.rows, &r0, &r1);
    gemv_range(out, x, w, bias, e, r0, r1);
  }
}

int gemv_argmax(float* logits, const float* x, const WeightView& w) {
  float best = -INFINITY;
  int best_id = 0;
#pragma omp parallel
  {
    int r0, r1;
    thread_range(w.rows, &r0, &r1);
    gemv_range(logits, x, w, nullptr, Epilogue::Store, r0, r1);
    float my_best = -INFINITY;
    int my_id = w.rows;
    for (int r = r0; r < r1; ++r)
      if (logits[r] > my_best) my_best = logits[r], my_id = r;
#pragma omp critical(gpt2_gemv_argmax)
    if (my_best > best || (my_best == best && my_id < best_id)) best = my_best, best_id = my_id;
  }
  return best_id;
}

void matmul(float* out, const float* x, const WeightView& w, const float* bias, int T, bool accumulate,
            float* scratch) {
  const int IC = w.cols, OC = w.rows;
#ifdef GPT2_HAVE_DNNL
  const float* wf = static_cast<const float*>(w.data);
  if (w.type != simd::WType::F32) {
#pragma omp parallel
    {
      int r0, r1;
      thread_range(OC, &r0, &r1);
      if (r0 < r1) simd::widen_rows(w, r0, r1, scratch + size_t(r0) * IC);
    }
    wf = scratch;
  }
  // Row-major: out (T, OC) = x (T, IC) * wf^T, wf being (OC, IC).
  if (dnnl_sgemm('N', 'T', T, OC, IC, 1.0f, x, IC, wf, IC, accumulate ? 1.0f : 0.0f, out, OC) != dnnl_success)
    throw Error("internal: oneDNN sgemm failed for a (" + std::to_string(T) + ", " + std::to_string(IC) +
                ") x (" + std::to_string(IC) + ", " + std::to_string(OC) + ") product");
  if (bias) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; ++t)
      for (int o = 0; o < OC; ++o) out[long(t) * OC + o] += bias[o];
  }
#else
  (void)scratch;
  // No GEMM library: each thread streams its rows of w once per token, from cache after the first.
#pragma omp parallel
  {
    int r0, r1;
    thread_range(OC, &r0, &r1);
    for (int t = 0; t < T; ++t)
      gemv_range(out + long(t) * OC, x + long(t) * IC, w, bias, accumulate ? Epilogue::AddTo : Epilogue::Store, r0, r1);
  }
#endif
}

void attention(float* out, const float* qkv, const float* k_ring, const float* v_ring, int T, int pos,
               const KvRing& ring, int n_head, int head_dim, float* scratch, long scratch_stride) {
  const int C = n_head * head_dim;
  const float scale = 1.0f / std::sqrt(float(head_dim));
#pragma omp parallel
  {
    float* score = scratch + omp_get_thread_num() * scratch_stride;
#pragma omp for collapse(2) schedule(static)
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < n_head; ++h) {
        const int p = pos + t;  // this token's position: it sees positions 0..p
        const float* q = qkv + long(t) * 3 * C + h * head_dim;
        for (int s = 0; s <= p; ++s)
          score[s] = simd::dot(q, k_ring + long(ring.slot(s)) * C + h * head_dim, head_dim) * scale;
        const float total = simd::exp_shifted(score, p + 1);
        float* o = out + long(t) * C + h * head_dim;
        std::fill(o, o + head_dim, 0.0f);
        for (int s = 0; s <= p; ++s) simd::axpy(o, score[s] / total, v_ring + long(ring.slot(s)) * C + h * head_dim, head_dim);
      }
    }
  }
}

void gelu(float* x, long n) {
#pragma omp parallel
  {
    const long nt = omp_get_num_threads(), id = omp_get_thread_num();
    const long i0 = n * id / nt, i1 = n * (id + 1) / nt;
    simd::gelu(x + i0, i1 - i0);
  }
}

void quantize_q8(const float* w, int rows, int cols, int8_t* q, float* scales) {
  const int nb = simd::q8_blocks(cols);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r)
    for (int b = 0; b < nb; ++b) {
      const long i0 = long(r) * cols + b * simd::kQ8Block, i1 = long(r) * cols + std::min(cols, (b + 1) * simd::kQ8Block);
      float amax = 0.0f;
      for (long i = i0; i < i1; ++i) amax = std::max(amax, std::fabs(w[i]));
      const float s = amax / 127.0f;
      scales[long(r) * nb + b] = s;
      for (long i = i0; i < i1; ++i) q[i] = int8_t(s > 0.0f ? std::lrint(w[i] / s) : 0);
    }
}

const char* gemm_library() {
#ifdef GPT2_HAVE_DNNL
  static const std::string name = [] {
    const dnnl_version_t* v = dnnl_version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  }();
  return name.c_str();
#else
  return "none (plain loops)";
#endif
}

}  // namespace gpt2::fast

namespace gpt2::simd {
const char* wtype_name(WType t) {
  switch (t) {
    case WType::F32: return "fp32";
    case WType::F16: return "fp16";
    case WType::BF16: return "bf16";
    case WType::Q8: return "int8";
  }
  return "?";
}
}  // namespace gpt2::simd
