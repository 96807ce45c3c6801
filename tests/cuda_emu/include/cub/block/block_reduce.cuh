// cuda-emu: cub::BlockReduce for a 1-D block. Every thread stores its input in TempStorage;
// after the barrier thread 0 folds them in thread order (the result, as in CUB, is valid in
// thread 0 only). Like CUB, reusing TempStorage needs a __syncthreads() first.
#pragma once
#include "cuda_runtime.h"

namespace cub {

template <typename T, int BLOCK_THREADS>
class BlockReduce {
 public:
  struct TempStorage {
    T items[BLOCK_THREADS];
  };
  explicit BlockReduce(TempStorage& storage) : s_(storage) {}

  template <typename Op>
  T Reduce(T input, Op op) {
    s_.items[threadIdx.x] = input;
    __syncthreads();
    if (threadIdx.x != 0) return input;
    T acc = s_.items[0];
    for (int i = 1; i < BLOCK_THREADS; ++i) acc = op(acc, s_.items[i]);
    return acc;
  }
  T Sum(T input) {
    return Reduce(input, [](T a, T b) { return a + b; });
  }

 private:
  TempStorage& s_;
};

}  // namespace cub
