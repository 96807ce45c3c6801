#!/usr/bin/env python3
"""Write a random-weight GPT-2 (the 124M shape by default) in gpt2-gen's format with the Python
standard library alone: tools/gpu_check.sh writes its benchmark model with it on the GPU
machine, where no Python package may be assumed. The same seed gives the same file everywhere.

A decode step's speed depends on the shapes, not the values; the values only have to be finite
and of GPT-2's scale (its initialisation: N(0, 0.02), the residual projections scaled by
1/sqrt(2 n_layer), positions at half, LayerNorm 1 and biases 0). Like any random GPT-2 (numpy's
or transformers' too), its greedy path soon repeats one token. Drawing 124M Gaussians one by one in Python takes minutes, so each matrix is read
out of a block of PERIOD draws (one block per scale), starting at a seeded offset and wrapping
around. PERIOD is a prime larger than any row count, so no two rows of a matrix are equal (the
LM head has no exact ties).

Usage: random_model.py --out DIR [--dtype fp16|fp32] [--seed 0] [--tokenizer DIR]
                       [--n-embd 768] [--n-layer 12] [--n-head 12]
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_format  # noqa: E402 - the tensor list, shared with convert_weights.py
from tool_errors import fail  # noqa: E402

PERIOD = 1_000_003
DTYPES = {"fp16": ("F16", "e", 2), "fp32": ("F32", "f", 4)}


def config(a):
    return {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": a.n_embd,
            "n_layer": a.n_layer, "n_head": a.n_head, "n_inner": None, "layer_norm_epsilon": 1e-5,
            "activation_function": "gelu_new", "eos_token_id": 50256}


def scale(name, n_layer):
    """GPT-2's initial standard deviation of a weight matrix."""
    if name == "wpe":
        return 0.01
    if name.endswith("proj.weight"):
        return 0.02 / math.sqrt(2 * n_layer)
    return 0.02


class Blocks:
    """PERIOD seeded draws per scale, packed once in the file's dtype."""

    def __init__(self, seed, code):
        self.rng, self.code, self.blocks = random.Random(seed), code, {}

    def block(self, std):
        if std not in self.blocks:
            draws = [self.rng.gauss(0.0, std) for _ in range(PERIOD)]
            self.blocks[std] = struct.pack(f"<{PERIOD}{self.code}", *draws)
        return self.blocks[std]

    def window(self, std, n, elem):
        """n values of the block at `std` from a seeded offset, wrapping around."""
        b = self.block(std)
        start = self.rng.randrange(PERIOD) * elem
        reps = (start + n * elem) // len(b) + 1
        return (b[start:] + b * reps)[:n * elem]


def tensor_bytes(name, shape, n_layer, blocks, code, elem):
    n = math.prod(shape)
    if name.endswith(".bias"):
        return bytes(n * elem)
    if "ln_" in name:
        return struct.pack(f"<{code}", 1.0) * n
    return blocks.window(scale(name, n_layer), n, elem)


def write(a):
    cfg = config(a)
    st_dtype, code, elem = DTYPES[a.dtype]
    tensors = sorted((name, shape) for name, shape, _, _ in gpt2_format.tensors(dict(cfg, n_inner=4 * a.n_embd)))
    header = {"__metadata__": {"format": gpt2_format.FORMAT, "format_version": gpt2_format.FORMAT_VERSION,
                               "source": f"tools/random_model.py --seed {a.seed}", "dtype": a.dtype}}
    offset = 0
    for name, shape in tensors:
        nbytes = math.prod(shape) * elem
        header[name] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    os.makedirs(a.out, exist_ok=True)
    blocks = Blocks(a.seed, code)
    with open(os.path.join(a.out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)) + hbytes)
        for name, shape in tensors:
            f.write(tensor_bytes(name, shape, a.n_layer, blocks, code, elem))
    with open(os.path.join(a.out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=1)
    for fname in ("vocab.json", "merges.txt"):
        if a.tokenizer:
            shutil.copyfile(os.path.join(a.tokenizer, fname), os.path.join(a.out, fname))
    n_params = sum(math.prod(s) for _, s in tensors)
    print(f"random_model: wrote a random GPT-2 ({a.n_layer} layers, n_embd {a.n_embd}, {a.dtype}, "
          f"{n_params:,} parameters, seed {a.seed}) to {a.out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="fp16", choices=sorted(DTYPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-embd", type=int, default=768)
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--tokenizer", default="", help="copy vocab.json and merges.txt from here")
    a = ap.parse_args()
    if a.n_embd <= 0 or a.n_layer <= 0 or a.n_head <= 0 or a.n_embd % a.n_head:
        fail("--n-embd, --n-layer and --n-head must be positive, and n_embd a multiple of n_head")
    try:
        write(a)
    except OSError as e:
        fail(f"cannot write {a.out}: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
