#!/usr/bin/env python3
"""Writes a copy of a converted tiny model whose vocabulary is its first V tokens (wte's first V
rows, tied LM head; eos = V - 1; no tokenizer files: GPT-2's has 50257 tokens, and the tests
that use this model pass token ids). The CUDA emulator spends ~95% of a tiny-model decode step in
the 50257-row LM head, so the backend's mechanics tests (cache vs --no-cache, context shifts,
CPU vs CUDA, allocations, launches) run ~10x faster on it; the goldens keep the real vocabulary.

Usage: make_small_vocab_model.py SRC_DIR OUT_DIR V"""
import json
import os
import sys

from safetensors.numpy import load_file, save_file
from safetensors import safe_open


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: make_small_vocab_model.py SRC_DIR OUT_DIR V")
    src, out, vocab = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(os.path.join(src, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    if not 1 < vocab < config["vocab_size"]:
        sys.exit(f"make_small_vocab_model.py: V={vocab} must be in 2..{config['vocab_size'] - 1}")
    weights_path = os.path.join(src, "model.safetensors")
    with safe_open(weights_path, "np") as f:
        metadata = f.metadata()
    tensors = load_file(weights_path)
    tensors["wte"] = tensors["wte"][:vocab].copy()
    config["vocab_size"] = vocab
    config["eos_token_id"] = vocab - 1
    os.makedirs(out, exist_ok=True)
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata=metadata)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
