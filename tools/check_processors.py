#!/usr/bin/env python3
"""gpt2-gen's logits processors end to end against transformers: every case of
reference_processors.json (greedy continuations of the tiny golden under repetition_penalty and
no_repeat_ngram_size, float64) through the CLI on a device, with and without the cache. Used by
tools/gpu_check.sh (the CUDA backend runs the penalties inside its decode graph); prints one
line per mismatch and a summary; exit status 1 on any mismatch.

Usage: check_processors.py GPT2_GEN MODEL_DIR REFERENCE_JSON [--device cuda] [--cases N] [--no-nocache]
"""
import argparse
import json
import subprocess
import sys

FLAGS = {"repetition_penalty": "--repeat-penalty", "no_repeat_ngram_size": "--no-repeat-ngram-size"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("gpt2_gen")
    ap.add_argument("model")
    ap.add_argument("reference")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--cases", type=int, default=0, help="only the first N cases (0: all)")
    ap.add_argument("--no-nocache", action="store_true", help="only with the cache")
    a = ap.parse_args()
    with open(a.reference, encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    if a.cases:
        cases = cases[:a.cases]
    runs = bad = 0
    for c in cases:
        settings = [x for k, v in c["settings"].items() for x in (FLAGS[k], str(v))]
        for cache in ([[]] if a.no_nocache else [[], ["--no-cache"]]):
            cmd = [a.gpt2_gen, "-m", a.model, "--device", a.device, "--json", "-q", "--temperature", "0",
                   "--ignore-eos", "-n", str(len(c["new_tokens"])), "--prompt-ids", ",".join(map(str, c["prompt"])),
                   *settings, *cache]
            proc = subprocess.run(cmd, capture_output=True, timeout=120)
            runs += 1
            got = json.loads(proc.stdout)["generated_ids"] if proc.returncode == 0 else None
            if got != c["new_tokens"]:
                bad += 1
                first = next((i for i, (x, y) in enumerate(zip(got or [], c["new_tokens"])) if x != y), None)
                print(f"MISMATCH {c['settings']} prompt {len(c['prompt'])} tokens {'no-cache' if cache else 'cache'}: "
                      f"rc {proc.returncode}, first difference at step {first}; {proc.stderr.decode()[-200:]}")
    print(f"processors: {runs - bad} of {runs} runs equal transformers' tokens ({len(cases)} cases, {a.device})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
