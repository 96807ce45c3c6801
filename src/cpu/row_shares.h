// The rows of one matrix-vector product, shared out among the threads of its parallel region so
// that no thread waits long for another at the region's end. Each thread owns a contiguous run
// of chunks and takes them from its front, so its weights are one stream read front to back
// (what the kernels' software prefetch assumes); a thread whose run is done takes chunks from
// the back of the run with the most left. A thread of the team beyond the runs (a team larger
// than at construction) only takes from the backs, and a run whose owner never comes is emptied
// the same way, so every chunk is taken exactly once whatever the team's size.
//
// Why: with a fixed share per thread the two threads of a decode step's product on the 2-core
// AMD EPYC finished on average 20 µs apart (|difference| over 10142 products, mean product
// 147 µs; thread 1 later in 61% of them), and for that time one thread streamed alone at its
// single-core rate.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

namespace gpt2::fast {

class RowShares {
 public:
  static constexpr int kMaxRuns = 64;

  // rows cut into chunks of chunk_rows (the last one may be shorter); with n chunks, run t owns
  // chunks [n t / runs, n (t + 1) / runs).
  RowShares(int rows, int chunk_rows, int threads)
      : rows_(rows), chunk_rows_(chunk_rows), n_runs_(std::clamp(threads, 1, kMaxRuns)) {
    const long n = (long(rows) + chunk_rows - 1) / chunk_rows;
    for (int t = 0; t < n_runs_; ++t)
      run_[t].span.store(pack(uint32_t(n * t / n_runs_), uint32_t(n * (t + 1) / n_runs_)));
  }

  // The next rows [*r0, *r1) for thread `self` (its omp_get_thread_num()); false when none is left.
  bool take(int self, int* r0, int* r1) {
    uint32_t c = 0;
    if (self >= n_runs_ || !pop_front(run_[self].span, &c)) {
      for (;;) {
        const int victim = fullest();
        if (victim < 0) return false;
        if (pop_back(run_[victim].span, &c)) break;
      }
    }
    *r0 = int(c) * chunk_rows_;
    *r1 = std::min(rows_, *r0 + chunk_rows_);
    return true;
  }

 private:
  // One run: (front chunk << 32) | end chunk; chunks [front, end) are left. A cache line each, so
  // an owner's takes do not contend with another owner's.
  struct alignas(64) Run {
    std::atomic<uint64_t> span{0};
  };
  static uint64_t pack(uint32_t front, uint32_t end) { return uint64_t(front) << 32 | end; }
  static uint32_t front_of(uint64_t s) { return uint32_t(s >> 32); }
  static uint32_t end_of(uint64_t s) { return uint32_t(s); }

  static bool pop_front(std::atomic<uint64_t>& span, uint32_t* c) {
    uint64_t s = span.load(std::memory_order_relaxed);
    while (front_of(s) < end_of(s))
      if (span.compare_exchange_weak(s, pack(front_of(s) + 1, end_of(s)), std::memory_order_relaxed)) {
        *c = front_of(s);
        return true;
      }
    return false;
  }
  static bool pop_back(std::atomic<uint64_t>& span, uint32_t* c) {
    uint64_t s = span.load(std::memory_order_relaxed);
    while (front_of(s) < end_of(s))
      if (span.compare_exchange_weak(s, pack(front_of(s), end_of(s) - 1), std::memory_order_relaxed)) {
        *c = end_of(s) - 1;
        return true;
      }
    return false;
  }
  // The run with the most chunks left, or -1 when all are empty.
  int fullest() const {
    int best = -1;
    uint32_t most = 0;
    for (int t = 0; t < n_runs_; ++t) {
      const uint64_t s = run_[t].span.load(std::memory_order_relaxed);
      const uint32_t left = end_of(s) > front_of(s) ? end_of(s) - front_of(s) : 0;
      if (left > most) most = left, best = t;
    }
    return best;
  }

  int rows_, chunk_rows_, n_runs_;
  Run run_[kMaxRuns];
};

}  // namespace gpt2::fast
