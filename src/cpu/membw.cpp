#include "cpu/membw.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

namespace gpt2 {
namespace {

// Sum of n floats with 16 independent partial sums, so the adds never wait on each other and
// the loop runs at the speed memory delivers. Each cache line is also requested 8 KB ahead, as
// the decode kernels do by default (src/cpu/cpu_simd_hwy.cpp): without it this loop read less than those
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

// Linux's sysfs first: in a VM, glibc's sysconf can report the host's whole L3 (256 MB where
// sysfs and lscpu say 32 MB on this project's AMD EPYC VM).
size_t last_level_cache_bytes() {
  size_t best = 0;
  int best_level = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/";
    std::ifstream level_in(dir + "level"), size_in(dir + "size");
    int level = 0;
    std::string size;
    if (!(level_in >> level) || !(size_in >> size) || size.empty()) continue;
    const size_t unit = size.back() == 'K' ? 1024 : size.back() == 'M' ? 1024 * 1024 : 1;
    const size_t bytes = size_t(std::strtoull(size.c_str(), nullptr, 10)) * unit;
    if (level > best_level && bytes > 0) best_level = level, best = bytes;
  }
  if (best > 0) return best;
  long s = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
  s = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (s <= 0) s = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
  return s > 0 ? size_t(s) : 0;
}

ReadBandwidth measure_read_bandwidth() {
  ReadBandwidth r;
  r.buffer_bytes = std::clamp<size_t>(4 * last_level_cache_bytes(), size_t(256) << 20, size_t(1) << 30);
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
