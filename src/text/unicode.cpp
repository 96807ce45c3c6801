#include "text/unicode.h"

#include <array>
#include <unordered_map>
#include <vector>

namespace gpt2 {
namespace {

struct ClassRange {
  uint32_t first;
  uint32_t last;
  CharClass cls;
};

constexpr ClassRange kClassRanges[] = {
#include "text/unicode_tables.inc"
};

constexpr uint32_t kCodePoints = 0x110000;
constexpr uint32_t kBlockBits = 8;
constexpr uint32_t kBlockSize = 1u << kBlockBits;

// A two-stage lookup table: the class of cp is blocks[block_start[cp >> 8] + (cp & 0xFF)].
// Most of the 4,352 blocks of 256 code points are identical (all unassigned, all CJK
// letters, ...), so sharing them keeps the table small enough to stay in cache.
class ClassTable {
 public:
  ClassTable() {
    std::vector<CharClass> flat(kCodePoints, CharClass::kOther);
    for (const ClassRange& r : kClassRanges)
      for (uint32_t cp = r.first; cp <= r.last; ++cp) flat[cp] = r.cls;

    std::unordered_map<std::string, uint32_t> seen_blocks;
    for (uint32_t block = 0; block < kCodePoints / kBlockSize; ++block) {
      std::string key(reinterpret_cast<const char*>(&flat[block * kBlockSize]), kBlockSize);
      auto [it, inserted] = seen_blocks.emplace(key, uint32_t(blocks_.size()));
      if (inserted) blocks_.insert(blocks_.end(), &flat[block * kBlockSize], &flat[(block + 1) * kBlockSize]);
      block_start_[block] = it->second;
    }
  }
  CharClass operator()(uint32_t cp) const {
    if (cp >= kCodePoints) return CharClass::kOther;
    return blocks_[block_start_[cp >> kBlockBits] + (cp & (kBlockSize - 1))];
  }

 private:
  std::array<uint32_t, kCodePoints / kBlockSize> block_start_{};
  std::vector<CharClass> blocks_;
};

// The range a well-formed sequence's second byte must lie in, by lead byte (Unicode table
// 3-7); the third and fourth bytes are always 80..BF.
struct LeadRule {
  uint8_t continuation_bytes;  // 0 for a byte that cannot start a sequence
  uint8_t second_lo;
  uint8_t second_hi;
};

LeadRule lead_rule(unsigned char b) {
  if (b >= 0xC2 && b <= 0xDF) return {1, 0x80, 0xBF};
  if (b == 0xE0) return {2, 0xA0, 0xBF};  // no overlong 3-byte forms
  if (b == 0xED) return {2, 0x80, 0x9F};  // no surrogates
  if (b >= 0xE1 && b <= 0xEF) return {2, 0x80, 0xBF};
  if (b == 0xF0) return {3, 0x90, 0xBF};  // no overlong 4-byte forms
  if (b == 0xF4) return {3, 0x80, 0x8F};  // nothing above U+10FFFF
  if (b >= 0xF1 && b <= 0xF3) return {3, 0x80, 0xBF};
  return {0, 0, 0};  // 80..C1 (continuations, overlong 2-byte leads) and F5..FF
}

}  // namespace

CharClass char_class(uint32_t cp) {
  static const ClassTable table;
  return table(cp);
}

Utf8Read read_utf8(const unsigned char* p, const unsigned char* end) {
  const unsigned char lead = p[0];
  if (lead < 0x80) return {Utf8Read::kValid, 1, lead};
  const LeadRule rule = lead_rule(lead);
  if (rule.continuation_bytes == 0) return {Utf8Read::kInvalid, 1, 0};

  uint32_t cp = lead & (0x3F >> rule.continuation_bytes);
  for (int i = 1; i <= rule.continuation_bytes; ++i) {
    if (p + i == end) return {Utf8Read::kTruncated, uint8_t(i), 0};
    const unsigned char b = p[i];
    const unsigned char lo = i == 1 ? rule.second_lo : 0x80;
    const unsigned char hi = i == 1 ? rule.second_hi : 0xBF;
    if (b < lo || b > hi) return {Utf8Read::kInvalid, uint8_t(i), 0};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {Utf8Read::kValid, uint8_t(rule.continuation_bytes + 1), cp};
}

bool is_valid_utf8(std::string_view text) {
  auto p = reinterpret_cast<const unsigned char*>(text.data());
  const auto end = p + text.size();
  while (p < end) {
    const Utf8Read r = read_utf8(p, end);
    if (r.status != Utf8Read::kValid) return false;
    p += r.length;
  }
  return true;
}

size_t append_utf8_replacing_invalid(std::string_view bytes, bool hold_truncated_tail,
                                     std::string& out) {
  auto begin = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto end = begin + bytes.size();
  auto p = begin;
  while (p < end) {
    const Utf8Read r = read_utf8(p, end);
    if (r.status == Utf8Read::kTruncated && hold_truncated_tail) break;
    if (r.status == Utf8Read::kValid)
      out.append(reinterpret_cast<const char*>(p), r.length);
    else
      out.append(kReplacementCharacter);
    p += r.length;
  }
  return size_t(p - begin);
}

}  // namespace gpt2
