// The logits processors: what is done to the logits before sampler.h's rule picks a token.
// One definition, implemented here for the CPU and mirrored by the CUDA kernels of
// kernels/penalties.cu, which are tested against process_logits().
//
// The context is the tokens the model currently sees: the prompt and the generated tokens in
// the context window, oldest first (after a --context-shift, only the kept tokens). With the
// cache and with --no-cache it is the same list, so both modes process the logits alike.
//   1. Repetition penalty (transformers' repetition_penalty): for every id present in the
//      penalty window, a positive logit is divided by repeat_penalty, a negative one multiplied.
//   2. Presence and frequency penalties (OpenAI's and llama.cpp's): logit -= presence *
//      [count > 0] + frequency * count, count = the id's occurrences in the penalty window.
//      The penalty window is the last repeat_last_n tokens of the context (0 = all of it, as
//      transformers does; llama.cpp's default is 64).
//   3. No-repeat n-gram (transformers' no_repeat_ngram_size = n): an id that would complete
//      an n-gram already present in the context gets -inf. It looks at the whole context.
// Steps 1 and 2 are llama.cpp's penalties sampler; 1 then 3 is transformers' processor order
// (repetition_penalty before no_repeat_ngram_size). Then sampler.h: greedy argmax, or
// temperature, top-k, top-p, min-p and the draw.
#pragma once
#include <vector>

#include "base/host_device.h"

namespace gpt2 {

struct PenaltyParams {
  float repeat_penalty = 1.0f;     // > 0; 1 = off
  int repeat_last_n = 0;           // the penalty window: the last N context tokens; 0 = all
  float presence_penalty = 0.0f;   // 0 = off
  float frequency_penalty = 0.0f;  // 0 = off
  int no_repeat_ngram_size = 0;    // 0 = off

  // Steps 1-2 change something (they need the window's counts).
  GPT2_HOST_DEVICE bool penalizes() const {
    return repeat_penalty != 1.0f || presence_penalty != 0.0f || frequency_penalty != 0.0f;
  }
  // Any step changes something.
  GPT2_HOST_DEVICE bool active() const { return penalizes() || no_repeat_ngram_size > 0; }
};

// First context position of the penalty window of a context of n tokens.
GPT2_HOST_DEVICE inline int penalty_window_begin(int n, int repeat_last_n) {
  return repeat_last_n > 0 && repeat_last_n < n ? n - repeat_last_n : 0;
}

// Steps 1-2 for one logit z whose id occurs `count` times in the penalty window.
GPT2_HOST_DEVICE inline float penalize(float z, int count, const PenaltyParams& p) {
  if (count <= 0) return z;
  z = z > 0.0f ? z / p.repeat_penalty : z * p.repeat_penalty;
  return z - p.presence_penalty - p.frequency_penalty * float(count);
}

// The buffers process_logits() works in. A caller that processes every token keeps one, with
// room reserved for its longest context, so that nothing is allocated per token.
struct ProcessScratch {
  std::vector<int> window;  // the penalty window's ids, sorted
  std::vector<int> banned;  // step 3's ids
  void reserve(int context) {
    window.reserve(std::size_t(context));
    banned.reserve(std::size_t(context));
  }
};

// The reference: steps 1-3 applied in place to `logits` (vocab floats), for a context of n
// token ids (each in [0, vocab)).
void process_logits(float* logits, const int* context, int n, const PenaltyParams& params, ProcessScratch& scratch);
void process_logits(float* logits, const int* context, int n, const PenaltyParams& params);  // own scratch

// Step 3 alone: the ids that would complete an n-gram (n = size) already in the context, in
// `banned` (cleared first), or returned.
void banned_ngram_ids(const int* context, int n, int size, std::vector<int>& banned);
std::vector<int> banned_ngram_ids(const int* context, int n, int size);

}  // namespace gpt2
