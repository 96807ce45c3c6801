// libFuzzer target: the weight-file parser. Parses the input as an in-memory safetensors
// image; when it parses, checks the views against the image, widens every tensor to fp32
// (which reads every byte the header claims, so an out-of-bounds claim trips ASan) and binds
// the tensors to a small fixed GPT-2 shape, small enough that the fuzzer can build valid files.
// Only gpt2::Error is an expected failure; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/model.h"
#include "model/safetensors.h"

namespace {

// vocab 16, 8 positions, 8 channels, 1 layer, 2 heads, MLP width 32 (tests/fuzz/make_corpus.py
// writes seeds of exactly this shape).
gpt2::GPT2Config small_config() {
  gpt2::GPT2Config c;
  c.vocab_size = 16;
  c.n_positions = 8;
  c.n_embd = 8;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_inner = 32;
  c.eos_token_id = 15;
  return c;
}

[[noreturn]] void violated(const char* what) {
  std::fprintf(stderr, "fuzz_safetensors: property violated: %s\n", what);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    gpt2::SafetensorsFile f = gpt2::SafetensorsFile::parse(data, size, "fuzz-input");

    // The views must lie inside the data buffer and agree with their dtype and shape.
    size_t total = 0;
    for (const gpt2::TensorView& t : f.tensors()) {
      // No dimension may be negative: [0, 2^63] once parsed with the huge dimension stored
      // as a negative int64 (corpus regress-shape-dim-above-int64-max).
      int64_t numel = 1;
      for (int64_t d : t.shape) {
        if (d < 0) violated("negative dimension in a parsed shape");
        if (d != 0 && numel > INT64_MAX / d) numel = -1;  // overflow: the parser must have refused
        else if (numel >= 0) numel *= d;
      }
      if (t.numel != numel) violated("numel differs from the product of the shape");
      if (t.nbytes != size_t(t.numel) * gpt2::dtype_size(t.dtype)) violated("nbytes != numel * dtype size");
      if (t.nbytes > 0 && (t.data < data + 8 || t.data + t.nbytes > data + size))
        violated("tensor data outside the image");
      if (f.find(t.name) != &t) violated("find() does not return the tensor's own view");
      total += t.nbytes;

      std::vector<float> out(size_t(t.numel) + 1);
      t.to_float(out.data());
    }
    if (total != f.data_bytes()) violated("tensor bytes do not add up to the data buffer");

    gpt2::Model m;
    m.config = small_config();
    m.file = std::move(f);
    gpt2::bind_tensors(m);
    if (m.layers.size() != 1 || !m.wte || !m.wpe || !m.ln_f_w || !m.ln_f_b)
      violated("bind_tensors succeeded without binding every tensor");
    if (m.file.tensors().size() != 4 + 12) violated("bind_tensors accepted extra tensors");
    if (m.wte->numel != 16 * 8) violated("wte has the wrong size");
  } catch (const gpt2::Error&) {
  }
  return 0;
}
