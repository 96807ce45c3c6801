#include "cpu/membw.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>

namespace gpt2 {
namespace {

// The last-level cache's size as the OS reports it (0 if unknown).
size_t llc_bytes() {
  long s = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  s = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (s <= 0) s = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  return s > 0 ? size_t(s) : 0;
}

// Sum of n floats with 16 independent partial sums, so the adds never wait on each other and
// the loop runs at the speed memory delivers. Each cache line is also requested 8 KB ahead, as
// the decode kernels do (src/cpu/cpu_simd_hwy.cpp): without it this loop read less than those
// kernels stream, and the floor it gives would be too low.
float sum(const float* p, size_t n) {
  float acc[16] = {};
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p + i) + 8192));
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  }
  for (; i < n; ++i) acc[0] += p[i];
  float s = 0;
  for (float a : acc) s += a;
  return s;
}

}  // namespace

ReadBandwidth measure_read_bandwidth() {
  ReadBandwidth r;
  r.buffer_bytes = std::clamp<size_t>(4 * llc_bytes(), size_t(256) << 20, size_t(1) << 30);
  const size_t n = r.buffer_bytes / sizeof(float);
  std::unique_ptr<float[]> buf(new float[n]);
  volatile float sink = 0;
#pragma omp parallel
  {
    const size_t nt = size_t(omp_get_num_threads()), id = size_t(omp_get_thread_num());
    const size_t i0 = n * id / nt, i1 = n * (id + 1) / nt;
    std::fill(buf.get() + i0, buf.get() + i1, 1.0f);  // first touch by the thread that reads it
  }
  double best = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const auto t0 = std::chrono::steady_clock::now();
    float total = 0;
#pragma omp parallel reduction(+ : total)
    {
      const size_t nt = size_t(omp_get_num_threads()), id = size_t(omp_get_thread_num());
      total += sum(buf.get() + n * id / nt, n * (id + 1) / nt - n * id / nt);
      if (id == 0) r.threads = int(nt);
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    sink = sink + total;
    best = std::max(best, double(r.buffer_bytes) / s / 1e9);
  }
  r.gb_per_s = best;
  return r;
}

}  // namespace gpt2
