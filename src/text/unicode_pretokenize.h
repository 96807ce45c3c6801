// GPT-2's pre-tokenizer: splits text into the pieces that BPE then encodes one by one,
// exactly as OpenAI's pattern
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// splits it (leftmost match, first alternative that matches, greedy runs), hand-written
// because a regex engine is several times slower and its \s may not be White_Space.
#pragma once
#include <cstddef>
#include <string_view>

namespace gpt2 {

// The end (exclusive byte offset) of the piece that starts at `pos` (< text.size()).
// Bytes that are not well-formed UTF-8 count as characters of their own, one byte each, of
// class "other" (like Python's surrogateescape), so every input splits without error.
size_t gpt2_piece_end(std::string_view text, size_t pos);

// Calls on_piece(std::string_view) for each piece of `text`, in order.
template <typename OnPiece>
void for_each_gpt2_piece(std::string_view text, OnPiece&& on_piece) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = gpt2_piece_end(text, pos);
    on_piece(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace gpt2
