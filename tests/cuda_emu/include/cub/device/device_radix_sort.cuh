// cuda-emu: cub::DeviceRadixSort::SortPairsDescending, a stable sort by the radix order of the
// keys' bits (for floats: -0 before +0 ascending, NaNs by their bit patterns), as CUB sorts.
// Queued on its stream like a kernel (or recorded while it is being captured).
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "cuda_runtime.h"

namespace emu {
// Sorts n (float key, 4-byte value) pairs.
cudaError_t sort_pairs_descending(void* temp, size_t& temp_bytes, const float* keys_in, float* keys_out,
                                  const void* values_in, void* values_out, int n, int begin_bit, int end_bit,
                                  cudaStream_t stream);
}  // namespace emu

namespace cub {

struct DeviceRadixSort {
  template <typename K, typename V>
  static cudaError_t SortPairsDescending(void* d_temp_storage, size_t& temp_storage_bytes, const K* d_keys_in,
                                         K* d_keys_out, const V* d_values_in, V* d_values_out, int num_items,
                                         int begin_bit = 0, int end_bit = int(sizeof(K) * 8),
                                         cudaStream_t stream = nullptr) {
    static_assert(std::is_same<K, float>::value && sizeof(V) == 4, "cuda-emu sorts float keys, 4-byte values");
    return emu::sort_pairs_descending(d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out, d_values_in,
                                      d_values_out, num_items, begin_bit, end_bit, stream);
  }
};

}  // namespace cub
