// GPT-2's byte-level BPE. Encoding: split the text with GPT-2's pattern (unicode_pretokenize),
// look each piece up as a whole token, and otherwise merge its bytes pairwise, always the
// adjacent pair whose concatenation has the lowest merge rank, leftmost first: tiktoken's
// rule, which is what OpenAI's encoder does. Decoding is a table lookup per id.
#include "text/tokenizer.h"

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file_io.h"
#include "text/unicode.h"
#include "text/unicode_pretokenize.h"

namespace gpt2 {
namespace {

// ---------------------------------------------------------------------------------------
// GPT-2's byte <-> character map. vocab.json and merges.txt spell every byte as a printable
// character: bytes that are printable Latin-1 stand for themselves, the other 68 (controls,
// space, soft hyphen, ...) are moved to U+0100..U+0143 in byte order, so ' ' is 'Ġ'.

struct ByteLevelMap {
  std::array<uint32_t, 256> byte_to_char{};
  std::array<int, 324> char_to_byte{};  // -1 where no byte maps to the character

  ByteLevelMap() {
    char_to_byte.fill(-1);
    uint32_t next_moved = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      byte_to_char[b] = printable ? uint32_t(b) : next_moved++;
      char_to_byte[byte_to_char[b]] = b;
    }
  }
};

const ByteLevelMap& byte_level_map() {
  static const ByteLevelMap map;
  return map;
}

// Decodes a vocab.json key or merges.txt symbol (UTF-8 of byte-level characters) to the bytes
// it stands for; false if it holds a character that stands for no byte.
bool byte_level_decode(std::string_view spelled, std::string& bytes) {
  bytes.clear();
  auto p = reinterpret_cast<const unsigned char*>(spelled.data());
  const auto end = p + spelled.size();
  while (p < end) {
    const Utf8Read r = read_utf8(p, end);
    if (r.status != Utf8Read::kValid || r.cp >= byte_level_map().char_to_byte.size()) return false;
    const int b = byte_level_map().char_to_byte[r.cp];
    if (b < 0) return false;
    bytes.push_back(char(b));
    p += r.length;
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Error messages: one line naming the file, the problem and what to do.

constexpr const char* kFixTokenizerFiles =
    "; use the vocab.json and merges.txt of the GPT-2 checkpoint (tools/convert_weights.py "
    "copies them into the model directory)";

// A token or symbol for an error message: printable text as is, other bytes as \xNN, cut
// at 40 characters so that a huge line cannot flood the terminal.
std::string for_message(std::string_view text) {
  constexpr int kMaxChars = 40;
  std::string out = "\"";
  auto p = reinterpret_cast<const unsigned char*>(text.data());
  const auto end = p + text.size();
  for (int chars = 0; p < end; ++chars) {
    if (chars == kMaxChars) {
      out += "...";
      break;
    }
    const Utf8Read r = read_utf8(p, end);
    if (r.status == Utf8Read::kValid && r.cp >= 0x20 && r.cp != 0x7F && r.cp != '"' && r.cp != '\\') {
      out.append(reinterpret_cast<const char*>(p), r.length);
      p += r.length;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02X", *p);
      out += hex;
      ++p;
    }
  }
  return out + "\"";
}

[[noreturn]] void fail(const std::string& file, const std::string& problem) {
  throw Error(file + ": " + problem + kFixTokenizerFiles);
}

// ---------------------------------------------------------------------------------------
// Hash tables. Encoding is dominated by two lookups, "is this piece a token?" and "what do
// these two adjacent tokens merge into?", so both are flat open-addressing tables.

inline uint64_t mix(uint64_t h) {
  h ^= h >> 32;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return h;
}

inline uint64_t hash_bytes(std::string_view s) {
  uint64_t h = 0x9E3779B97F4A7C15ull * (s.size() + 1);
  const char* p = s.data();
  size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    h = mix(h ^ word);
  }
  uint64_t tail = 0;
  for (size_t i = 0; i < n; ++i) tail |= uint64_t(uint8_t(p[i])) << (8 * i);
  return mix(h ^ tail ^ 0x5851F42D4C957F2Dull);
}

size_t table_capacity(size_t entries) {
  size_t capacity = 16;
  while (capacity < entries * 2) capacity *= 2;  // at most half full: short probe chains
  return capacity;
}

// Token bytes -> id, for every vocabulary entry. Slots keep the hash's high half as a tag
// so that a probe compares bytes only when the tag matches.
class TokenIndex {
 public:
  // Keeps a pointer to token_bytes, which must stay where it is (it lives in the Impl).
  void build(const std::vector<std::string>& token_bytes) {
    tokens_ = &token_bytes;
    slots_.assign(table_capacity(token_bytes.size()), Slot{0, -1});
    mask_ = slots_.size() - 1;
  }
  // Adds `id` (whose bytes are tokens_[id]); returns the id already holding those bytes, or -1.
  int insert(int id) {
    const std::string_view bytes = (*tokens_)[size_t(id)];
    const uint64_t h = hash_bytes(bytes);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s = Slot{uint32_t(h >> 32), id};
        return -1;
      }
      if (s.tag == uint32_t(h >> 32) && (*tokens_)[size_t(s.id)] == bytes) return s.id;
    }
  }
  int find(std::string_view bytes) const { return find(bytes, hash_bytes(bytes)); }
  int find(std::string_view bytes, uint64_t h) const {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.tag == uint32_t(h >> 32) && (*tokens_)[size_t(s.id)] == bytes) return s.id;
    }
  }

 private:
  struct Slot {
    uint32_t tag;
    int32_t id;
  };
  const std::vector<std::string>* tokens_ = nullptr;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

constexpr int kNoMerge = INT_MAX;

// (left id, right id) -> the token their concatenation is, and that token's merge rank.
class PairTable {
 public:
  struct Merge {
    int rank = kNoMerge;
    int token = -1;
  };
  void reserve(size_t entries) {
    slots_.assign(table_capacity(entries), Slot{kEmpty, {}});
    mask_ = slots_.size() - 1;
  }
  void insert(int left, int right, Merge merge) {
    const uint64_t key = pair_key(left, right);
    size_t i = mix(key) & mask_;
    while (slots_[i].key != kEmpty && slots_[i].key != key) i = (i + 1) & mask_;
    slots_[i] = Slot{key, merge};
  }
  Merge find(int left, int right) const {
    const uint64_t key = pair_key(left, right);
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return slots_[i].merge;
      if (slots_[i].key == kEmpty) return Merge{};
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  static uint64_t pair_key(int left, int right) { return (uint64_t(uint32_t(left)) << 32) | uint32_t(right); }
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// Remembers the BPE result of each piece within one encode() call: text repeats its words,
// and BPE is the costly step for pieces that are not whole tokens (CJK runs, identifiers).
// Direct-mapped (a colliding piece replaces the older one) and keyed by views into the text
// being encoded, so it lives only as long as that call and needs no locking. A hit or miss
// never changes the ids, only how fast they come.
//
// The table is allocated when the first piece needs BPE, with one slot per 8 bytes of text
// (a power of two, 16 to 4096): what it zeroes is proportional to the input, and a text of
// 32 KB or more gets the full 4096 slots. A fixed 4096-slot table (160 KB, above glibc's
// mmap threshold) cost every short prompt with one non-token piece an mmap, page faults and
// a 160 KB memset, ten times the rest of encoding it.
class PieceCache {
 public:
  explicit PieceCache(size_t text_bytes) {
    while (slot_count_ < kMaxSlots && slot_count_ * 8 < text_bytes) slot_count_ *= 2;
  }
  // Appends the cached ids of `piece` to `out`; false if it is not cached.
  bool append_cached(std::string_view piece, uint64_t hash, std::vector<int>& out) const {
    if (slots_.empty()) return false;
    const Slot& s = slots_[slot_of(hash)];
    if (s.hash != hash || s.piece != piece) return false;
    out.insert(out.end(), ids_.begin() + s.ids_begin, ids_.begin() + s.ids_begin + s.ids_count);
    return true;
  }
  void store(std::string_view piece, uint64_t hash, const int* ids, size_t count) {
    if (slots_.empty()) slots_.resize(slot_count_);
    slots_[slot_of(hash)] = Slot{hash, piece, ids_.size(), count};
    ids_.insert(ids_.end(), ids, ids + count);
  }

 private:
  static constexpr size_t kMinSlots = 16, kMaxSlots = 4096;
  size_t slot_of(uint64_t hash) const { return size_t(hash >> 20) & (slot_count_ - 1); }
  struct Slot {
    uint64_t hash = 0;
    std::string_view piece;
    size_t ids_begin = 0, ids_count = 0;
  };
  size_t slot_count_ = kMinSlots;  // a power of two
  std::vector<Slot> slots_;
  std::vector<int> ids_;  // every stored result, back to back
};

// ---------------------------------------------------------------------------------------
// vocab.json: one JSON object {"token": id, ...}. Read with nlohmann's SAX interface, which
// sees duplicate keys and wrong value types that a parsed DOM would hide or convert.

struct VocabEntry {
  std::string key;  // as spelled in the file (byte-level characters)
  int64_t id;
};

class VocabSax {
 public:
  using json = nlohmann::json;
  std::vector<VocabEntry> entries;
  std::string problem;  // the first one found; parsing stops there

  bool null() { return wrong_value("null"); }
  bool boolean(bool) { return wrong_value("a boolean"); }
  bool number_integer(json::number_integer_t v) { return add(v); }
  bool number_unsigned(json::number_unsigned_t v) {
    return v > uint64_t(INT64_MAX) ? wrong_value("the number " + std::to_string(v)) : add(int64_t(v));
  }
  bool number_float(json::number_float_t, const std::string& text) { return wrong_value("the number " + text); }
  bool string(std::string&) { return wrong_value("a string"); }
  bool binary(json::binary_t&) { return wrong_value("binary data"); }
  bool start_object(std::size_t) {
    if (depth_++ == 0) return true;
    return wrong_value("an object");
  }
  bool end_object() {
    --depth_;
    return true;
  }
  bool start_array(std::size_t) { return wrong_value("an array"); }
  bool end_array() { return true; }
  bool key(std::string& k) {
    key_ = std::move(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) {
    std::string what = e.what();  // "[json.exception.parse_error.101] parse error at ..."
    if (const size_t cut = what.find("] "); cut != std::string::npos) what.erase(0, cut + 2);
    return stop("not valid JSON (" + what + ")");
  }

 private:
  bool add(int64_t id) {
    if (depth_ != 1) return wrong_value("the number " + std::to_string(id));
    entries.push_back({std::move(key_), id});
    return true;
  }
  bool wrong_value(const std::string& what) {
    if (depth_ == 0) return stop("must be a JSON object mapping each token to its id, but holds " + what);
    return stop("the value of " + for_message(key_) + " is " + what + ", not an integer token id");
  }
  bool stop(std::string why) {
    if (problem.empty()) problem = std::move(why);
    return false;
  }
  int depth_ = 0;
  std::string key_;
};

std::vector<VocabEntry> parse_vocab_json(std::string_view text, const std::string& file) {
  VocabSax sax;
  const bool ok = nlohmann::json::sax_parse(text.begin(), text.end(), &sax);
  if (!ok || !sax.problem.empty()) fail(file, sax.problem.empty() ? "not valid JSON" : sax.problem);
  if (sax.entries.empty()) fail(file, "has no tokens");
  return std::move(sax.entries);
}

// ---------------------------------------------------------------------------------------
// merges.txt: an optional "#version" line, then one merge per line, "left right", best
// first. Line N's merge has rank N-1 (counting merge lines only).

struct MergeLine {
  std::string_view left;
  std::string_view right;
  int line_number;
};

std::vector<MergeLine> parse_merges_txt(std::string_view text, const std::string& file) {
  constexpr size_t kMaxLine = 4096;  // GPT-2's longest is 26 bytes; a longer one is not a merge
  std::vector<MergeLine> merges;
  int line_number = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // tolerate CRLF files
    if (line_number == 1 && line.substr(0, 8) == "#version") continue;
    const std::string where = "line " + std::to_string(line_number) + " ";
    if (line.size() > kMaxLine)
      fail(file, where + "is " + std::to_string(line.size()) + " bytes long, not a merge of two symbols");
    const size_t space = line.find(' ');
    if (line.empty() || space == std::string_view::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string_view::npos)
      fail(file, where + for_message(line) + " is not two symbols separated by one space");
    merges.push_back({line.substr(0, space), line.substr(space + 1), line_number});
  }
  return merges;
}

std::string read_whole_file(const std::string& path) {
  std::string text, why;
  if (!read_regular_file(path, &text, &why))
    throw Error("cannot read " + path + ": " + why + "; the model directory needs GPT-2's vocab.json and merges.txt");
  return text;
}

constexpr int kNotMergeable = -2;  // a vocab entry that BPE never produces (e.g. <|endoftext|>)
constexpr int kByteToken = -1;     // one of the 256 single-byte tokens
constexpr size_t kSmallPiece = 32;

}  // namespace

// ---------------------------------------------------------------------------------------

struct Tokenizer::Impl {
  std::vector<std::string> token_bytes;  // id -> the bytes it stands for
  std::vector<int> merge_rank;           // id -> rank, kByteToken or kNotMergeable
  TokenIndex index;                      // bytes -> id, every entry
  PairTable merges;                      // (left, right) -> merged token
  std::array<int, 256> byte_token{};     // byte -> its single-byte token
  int end_of_text = -1;                  // id of "<|endoftext|>", -1 if the vocab has none

  void build(std::string_view vocab_json, const std::string& vocab_file, std::string_view merges_txt,
             const std::string& merges_file, int expected_vocab) {
    load_vocab(vocab_json, vocab_file, expected_vocab);
    load_merges(merges_txt, merges_file);
    build_pair_table();
  }
  void load_vocab(std::string_view vocab_json, const std::string& file, int expected_vocab);
  void load_merges(std::string_view merges_txt, const std::string& file);
  void build_pair_table();

  void encode_ordinary(std::string_view text, std::vector<int>& out) const;
  void encode_piece(std::string_view piece, PieceCache& cache, std::vector<int>& out) const;
  void bpe_small(std::string_view piece, std::vector<int>& out) const;
  void bpe_large(std::string_view piece, std::vector<int>& out) const;
  PairTable::Merge merge_of(int left, int right) const { return merges.find(left, right); }
};

void Tokenizer::Impl::load_vocab(std::string_view vocab_json, const std::string& file, int expected_vocab) {
  std::vector<VocabEntry> entries = parse_vocab_json(vocab_json, file);
  const int64_t n = int64_t(entries.size());
  if (expected_vocab > 0 && n != expected_vocab)
    fail(file, "has " + std::to_string(n) + " tokens but the model's config.json says vocab_size " +
                   std::to_string(expected_vocab));

  token_bytes.assign(size_t(n), std::string());
  std::vector<bool> id_used(size_t(n), false);
  std::vector<const std::string*> key_of(size_t(n), nullptr);
  for (const VocabEntry& e : entries) {
    if (e.id < 0 || e.id >= n)
      fail(file, "the id " + std::to_string(e.id) + " of " + for_message(e.key) + " is outside 0.." +
                     std::to_string(n - 1) + " (ids must number the " + std::to_string(n) + " tokens from 0)");
    if (id_used[size_t(e.id)])
      fail(file, "the id " + std::to_string(e.id) + " is given to both " + for_message(*key_of[size_t(e.id)]) +
                     " and " + for_message(e.key));
    if (e.key.empty()) fail(file, "has an empty token (id " + std::to_string(e.id) + ")");
    if (!byte_level_decode(e.key, token_bytes[size_t(e.id)]))
      fail(file, "the token " + for_message(e.key) + " has a character that stands for no byte in GPT-2's "
                     "byte-level alphabet");
    id_used[size_t(e.id)] = true;
    key_of[size_t(e.id)] = &e.key;
  }

  index.build(token_bytes);
  for (int id = 0; id < int(n); ++id) {
    if (const int earlier = index.insert(id); earlier >= 0)
      fail(file, "the token " + for_message(*key_of[size_t(id)]) + " appears twice (ids " +
                     std::to_string(earlier) + " and " + std::to_string(id) + ")");
  }

  merge_rank.assign(size_t(n), kNotMergeable);
  for (int b = 0; b < 256; ++b) {
    const int id = index.find(std::string(1, char(b)));
    if (id < 0) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", b);
      fail(file, std::string("has no token for the byte ") + hex + ", which byte-level BPE needs");
    }
    byte_token[size_t(b)] = id;
    merge_rank[size_t(id)] = kByteToken;
  }
  end_of_text = index.find(kEndOfTextText);
}

void Tokenizer::Impl::load_merges(std::string_view merges_txt, const std::string& file) {
  const std::vector<MergeLine> lines = parse_merges_txt(merges_txt, file);
  std::unordered_map<uint64_t, int> line_of_pair;  // to report a merge listed twice
  std::string left, right;
  int rank = 0;
  for (const MergeLine& m : lines) {
    const std::string where = "line " + std::to_string(m.line_number) + " ";
    int ids[2];
    for (int side = 0; side < 2; ++side) {
      const std::string_view symbol = side == 0 ? m.left : m.right;
      std::string& bytes = side == 0 ? left : right;
      ids[side] = byte_level_decode(symbol, bytes) ? index.find(bytes) : -1;
      if (ids[side] < 0) fail(file, where + "names " + for_message(symbol) + ", which is not in vocab.json");
    }
    const int merged = index.find(left + right);
    if (merged < 0)
      fail(file, where + "merges into " + for_message(std::string(m.left) + std::string(m.right)) +
                     ", which is not in vocab.json");
    const uint64_t pair = (uint64_t(uint32_t(ids[0])) << 32) | uint32_t(ids[1]);
    if (auto [it, inserted] = line_of_pair.emplace(pair, m.line_number); !inserted)
      fail(file, where + "repeats the merge of line " + std::to_string(it->second));
    // Two merges may build the same token from different halves; the first one ranks it.
    if (merge_rank[size_t(merged)] == kNotMergeable) merge_rank[size_t(merged)] = rank;
    ++rank;
  }
}

// Every way to split a mergeable token into two mergeable tokens becomes a pair entry, not
// only the split its merge line names: tiktoken merges any adjacent pair whose concatenation
// is a ranked token, and the goldens follow it.
void Tokenizer::Impl::build_pair_table() {
  std::vector<std::tuple<int, int, int>> pairs;  // left, right, merged
  for (int id = 0; id < int(token_bytes.size()); ++id) {
    if (merge_rank[size_t(id)] < 0) continue;
    const std::string_view bytes = token_bytes[size_t(id)];
    for (size_t cut = 1; cut < bytes.size(); ++cut) {
      const int left = index.find(bytes.substr(0, cut));
      const int right = index.find(bytes.substr(cut));
      if (left >= 0 && right >= 0 && merge_rank[size_t(left)] != kNotMergeable &&
          merge_rank[size_t(right)] != kNotMergeable)
        pairs.emplace_back(left, right, id);
    }
  }
  merges.reserve(pairs.size());
  for (const auto& [left, right, id] : pairs) merges.insert(left, right, {merge_rank[size_t(id)], id});
}

void Tokenizer::Impl::encode_ordinary(std::string_view text, std::vector<int>& out) const {
  PieceCache cache(text.size());
  for_each_gpt2_piece(text, [&](std::string_view piece) { encode_piece(piece, cache, out); });
}

void Tokenizer::Impl::encode_piece(std::string_view piece, PieceCache& cache, std::vector<int>& out) const {
  const uint64_t hash = hash_bytes(piece);
  // Most pieces are whole tokens; tiktoken takes the same shortcut, so it changes nothing.
  const int whole = index.find(piece, hash);
  if (whole >= 0 && merge_rank[size_t(whole)] != kNotMergeable) {
    out.push_back(whole);
    return;
  }
  if (cache.append_cached(piece, hash, out)) return;
  const size_t first = out.size();
  if (piece.size() <= kSmallPiece)
    bpe_small(piece, out);
  else
    bpe_large(piece, out);
  cache.store(piece, hash, out.data() + first, out.size() - first);
}

// BPE for short pieces: parts in an array, each step scans for the best pair (quadratic, but
// n <= 64 and a scan of a few ints beats any heap).
void Tokenizer::Impl::bpe_small(std::string_view piece, std::vector<int>& out) const {
  int ids[kSmallPiece];
  PairTable::Merge next_merge[kSmallPiece];  // next_merge[i]: merging parts i and i+1
  size_t n = piece.size();
  for (size_t i = 0; i < n; ++i) ids[i] = byte_token[uint8_t(piece[i])];
  for (size_t i = 0; i + 1 < n; ++i) next_merge[i] = merge_of(ids[i], ids[i + 1]);

  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i)
      if (next_merge[i].rank < next_merge[best].rank) best = i;
    if (next_merge[best].rank == kNoMerge) break;

    ids[best] = next_merge[best].token;
    for (size_t i = best + 1; i + 1 < n; ++i) {
      ids[i] = ids[i + 1];
      next_merge[i] = next_merge[i + 1];
    }
    --n;
    if (best > 0) next_merge[best - 1] = merge_of(ids[best - 1], ids[best]);
    if (best + 1 < n) next_merge[best] = merge_of(ids[best], ids[best + 1]);
  }
  out.insert(out.end(), ids, ids + n);
}

// BPE for long pieces in O(n log n): parts form a linked list over byte offsets, candidate
// merges wait in a min-heap ordered by (rank, offset), and a candidate whose parts have
// changed since it was pushed is skipped. This picks exactly the pair the quadratic scan
// would (lowest rank, then leftmost), so 100 KB of one letter takes milliseconds.
void Tokenizer::Impl::bpe_large(std::string_view piece, std::vector<int>& out) const {
  const size_t n = piece.size();
  constexpr size_t kNone = SIZE_MAX;
  struct Part {
    int id;       // the token this part is now
    bool alive;   // false once merged into the part on its left
    size_t prev, next;
  };
  std::vector<Part> parts(n);  // indexed by the part's first byte
  for (size_t i = 0; i < n; ++i)
    parts[i] = Part{byte_token[uint8_t(piece[i])], true, i == 0 ? kNone : i - 1, i + 1 < n ? i + 1 : kNone};

  struct Candidate {
    int rank;
    size_t left;
    int left_id, right_id, merged;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::vector<Candidate> heap;
  heap.reserve(n);
  auto push_candidate = [&](size_t left) {
    const Part& l = parts[left];
    const Part& r = parts[l.next];
    const PairTable::Merge m = merge_of(l.id, r.id);
    if (m.rank == kNoMerge) return;
    heap.push_back({m.rank, left, l.id, r.id, m.token});
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (size_t i = 0; i + 1 < n; ++i) push_candidate(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate c = heap.back();
    heap.pop_back();
    Part& left = parts[c.left];
    // A part's id determines its length, so unchanged ids mean an unchanged pair.
    if (!left.alive || left.id != c.left_id || left.next == kNone || parts[left.next].id != c.right_id) continue;

    Part& right = parts[left.next];
    left.id = c.merged;
    right.alive = false;
    left.next = right.next;
    if (right.next != kNone) parts[right.next].prev = c.left;
    if (left.prev != kNone) push_candidate(left.prev);
    if (left.next != kNone) push_candidate(c.left);
  }
  for (size_t i = 0; i != kNone; i = parts[i].next) out.push_back(parts[i].id);
}

// ---------------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& dir, int expected_vocab) {
  const std::string vocab_path = dir + "/vocab.json";
  const std::string merges_path = dir + "/merges.txt";
  const std::string vocab_json = read_whole_file(vocab_path);
  const std::string merges_txt = read_whole_file(merges_path);
  auto impl = std::make_unique<Impl>();
  impl->build(vocab_json, vocab_path, merges_txt, merges_path, expected_vocab);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_strings(std::string_view vocab_json, std::string_view merges_txt, int expected_vocab) {
  auto impl = std::make_unique<Impl>();
  impl->build(vocab_json, "vocab.json", merges_txt, "merges.txt", expected_vocab);
  return Tokenizer(std::move(impl));
}

std::vector<int> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int> ids;
  ids.reserve(text.size() / 3 + 1);
  if (parse_special && impl_->end_of_text >= 0) {
    size_t hit;
    while ((hit = text.find(kEndOfTextText)) != std::string_view::npos) {
      impl_->encode_ordinary(text.substr(0, hit), ids);
      ids.push_back(impl_->end_of_text);
      text.remove_prefix(hit + kEndOfTextText.size());
    }
  }
  impl_->encode_ordinary(text, ids);
  return ids;
}

const std::string& Tokenizer::token_bytes(int id) const {
  if (id < 0 || id >= vocab_size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." +
                std::to_string(vocab_size() - 1) + "); were these ids made for another model?");
  return impl_->token_bytes[size_t(id)];
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  std::string text;
  for (int id : ids) text += token_bytes(id);
  return text;
}

int Tokenizer::vocab_size() const { return int(impl_->token_bytes.size()); }

// ---------------------------------------------------------------------------------------

std::string StreamDecoder::push(int id) {
  pending_ += tok_.token_bytes(id);
  std::string complete;
  const size_t used = append_utf8_replacing_invalid(pending_, /*hold_truncated_tail=*/true, complete);
  pending_.erase(0, used);
  return complete;
}

std::string StreamDecoder::finish() {
  std::string rest;
  append_utf8_replacing_invalid(pending_, /*hold_truncated_tail=*/false, rest);
  pending_.clear();
  return rest;
}

}  // namespace gpt2
