// The K/V ring and the context window: the one place that says where a position's keys and
// values live and what happens when the context is full. Both backends and every attention
// kernel include this header (it compiles as host and device code).
//
// Per layer, K and V are each a preallocated ring of `capacity` slots of n_embd values
// (NH heads x HS), allocated once. Position p of the current context (0 = its first token)
// lives in slot (start + p) mod capacity. A context shift moves `start` instead of memory.
#pragma once

#include "base/host_device.h"

namespace gpt2 {

struct KvRing {
  int capacity = 0;  // slots per layer; the context window is at most this long
  int start = 0;     // slot of context position 0

  // Slot of context position `pos` (0 <= pos < capacity).
  GPT2_HOST_DEVICE int slot(int pos) const {
    const int s = start + pos;
    return s >= capacity ? s - capacity : s;
  }
  // The ring after dropping the first `n` positions: the survivors keep their slots.
  GPT2_HOST_DEVICE KvRing dropped_front(int n) const { return KvRing{capacity, slot(n % capacity)}; }
};

// The context window: the most tokens the model attends over, min(K/V ring capacity,
// n_positions). A capacity of 0 means n_positions (--ctx-size 0).
GPT2_HOST_DEVICE inline int context_window(int capacity, int n_positions) {
  return capacity > 0 && capacity < n_positions ? capacity : n_positions;
}

// What the generator does when the context is full.
struct ContextPolicy {
  int window = 0;          // most tokens the model attends over: context_window()
  bool shift = false;      // --context-shift: keep the most recent window/2 tokens and go on

  int keep() const { return window / 2 > 0 ? window / 2 : 1; }

  // The context is tokens[begin, n_tokens). Returns the context's new begin after a token was
  // appended: unchanged while it fits; with shift, the most recent keep() tokens once it
  // overflows; -1 when it overflows and shifting is off (generation stops: "context").
  int next_begin(int n_tokens, int begin) const {
    if (n_tokens - begin <= window) return begin;
    if (!shift) return -1;
    return n_tokens - keep();
  }
};

}  // namespace gpt2
