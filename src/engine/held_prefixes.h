// Shared prefixes in a batch (engine/batch.h; vLLM's automatic prefix caching, llama.cpp's
// server prompt reuse, done by copying): which tokens each of a backend's sequences' K/V rings
// holds at positions [0, n) from ring start 0, so that a new prompt can take the K/V of the
// longest prefix it shares with any of them instead of computing it.
#pragma once
#include <cstddef>
#include <vector>

#include "engine/kv_ring.h"

namespace gpt2 {

class HeldPrefixes {
 public:
  explicit HeldPrefixes(int n_seqs) : held_(std::size_t(n_seqs)) {}

  // Sequence seq's forward() (or decode row) wrote `n` tokens `ids` at positions [pos, pos + n)
  // of `ring`. `kept`: the sequence keeps its K/V as computed for its tokens from position 0 (false
  // under --no-cache, whose ring is rebuilt each step, and once a context shift has recomputed the
  // kept tokens at other positions): then the sequence's record ends.
  void wrote(int seq, const int* ids, int n, int pos, const KvRing& ring, bool kept);

  struct Match {
    int seq = -1;  // the sequence holding it; -1: none
    int n = 0;     // positions [0, n) of its rings
  };
  // The sequence whose rings hold the longest prefix of `prompt`, at most prompt.size() - 1
  // tokens (the last one is always computed, for the logits); on a tie, `prefer` (the slot the
  // prompt lands in: nothing to copy).
  Match longest(const std::vector<int>& prompt, int prefer) const;

 private:
  std::vector<std::vector<int>> held_;  // (n_seqs) the ids at positions [0, size) of each
};

}  // namespace gpt2
