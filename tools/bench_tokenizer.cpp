// bench-tokenizer: single-threaded encode throughput of gpt2-gen's tokenizer, the C++ side
// of tools/bench_tokenizer.py (which runs tiktoken and Hugging Face on the same documents).
//
//   bench-tokenizer MODEL_DIR DOCS_FILE [--repeat N] [--ids-out FILE]
//
// DOCS_FILE holds documents as "<byte length>\n<bytes>" one after another. Each document is
// encoded with one encode() call (no special-token parsing, like tiktoken's encode_ordinary);
// the best of N passes over all documents is reported as one JSON line on stdout.
// --ids-out writes each document's ids, space-separated, one line each, for comparison.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.h"

namespace {

std::vector<std::string> read_documents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<std::string> docs;
  for (size_t length; in >> length;) {
    in.get();  // the newline after the length
    std::string doc(length, '\0');
    if (!in.read(doc.data(), std::streamsize(length))) throw std::runtime_error(path + ": truncated document");
    docs.push_back(std::move(doc));
  }
  return docs;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench-tokenizer MODEL_DIR DOCS_FILE [--repeat N] [--ids-out FILE]\n");
    return 2;
  }
  int repeat = 3;
  std::string ids_out;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--repeat") repeat = std::stoi(argv[i + 1]);
    if (flag == "--ids-out") ids_out = argv[i + 1];
  }
  try {
    auto start = std::chrono::steady_clock::now();
    const gpt2::Tokenizer tok = gpt2::Tokenizer::load(argv[1]);
    const double load_seconds = seconds_since(start);
    const std::vector<std::string> docs = read_documents(argv[2]);

    size_t bytes = 0, tokens = 0;
    double best = 1e30;
    std::vector<std::vector<int>> ids(docs.size());
    for (int pass = 0; pass < repeat; ++pass) {
      bytes = tokens = 0;
      start = std::chrono::steady_clock::now();
      for (size_t d = 0; d < docs.size(); ++d) {
        ids[d] = tok.encode(docs[d], /*parse_special=*/false);
        bytes += docs[d].size();
        tokens += ids[d].size();
      }
      best = std::min(best, seconds_since(start));
    }
    if (!ids_out.empty()) {
      std::ofstream out(ids_out);
      for (const auto& doc_ids : ids) {
        for (size_t i = 0; i < doc_ids.size(); ++i) out << (i ? " " : "") << doc_ids[i];
        out << '\n';
      }
    }
    std::printf("{\"documents\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"best_seconds\": %.6f, "
                "\"mb_per_s\": %.3f, \"load_seconds\": %.4f}\n",
                docs.size(), bytes, tokens, best, double(bytes) / best / 1e6, load_seconds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench-tokenizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
