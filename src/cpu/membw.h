// A STREAM-style memory read-bandwidth probe: every thread sums its share of a buffer far
// larger than the last-level cache. Decode streams each weight once per token, so this rate
// over the bytes a token must read is the fastest decode the machine can do (the "floor").
#pragma once
#include <cstddef>

namespace gpt2 {

struct ReadBandwidth {
  double gb_per_s = 0;      // best of the timed passes, 1e9 bytes per second
  size_t buffer_bytes = 0;
  int threads = 0;
};

// The last-level cache's size as the OS reports it (0 if unknown).
size_t last_level_cache_bytes();

// Takes a fraction of a second and allocates the buffer for that time (freed on return).
ReadBandwidth measure_read_bandwidth();

}  // namespace gpt2
