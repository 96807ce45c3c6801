#!/usr/bin/env python3
"""Encode throughput of gpt2-gen's tokenizer next to tiktoken and Hugging Face tokenizers.

All three encode the same documents of about 64 KB (4 MB in all: English prose, C++/Python
code, and Chinese/Japanese/Korean text, gathered from files every Debian + Python install
has, the CJK part extended by generation, see cjk_text), single-threaded, one encode call
per document, best of --repeat passes, on the whole corpus and on each kind of text. They
are built from the same vocab.json / merges.txt, and the table says whether all three
produced the same ids (the script fails if not). MB = 10^6 bytes of UTF-8.

    python3 tools/bench_tokenizer.py [--build build] [--model-dir ../shared/gpt2-tokenizer]

Builds the bench-tokenizer target in --build (it is not part of `all`); needs `pip install tiktoken tokenizers`.
"""
import argparse
import glob
import json
import os
import platform
import random
import subprocess
import sys
import sysconfig
import tempfile
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # Hugging Face: no thread pool
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import tiktoken  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
DOC_BYTES = 64 * 1024


# ---------------------------------------------------------------------------------------
# Corpus

def read_text(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def english_prose(limit):
    """Python's reference-manual topics (pydoc_data) and Debian's license texts: plain English."""
    from pydoc_data import topics
    parts = [topics.topics[k] for k in sorted(topics.topics)]
    parts += [read_text(p) for p in sorted(glob.glob("/usr/share/common-licenses/*")) if os.path.isfile(p)]
    size = sum(map(len, parts))
    for path in sorted(glob.glob("/usr/share/doc/*/copyright")):  # more license prose
        if size > limit:
            break
        parts.append(read_text(path))
        size += len(parts[-1])
    return "\n\n".join(parts)[:limit]


def source_code(limit):
    """C++ standard-library headers and Python standard-library modules."""
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob("/usr/include/c++/*/bits/*.h"))[:60] + sorted(glob.glob(os.path.join(stdlib, "*.py")))
    text, parts = 0, []
    for path in files:
        parts.append(read_text(path))
        text += len(parts[-1])
        if text > limit:
            break
    return "\n".join(parts)[:limit]


def cjk_text(limit, model_dir):
    """Chinese, Japanese and Korean: Python's CJK codec test texts and the Chinese article in
    the tokenizer goldens (about 25 KB of real text), then text generated from their
    character bigrams (seeded) up to the size wanted. Generated rather than repeated, so
    that a per-piece cache cannot make CJK look faster than it is: nearly every clause of
    it is new."""
    stdlib = sysconfig.get_paths()["stdlib"]
    parts = [read_text(p) for p in sorted(glob.glob(os.path.join(stdlib, "test", "cjkencodings", "*-utf8.txt")))]
    goldens = os.path.join(model_dir, "..", "golden", "tokenizer", "cases.jsonl")
    if os.path.exists(goldens):
        with open(goldens, encoding="utf-8") as f:
            parts += [t for t in (json.loads(line)["text"] for line in f) if len(t.encode("utf-8")) > 2 * len(t)]
    real = "\n".join(parts)
    if not real:
        sys.exit("bench_tokenizer: Python's test/cjkencodings is missing; cannot build the CJK part")
    followers = {}
    for a, b in zip(real, real[1:]):
        followers.setdefault(a, []).append(b)
    rng = random.Random(1)
    out, c = [real], real[0]
    size = len(real)
    while size < limit:
        c = rng.choice(followers.get(c) or real)
        out.append(c)
        size += 1
    return "".join(out)[:limit]


def documents(text):
    """Cuts text into documents of about DOC_BYTES bytes, at line ends."""
    docs, lines, size = [], [], 0
    for line in text.splitlines(keepends=True):
        lines.append(line)
        size += len(line.encode("utf-8"))
        if size >= DOC_BYTES:
            docs.append("".join(lines))
            lines, size = [], 0
    if lines:
        docs.append("".join(lines))
    return docs


def corpus(megabytes, model_dir):
    """{part name: documents}, English 45%, code 35%, CJK 20% of the bytes."""
    target = int(megabytes * 1e6)
    texts = {"english": english_prose(int(target * 0.45)), "code": source_code(int(target * 0.35)),
             "cjk": cjk_text(int(target * 0.20) // 3, model_dir)}
    return {name: documents(text) for name, text in texts.items()}


# ---------------------------------------------------------------------------------------
# Tokenizers

def bytes_to_unicode():
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, moved = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + moved)
            moved += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def make_tiktoken(model_dir):
    char_to_byte = bytes_to_unicode()
    with open(os.path.join(model_dir, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    ranks = {bytes(char_to_byte[c] for c in tok): i for tok, i in vocab.items() if tok != "<|endoftext|>"}
    return tiktoken.Encoding("gpt2-from-files", pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def make_hf(model_dir):
    tok = Tokenizer(models.BPE.from_file(os.path.join(model_dir, "vocab.json"), os.path.join(model_dir, "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    return tok


def best_time(encode_all, repeat):
    best, ids = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        ids = encode_all()
        best = min(best, time.perf_counter() - start)
    return best, ids


def run_gpt2_gen(build, model_dir, docs, repeat):
    binary = os.path.join(build, "bench-tokenizer")
    subprocess.run(["cmake", "--build", build, "--target", "bench-tokenizer"], check=True,
                   stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        docs_path, ids_path = os.path.join(tmp, "docs"), os.path.join(tmp, "ids")
        with open(docs_path, "wb") as f:
            for d in docs:
                data = d.encode("utf-8")
                f.write(b"%d\n" % len(data) + data)
        out = subprocess.run([binary, model_dir, docs_path, "--repeat", str(repeat), "--ids-out", ids_path],
                             check=True, capture_output=True, text=True).stdout
        with open(ids_path) as f:
            ids = [[int(x) for x in line.split()] for line in f]
    result = json.loads(out)
    return result["best_seconds"], ids, result


def measure(docs, build, model_dir, tt, hf, repeat):
    """Best seconds of each tokenizer on docs, and whether all three gave the same ids."""
    ours_s, ours, info = run_gpt2_gen(build, model_dir, docs, repeat)
    tt_s, tt_ids = best_time(lambda: [tt.encode_ordinary(d) for d in docs], repeat)
    hf_s, hf_ids = best_time(lambda: [hf.encode(d, add_special_tokens=False).ids for d in docs], repeat)
    return (ours_s, tt_s, hf_s), ours == tt_ids == hf_ids, sum(map(len, tt_ids)), info


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model-dir", default=os.path.join(ROOT, "..", "shared", "gpt2-tokenizer"))
    parser.add_argument("--megabytes", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import tokenizers
    parts = corpus(args.megabytes, args.model_dir)
    parts = {"all": [d for docs in parts.values() for d in docs], **parts}
    tt, hf = make_tiktoken(args.model_dir), make_hf(args.model_dir)

    rows, all_same = [], True
    for name, docs in parts.items():
        size = sum(len(d.encode("utf-8")) for d in docs)
        seconds, same, tokens, info = measure(docs, args.build, args.model_dir, tt, hf, args.repeat)
        all_same &= same
        rows.append((name, size, tokens, seconds, same))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; every tokenizer single-threaded, one "
          f"encode call per document of ~{DOC_BYTES // 1024} KB, best of {args.repeat}")
    print(f"gpt2-gen tokenizer load (vocab.json + merges.txt): {info['load_seconds'] * 1000:.0f} ms\n")
    print(f"| text | MB | tokens | gpt2-gen MB/s | tiktoken {tiktoken.__version__} MB/s | "
          f"HF tokenizers {tokenizers.__version__} MB/s | same ids |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, size, tokens, (ours_s, tt_s, hf_s), same in rows:
        mbs = [size / s / 1e6 for s in (ours_s, tt_s, hf_s)]
        print(f"| {name} | {size / 1e6:.2f} | {tokens} | {mbs[0]:.1f} | {mbs[1]:.1f} ({ours_s and tt_s / ours_s:.1f}x "
              f"slower) | {mbs[2]:.1f} ({hf_s / ours_s:.1f}x slower) | {'yes' if same else 'NO'} |")
    if not all_same:
        sys.exit("bench_tokenizer: the tokenizers disagree on this corpus")


if __name__ == "__main__":
    main()
