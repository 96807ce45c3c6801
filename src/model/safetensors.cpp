#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"
#include "base/file_io.h"
#include "base/half.h"

namespace gpt2 {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error(source + ": " + what);
}

bool parse_dtype(const std::string& s, DType* out) {
  if (s == "F32") { *out = DType::F32; return true; }
  if (s == "F16") { *out = DType::F16; return true; }
  if (s == "BF16") { *out = DType::BF16; return true; }
  if (s == "I32") { *out = DType::I32; return true; }
  if (s == "U8") { *out = DType::U8; return true; }
  return false;
}

// Reads a JSON value that must be a non-negative integer fitting in 64 bits.
bool as_u64(const json& v, uint64_t* out) {
  if (v.is_number_unsigned()) { *out = v.get<uint64_t>(); return true; }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) { *out = uint64_t(v.get<int64_t>()); return true; }
  return false;
}

// a * b without wrapping: false when the product exceeds 2^63 - 1 (checked by division).
bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  constexpr uint64_t kMax = uint64_t(INT64_MAX);
  if (a != 0 && b > kMax / a) return false;
  *out = a * b;
  return true;
}

// The header as JSON, refusing duplicate tensor names (plain parsing would keep the last).
json parse_header(const char* begin, const char* end, const std::string& source) {
  std::string duplicate;
  std::set<std::string> seen;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::key && depth == 1 && duplicate.empty()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!seen.insert(k).second) duplicate = k;
    }
    return true;
  };
  json j = json::parse(begin, end, cb, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(source, "the header is not valid JSON (truncated or corrupted file?)");
  if (!j.is_object()) fail(source, "the header must be a JSON object");
  if (!duplicate.empty()) fail(source, "tensor \"" + duplicate + "\" is listed twice in the header");
  return j;
}

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() { if (addr && size) munmap(addr, size); }
};

}  // namespace

size_t dtype_size(DType d) { return d == DType::U8 ? 1 : d == DType::F16 || d == DType::BF16 ? 2 : 4; }
bool is_float(DType d) { return d != DType::I32 && d != DType::U8; }

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  return "?";
}

int64_t first_non_finite(const uint8_t* data, int64_t n, DType d) {
  int64_t bad = INT64_MAX;
#pragma omp parallel for reduction(min : bad) schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    bool non_finite;  // all exponent bits set
    if (d == DType::F32) {
      uint32_t u;
      std::memcpy(&u, data + 4 * i, 4);
      non_finite = (u & 0x7f800000u) == 0x7f800000u;
    } else {
      uint16_t u;
      std::memcpy(&u, data + 2 * i, 2);
      non_finite = d == DType::F16 ? (u & 0x7c00u) == 0x7c00u : (u & 0x7f80u) == 0x7f80u;
    }
    if (non_finite && i < bad) bad = i;
  }
  return bad == INT64_MAX ? -1 : bad;
}

float TensorView::at(int64_t i) const {
  uint32_t u = 0;
  std::memcpy(&u, data + int64_t(dtype_size(dtype)) * i, dtype_size(dtype));
  switch (dtype) {
    case DType::F32: return bits_to_float(u);
    case DType::F16: return fp16_to_float(uint16_t(u));
    case DType::BF16: return bf16_to_float(uint16_t(u));
    case DType::I32: return float(int32_t(u));
    case DType::U8: return float(uint8_t(u));
  }
  return 0.0f;
}

void TensorView::to_float(float* out) const {
  switch (dtype) {
    case DType::F32:
      std::memcpy(out, data, size_t(numel) * 4);
      return;
    case DType::F16:
      for (int64_t i = 0; i < numel; ++i) {
        uint16_t h; std::memcpy(&h, data + 2 * i, 2);
        out[i] = fp16_to_float(h);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < numel; ++i) {
        uint16_t h; std::memcpy(&h, data + 2 * i, 2);
        out[i] = bf16_to_float(h);
      }
      return;
    case DType::I32:
      for (int64_t i = 0; i < numel; ++i) {
        int32_t v; std::memcpy(&v, data + 4 * i, 4);
        out[i] = float(v);
      }
      return;
    case DType::U8:
      for (int64_t i = 0; i < numel; ++i) out[i] = float(data[i]);
      return;
  }
}

std::string TensorView::shape_str() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

namespace {

// Where a tensor's bytes lie in the data buffer; `index` into the file's tensors.
struct Range {
  uint64_t begin, end;
  size_t index;
};

// One header entry: its dtype, shape (element and byte counts checked for overflow) and
// data_offsets (in bounds, matching the byte count). Fills `range` (begin, end).
TensorView parse_entry(const std::string& name, const json& e, const uint8_t* buffer, uint64_t buffer_size,
                       const std::string& source, Range* range) {
  const std::string where = "tensor \"" + name + "\": ";
  if (!e.is_object()) fail(source, where + "entry is not an object");
  if (!e.contains("dtype") || !e["dtype"].is_string()) fail(source, where + "missing \"dtype\"");
  TensorView t;
  t.name = name;
  if (!parse_dtype(e["dtype"].get<std::string>(), &t.dtype))
    fail(source, where + "dtype " + e["dtype"].dump() + " is not supported (F32, F16, BF16, I32 or U8)");
  if (!e.contains("shape") || !e["shape"].is_array()) fail(source, where + "missing \"shape\" array");
  uint64_t numel = 1;
  for (const json& d : e["shape"]) {
    uint64_t dim;
    if (!as_u64(d, &dim)) fail(source, where + "shape entry " + d.dump() + " is not a non-negative integer");
    // Checked on its own: next to a zero dimension the product below stays 0, and a
    // dimension above 2^63 - 1 would become negative in the int64 shape.
    if (dim > uint64_t(INT64_MAX)) fail(source, where + "shape entry " + d.dump() + " exceeds 2^63 - 1");
    if (!mul_ok(numel, dim, &numel)) fail(source, where + "the shape's element count overflows 64 bits");
    t.shape.push_back(int64_t(dim));
  }
  uint64_t nbytes;
  if (!mul_ok(numel, dtype_size(t.dtype), &nbytes)) fail(source, where + "the byte size overflows 64 bits");
  const json& off = e.contains("data_offsets") ? e["data_offsets"] : json();
  uint64_t b, en;
  if (!off.is_array() || off.size() != 2 || !as_u64(off[0], &b) || !as_u64(off[1], &en))
    fail(source, where + "\"data_offsets\" must be two non-negative integers");
  if (b > en) fail(source, where + "data_offsets begin > end");
  if (en > buffer_size)
    fail(source, where + "data ends at byte " + std::to_string(en) + " of a " + std::to_string(buffer_size) +
                     "-byte buffer (truncated file?)");
  if (en - b != nbytes)
    fail(source, where + "holds " + std::to_string(en - b) + " bytes but " + dtype_name(t.dtype) + " " +
                     t.shape_str() + " needs " + std::to_string(nbytes));
  t.numel = int64_t(numel);
  t.nbytes = size_t(nbytes);
  t.data = buffer + b;
  range->begin = b;
  range->end = en;
  return t;
}

// The tensors must tile the buffer exactly: sorted by offset, each starts where the previous
// ended, the first at 0 and the last at the end (no overlap, no hole, no tail).
void check_tiling(std::vector<Range> ranges, const std::vector<TensorView>& tensors, uint64_t buffer_size,
                  const std::string& source) {
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  for (const Range& r : ranges) {
    const std::string& name = tensors[r.index].name;
    if (r.begin < expected) fail(source, "tensor \"" + name + "\" overlaps the tensor before it");
    if (r.begin > expected)
      fail(source, "tensor \"" + name + "\" starts at byte " + std::to_string(r.begin) +
                       ", leaving a hole after byte " + std::to_string(expected));
    expected = r.end;
  }
  if (expected != buffer_size)
    fail(source, "the tensors cover " + std::to_string(expected) + " of the " + std::to_string(buffer_size) +
                     " data bytes (trailing garbage or a missing tensor)");
}

}  // namespace

SafetensorsFile SafetensorsFile::parse(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size < 8) fail(source, "file is " + std::to_string(size) + " bytes, too short for a safetensors header");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian u64
  if (n == 0) fail(source, "header length is zero");
  if (n > kMaxHeaderBytes)
    fail(source, "header length " + std::to_string(n) + " exceeds the 100 MB limit (corrupted file?)");
  if (n > size - 8)
    fail(source, "header length " + std::to_string(n) + " runs past the end of the " +
                     std::to_string(size) + "-byte file (truncated?)");
  const char* hdr = reinterpret_cast<const char*>(bytes + 8);
  if (hdr[0] != '{') fail(source, "the header must start with '{'");
  json j = parse_header(hdr, hdr + n, source);

  SafetensorsFile f;
  f.source_ = source;
  const uint8_t* buffer = bytes + 8 + n;
  const uint64_t buffer_size = size - 8 - n;

  std::vector<Range> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "__metadata__") {
      const json& e = it.value();
      if (!e.is_object()) fail(source, "__metadata__ must be an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) fail(source, "__metadata__ value \"" + m.key() + "\" is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    Range r{0, 0, f.tensors_.size()};
    f.tensors_.push_back(parse_entry(it.key(), it.value(), buffer, buffer_size, source, &r));
    ranges.push_back(r);
  }
  check_tiling(ranges, f.tensors_, buffer_size, source);

  for (size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
  f.data_bytes_ = size_t(buffer_size);
  return f;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  std::string why;
  const int fd = open_regular_file(path, &why);
  if (fd < 0) throw Error(path + ": cannot open the weight file: " + why);
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    throw Error(path + ": cannot open the weight file: " + std::strerror(errno));
  }
  auto m = std::make_shared<Mapping>();
  m->size = size_t(st.st_size);
  if (m->size > 0) {
    m->addr = mmap(nullptr, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m->addr == MAP_FAILED) {
      m->addr = nullptr;
      ::close(fd);
      throw Error(path + ": cannot map the file: " + std::strerror(errno));
    }
  }
  ::close(fd);
  static const uint8_t kEmpty = 0;
  const uint8_t* bytes = m->addr ? static_cast<const uint8_t*>(m->addr) : &kEmpty;
  SafetensorsFile f = parse(bytes, m->size, path);
  f.mapping_ = m;
  return f;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace gpt2
