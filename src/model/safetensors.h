// The weight file: a safetensors file (8-byte little-endian header length, a JSON header,
// then one contiguous byte buffer), memory-mapped and validated the way the safetensors
// specification and its reference implementation do before any tensor is touched.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model/dtype.h"

namespace gpt2 {

// The dtypes gpt2-gen reads (dtype.h): the three float formats of weights, I32 (reference
// data) and U8 (bytes: the prompt cache's int8 K/V rows, engine/kv_format.h).
size_t dtype_size(DType d);
const char* dtype_name(DType d);  // "F32", "F16", "BF16", "I32", "U8" as safetensors spells them
bool is_float(DType d);

// Index of the first NaN or Inf among `n` stored elements of float dtype `d` (read with
// memcpy: `data` may be unaligned), or -1 when all are finite.
int64_t first_non_finite(const uint8_t* data, int64_t n, DType d);

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  int64_t numel = 0;
  const uint8_t* data = nullptr;  // inside the mapping; may be unaligned: read with memcpy
  size_t nbytes = 0;

  // Widens (or copies, or converts from I32) the tensor to fp32 in `out` (numel floats).
  void to_float(float* out) const;
  float at(int64_t i) const;      // element i as fp32
  std::string shape_str() const;  // "[50257, 768]"
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws gpt2::Error naming the file and the offending tensor.
  static SafetensorsFile open(const std::string& path);
  // Validates an in-memory image (used by open() and by the fuzzer); the bytes must outlive
  // the returned object. `source` names the data in error messages.
  static SafetensorsFile parse(const uint8_t* bytes, size_t size, const std::string& source);

  const TensorView* find(const std::string& name) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& source() const { return source_; }
  size_t data_bytes() const { return data_bytes_; }

  static constexpr uint64_t kMaxHeaderBytes = 100u * 1000u * 1000u;  // the reference's cap

 private:
  std::shared_ptr<void> mapping_;  // keeps the mmap alive (empty for parse())
  std::string source_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  size_t data_bytes_ = 0;
};

}  // namespace gpt2
