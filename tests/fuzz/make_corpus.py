#!/usr/bin/env python3
"""Writes the seed corpora of the libFuzzer targets into tests/fuzz/corpus/<target>/.

Deterministic: running it again rewrites the same bytes (the generated files are committed;
tools/fuzz.sh fuzzes a temporary copy of them). Files whose names start with "regress-" are
inputs a fuzzer once found; this script never touches them.

  fuzz_safetensors       valid and near-valid weight files for the fuzzer's small GPT-2 shape
                         (vocab 16, n_positions 8, n_embd 8, n_layer 1, n_head 2, n_inner 32)
  fuzz_config            the golden tiny config.json and variants, valid and not
  fuzz_prompt_cache      prompt-cache files (src/engine/prompt_cache.h) for the fuzzer's key
                         (1 layer, 8 channels, vocab 16, at most 8 tokens, fp32), valid and not
  fuzz_tokenizer_encode  every text of ../shared/golden/tokenizer/cases.jsonl as raw bytes,
                         plus invalid UTF-8 and long pieces
  fuzz_tokenizer_files   small vocab.json NUL merges.txt pairs (the 256 byte tokens + a few
                         merges, cut from GPT-2's own files), valid and not

Usage: python3 tests/fuzz/make_corpus.py [--shared DIR]   (default: ../shared of the repo)
"""
import argparse
import hashlib
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import gpt2_format  # noqa: E402 - the tensor list of tools/convert_weights.py
CORPUS = os.path.join(HERE, "corpus")

# The fuzzer's small config (keep in sync with fuzz_safetensors.cpp).
V, P, C, L, H = 16, 8, 8, 1, 32


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def clear_generated(target):
    d = os.path.join(CORPUS, target)
    if os.path.isdir(d):
        for n in os.listdir(d):
            if not n.startswith("regress-"):
                os.remove(os.path.join(d, n))


# ------------------------------------------------------------------------------------------
# Weight files. A hand-written writer (not the safetensors package) so that the near-valid
# variants can break exactly one rule each.

def tensor_specs():
    config = {"vocab_size": V, "n_positions": P, "n_embd": C, "n_layer": L, "n_inner": H}
    return [(name, shape) for name, shape, _, _ in gpt2_format.tensors(config)]


NP_DTYPE = {"F32": "<f4", "F16": "<f2", "I32": "<i4"}


def tensor_bytes(name, shape, dtype, rng):
    a = rng.standard_normal(shape).astype(np.float32) * 0.02
    if dtype == "BF16":
        return (a.view(np.uint32) >> 16).astype("<u2").tobytes()
    return a.astype(NP_DTYPE[dtype]).tobytes()


def safetensors_image(entries, metadata=None, header_len=None, pad=True, tail=b""):
    """entries: list of (name, dtype, shape, data bytes). Offsets are assigned in order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    buf = b""
    for name, dtype, shape, data in entries:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(buf), len(buf) + len(data)]}
        buf += data
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    n = len(h) if header_len is None else header_len
    return struct.pack("<Q", n) + h + buf + tail


def raw_image(header_text, buf=b""):
    h = header_text.encode()
    return struct.pack("<Q", len(h)) + h + buf


def make_safetensors():
    t = "fuzz_safetensors"
    clear_generated(t)
    rng = np.random.default_rng(1234)

    def entries(dtype="F32", specs=None):
        return [(n, dtype, s, tensor_bytes(n, s, dtype, rng)) for n, s in (specs or tensor_specs())]

    good = entries()
    write(t, "valid-f32.safetensors", safetensors_image(good))
    write(t, "valid-f16.safetensors", safetensors_image(entries("F16")))
    write(t, "valid-bf16.safetensors", safetensors_image(entries("BF16")))
    write(t, "valid-metadata.safetensors", safetensors_image(entries("F16"), metadata={"format": "pt"}))
    write(t, "valid-unpadded.safetensors", safetensors_image(entries("F16"), pad=False))
    write(t, "valid-reversed-order.safetensors", safetensors_image(list(reversed(entries("F16")))))

    # Parses, but bind_tensors refuses it.
    e = entries("F16")
    write(t, "bind-missing-tensor.safetensors", safetensors_image(e[:-1]))
    write(t, "bind-extra-tensor.safetensors", safetensors_image(e + [("h.1.ln_1.weight", "F16", (C,), bytes(2 * C))]))
    e2 = list(e)
    e2[0] = ("wte", "F16", (C, V), e2[0][3])
    write(t, "bind-transposed.safetensors", safetensors_image(e2))
    e3 = list(e)
    e3[2] = ("ln_f.weight", "F32", (C,), bytes(4 * C))
    write(t, "bind-mixed-dtype.safetensors", safetensors_image(e3))
    e4 = list(e)
    e4[3] = ("ln_f.bias", "I32", (C,), bytes(4 * C))
    write(t, "bind-i32.safetensors", safetensors_image(e4))
    hf = [("transformer." + n + (".weight" if n in ("wte", "wpe") else ""), d, s, b) for n, d, s, b in e]
    write(t, "bind-hf-names.safetensors", safetensors_image(hf))
    write(t, "parse-i32-only.safetensors", safetensors_image([("ids", "I32", (2, 3), np.arange(6, dtype="<i4").tobytes())]))
    write(t, "parse-empty-header.safetensors", safetensors_image([]))
    write(t, "parse-scalar-and-empty.safetensors",
          safetensors_image([("s", "F32", (), struct.pack("<f", 1.5)), ("z", "F16", (0, 4), b"")]))

    # Refused by the parser, each for one reason.
    img = safetensors_image(good)
    write(t, "bad-truncated.safetensors", img[: len(img) - 7])
    write(t, "bad-trailing.safetensors", img + b"\0\0\0\0")
    write(t, "bad-header-len-long.safetensors", safetensors_image(good, header_len=len(img)))
    write(t, "bad-header-len-short.safetensors", safetensors_image(entries("F16"), header_len=100))
    write(t, "bad-header-len-zero.safetensors", safetensors_image([], header_len=0))
    write(t, "bad-short-file.safetensors", b"\x10\x00\x00")
    write(t, "bad-overlap.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                    '"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}', bytes(12)))
    write(t, "bad-hole.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                    '"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}}', bytes(20)))
    write(t, "bad-duplicate.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                    '"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}', bytes(16)))
    write(t, "bad-size-mismatch.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', bytes(8)))
    write(t, "bad-offsets-past-end.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                    '"b":{"dtype":"F32","shape":[2],"data_offsets":[8,18446744073709551615]}}',
                    bytes(16)))
    write(t, "bad-shape-overflow.safetensors",
          raw_image('{"a":{"dtype":"F16","shape":[4294967296,4294967296],"data_offsets":[0,8]}}', bytes(8)))
    write(t, "bad-bytes-overflow.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}}'))
    write(t, "bad-negative-dim.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}', bytes(8)))
    write(t, "bad-float-offset.safetensors",
          raw_image('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}}', bytes(8)))
    write(t, "bad-dtype.safetensors",
          raw_image('{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}', bytes(8)))
    write(t, "bad-metadata.safetensors",
          raw_image('{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', bytes(4)))
    write(t, "bad-not-object.safetensors", raw_image("[1,2,3]"))
    write(t, "bad-json.safetensors", raw_image('{"a":{"dtype":"F32","shape":[1],"data_offs'))


# ------------------------------------------------------------------------------------------
# config.json

def make_config(shared):
    t = "fuzz_config"
    clear_generated(t)
    with open(os.path.join(shared, "golden", "tiny-gpt2", "config.json"), "rb") as f:
        golden = f.read()
    write(t, "golden-tiny-gpt2.json", golden)
    base = json.loads(golden)

    def variant(name, **changes):
        c = dict(base)
        for k, v in changes.items():
            if v is ...:
                c.pop(k, None)
            else:
                c[k] = v
        write(t, name + ".json", json.dumps(c, indent=1))

    write(t, "minimal.json", '{"vocab_size":16,"n_positions":8,"n_embd":8,"n_layer":1,"n_head":2,"n_inner":32}')
    variant("gpt2-small", vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12)
    variant("gpt2-xl", vocab_size=50257, n_positions=1024, n_embd=1600, n_layer=48, n_head=25)
    variant("n-ctx-only", n_positions=..., n_ctx=128)
    variant("n-inner-set", n_inner=300)
    variant("eos-null", eos_token_id=None)
    variant("gelu-pytorch-tanh", activation_function="gelu_pytorch_tanh")
    variant("epsilon-tiny", layer_norm_epsilon=1e-12)
    variant("at-limits", vocab_size=1 << 20, n_positions=1 << 16, n_embd=1 << 15, n_layer=1024, n_head=1 << 15)
    variant("bad-relu", activation_function="relu")
    variant("bad-head-split", n_head=3)
    variant("bad-zero-layers", n_layer=0)
    variant("bad-float-embd", n_embd=128.0)
    variant("bad-huge-vocab", vocab_size=2 ** 40)
    variant("bad-negative", n_positions=-1)
    variant("bad-eos", eos_token_id=50257)
    variant("bad-epsilon", layer_norm_epsilon=0)
    variant("bad-missing-vocab", vocab_size=...)
    variant("bad-cross-attention", add_cross_attention=True)
    variant("bad-too-many-params", vocab_size=1 << 20, n_embd=1 << 15, n_head=1)
    write(t, "bad-not-object.json", "[50257, 1024]")
    write(t, "bad-truncated.json", golden[: len(golden) // 2])


# ------------------------------------------------------------------------------------------
# Tokenizer: texts

def make_tokenizer_encode(shared):
    t = "fuzz_tokenizer_encode"
    clear_generated(t)
    seen = set()
    with open(os.path.join(shared, "golden", "tokenizer", "cases.jsonl"), encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)["text"].encode("utf-8", "surrogatepass")
            if text in seen:
                continue
            seen.add(text)
            write(t, "case-" + hashlib.sha1(text).hexdigest()[:12], text)
    extra = {
        "invalid-lone-continuation": b"abc\x80def",
        "invalid-truncated-3": b"caf\xe2\x82",
        "invalid-truncated-4-then-ascii": b"\xf0\x9f\x98 ok",
        "invalid-overlong": b"\xc0\xaf\xe0\x80\xaf",
        "invalid-surrogate": b"\xed\xa0\x80\xed\xbf\xbf",
        "invalid-above-max": b"\xf4\x90\x80\x80\xf5\xff",
        "invalid-mixed-words": b"Hello \xff\xfeworld's \xc3(x\xe2\x28\xa1 123",
        "long-letters": b"a" * 300,
        "long-digits": b"7" * 200,
        "long-spaces": b" " * 150 + b"x",
        "long-punct": b"!?" * 100,
        "long-cjk": "\u4f60\u597d" * 60,
        "special-run": b"<|endoftext|><|endoftext|>x<|endoftext|",
        "special-overlap": b"<|endoftext<|endoftext|>|>",
    }
    for name, text in extra.items():
        write(t, name, text)


# ------------------------------------------------------------------------------------------
# Tokenizer: files. GPT-2's vocab numbers the 256 byte tokens 0..255 and then one token per
# merge line in order, so its first 256 + k tokens and first k merges form a valid tokenizer.

def make_tokenizer_files(shared):
    t = "fuzz_tokenizer_files"
    clear_generated(t)
    with open(os.path.join(shared, "gpt2-tokenizer", "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(shared, "gpt2-tokenizer", "merges.txt"), encoding="utf-8") as f:
        merge_lines = f.read().split("\n")
    assert merge_lines[0].startswith("#version")
    merges = [m for m in merge_lines[1:] if m]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])

    def pair(k, eot=True, version=True, eol="\n", shuffle=False):
        items = by_id[: 256 + k]
        v = {tok: i for tok, i in items}
        if eot:
            v["<|endoftext|>"] = len(v)
        if shuffle:
            v = dict(sorted(v.items()))
        vj = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        mt = (["#version: 0.2"] if version else []) + merges[:k]
        return vj.encode() + b"\0" + (eol.join(mt) + eol).encode()

    write(t, "gpt2-k0", pair(0))
    write(t, "gpt2-k16", pair(16))
    write(t, "gpt2-k64", pair(64, shuffle=True))
    write(t, "gpt2-k64-no-eot-no-version", pair(64, eot=False, version=False))
    write(t, "gpt2-k32-crlf", pair(32, eol="\r\n"))
    write(t, "gpt2-k200", pair(200))
    base = pair(16)
    vj, mt = base.split(b"\0", 1)
    write(t, "bad-merge-unknown", vj + b"\0" + mt + "zz q\n".encode())
    write(t, "bad-merge-three", vj + b"\0" + mt + "a b c\n".encode())
    write(t, "bad-merge-repeat", vj + b"\0" + mt + (merges[0] + "\n").encode())
    write(t, "bad-missing-byte", vj.replace(b'"!":0', b'"!!":0', 1) + b"\0" + mt)
    write(t, "bad-duplicate-id", vj.replace(b'"!":0', b'"!":1', 1) + b"\0" + mt)
    write(t, "bad-id-range", vj.replace(b'"!":0', b'"!":99999', 1) + b"\0" + mt)
    write(t, "bad-not-object", b"[1,2]\0")
    write(t, "bad-float-id", vj.replace(b'"!":0', b'"!":0.5', 1) + b"\0" + mt)


# ------------------------------------------------------------------------------------------
# Prompt-cache files: safetensors images with K and V [1, n, 8] and the ids in __metadata__.
# The key must match fuzz_prompt_cache.cpp's small_key().

def make_prompt_cache():
    t = "fuzz_prompt_cache"
    clear_generated(t)
    rng = np.random.default_rng(4321)

    def meta(token_ids, **changes):
        m = {"format": "gpt2-gen-prompt-cache/1", "model": "0123456789abcdef", "device": "cpu", "dtype": "fp32",
             "kv_format": "fp32", "n_tokens": str(len(token_ids)), "ids": ",".join(map(str, token_ids))}
        m.update(changes)
        return m

    def image(token_ids, dtype="F32", n=None, metadata=None, **changes):
        n = len(token_ids) if n is None else n
        kv = [(name, dtype, (1, n, 8), tensor_bytes(name, (1, n, 8), dtype, rng)) for name in ("k", "v")]
        return safetensors_image(kv, metadata=metadata or meta(token_ids, **changes))

    write(t, "valid-1.safetensors", image([3]))
    write(t, "valid-5.safetensors", image([1, 2, 3, 4, 15]))
    write(t, "valid-8.safetensors", image(list(range(8))))
    write(t, "bad-9-tokens.safetensors", image([1] * 9))
    write(t, "bad-id-range.safetensors", image([1, 16]))
    write(t, "bad-id-negative.safetensors", image([1], ids="-1"))
    write(t, "bad-id-empty.safetensors", image([1, 2], ids="1,,2"))
    write(t, "bad-id-trailing-comma.safetensors", image([1, 2], ids="1,2,"))
    write(t, "bad-count.safetensors", image([1, 2], n_tokens="3"))
    write(t, "bad-model.safetensors", image([1, 2], model="fedcba9876543210"))
    write(t, "bad-kv-format.safetensors", image([1, 2], kv_format="fp16"))
    write(t, "bad-dtype.safetensors", image([1, 2], dtype="F16"))
    write(t, "bad-shape.safetensors", image([1, 2], n=3))
    good = image([1, 2, 3])
    write(t, "bad-truncated.safetensors", good[: len(good) - 5])
    nan = bytearray(good)
    nan[-4:] = struct.pack("<f", float("nan"))
    write(t, "bad-nan.safetensors", bytes(nan))
    write(t, "bad-no-metadata.safetensors",
          safetensors_image([("k", "F32", (1, 1, 8), bytes(32)), ("v", "F32", (1, 1, 8), bytes(32))]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "shared"))
    args = ap.parse_args()
    make_safetensors()
    make_config(args.shared)
    make_prompt_cache()
    make_tokenizer_encode(args.shared)
    make_tokenizer_files(args.shared)
    total = 0
    for root, _, files in os.walk(CORPUS):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in files)
    print(f"make_corpus: {CORPUS} holds {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
