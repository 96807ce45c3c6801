#include "engine/held_prefixes.h"

#include <algorithm>

namespace gpt2 {

void HeldPrefixes::wrote(int seq, const int* ids, int n, int pos, const KvRing& ring, bool kept) {
  std::vector<int>& h = held_[size_t(seq)];
  // Positions past pos are stale now; a write beyond the record leaves a gap nothing describes.
  if (!kept || ring.start != 0 || pos > int(h.size())) {
    h.clear();
    return;
  }
  h.resize(size_t(pos));
  h.insert(h.end(), ids, ids + n);
}

HeldPrefixes::Match HeldPrefixes::longest(const std::vector<int>& prompt, int prefer) const {
  Match best;
  const size_t cap = prompt.empty() ? 0 : prompt.size() - 1;
  for (int s = 0; s < int(held_.size()); ++s) {
    const std::vector<int>& h = held_[size_t(s)];
    const size_t limit = std::min(cap, h.size());
    const int common = int(std::mismatch(h.begin(), h.begin() + long(limit), prompt.begin()).first - h.begin());
    if (common > best.n || (common == best.n && common > 0 && s == prefer)) best = Match{s, common};
  }
  return best;
}

}  // namespace gpt2
