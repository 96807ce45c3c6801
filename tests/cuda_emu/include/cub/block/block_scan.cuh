// cuda-emu: cub::BlockScan for a 1-D block (exclusive prefix sums in thread order, with the
// block's total). Like CUB, reusing TempStorage needs a __syncthreads() first.
#pragma once
#include "cuda_runtime.h"

namespace cub {

template <typename T, int BLOCK_THREADS>
class BlockScan {
 public:
  struct TempStorage {
    T items[BLOCK_THREADS];
    T total;
  };
  explicit BlockScan(TempStorage& storage) : s_(storage) {}

  void ExclusiveSum(T input, T& output, T& block_aggregate) {
    s_.items[threadIdx.x] = input;
    __syncthreads();
    if (threadIdx.x == 0) {  // in place: items[i] becomes the sum of the inputs before i
      T run = T();
      for (int i = 0; i < BLOCK_THREADS; ++i) {
        const T v = s_.items[i];
        s_.items[i] = run;
        run = run + v;
      }
      s_.total = run;
    }
    __syncthreads();
    output = s_.items[threadIdx.x];
    block_aggregate = s_.total;
  }
  void ExclusiveSum(T input, T& output) {
    T total;
    ExclusiveSum(input, output, total);
  }

 private:
  TempStorage& s_;
};

}  // namespace cub
