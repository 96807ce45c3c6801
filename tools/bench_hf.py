#!/usr/bin/env python3
"""The classic KV-cache measurement with Hugging Face transformers, written in gpt2-gen's
benchmark schema (gpt2-gen-benchmark/1) so tools/plot_benchmark.py can draw both side by side.

  model.generate(input_ids, max_new_tokens=N, do_sample=False, use_cache=True / False)

timed over --runs runs per mode after one warm-up, with each token's time taken by a logits
processor (called once per generated token). Works from a local model directory (a Hugging
Face snapshot with config.json + weights; a random-weight model built from a GPT-2 config is
fine for timing): no network needed. `--random-gpt2 DIR` writes such a model first.

Usage: python3 tools/bench_hf.py --model DIR --prompt-ids 2061,318,509,53,40918,30 \
           -n 1000 --runs 5 --dtype fp16 --device cuda --json hf.json

--batch 1,2,4,8,16 measures batched generation instead, as `gpt2-gen --benchmark --parallel`
does, and writes its schema (gpt2-gen-batch-benchmark/1): at batch size B, one generate() on a
left-padded batch of B copies of the prompt (the same length, so no padding is needed; the
attention mask is built as for any batch), greedy, exactly -n new tokens, with the cache and
without it; each step's time from the same logits processor (one call per step for all B rows).
"""
import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark_schema  # noqa: E402
from tool_errors import fail  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="local Hugging Face model directory")
    ap.add_argument("--random-gpt2", action="store_true",
                    help="first write a seeded random GPT-2 124M (GPT2Config()) into --model")
    ap.add_argument("--prompt-ids", default="2061,318,509,53,40918,30", help="comma-separated token ids")
    ap.add_argument("-n", "--max-new-tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    ap.add_argument("--device", default="cuda" if os.environ.get("CUDA_VISIBLE_DEVICES", "0") != "" else "cpu")
    ap.add_argument("--modes", default="cache,no-cache", help="which modes to run")
    ap.add_argument("--json", dest="json_out", required=True, help="output file")
    ap.add_argument("--batch", metavar="B[,B...]",
                    help="batched generation at these batch sizes (schema gpt2-gen-batch-benchmark/1)")
    a = ap.parse_args()
    if a.max_new_tokens < 1 or a.runs < 1:
        fail("--max-new-tokens and --runs must be >= 1")
    try:
        a.prompt_ids = [int(x) for x in a.prompt_ids.split(",")]
    except ValueError:
        fail(f"--prompt-ids {a.prompt_ids!r} is not a comma-separated list of integers")
    if a.batch is not None:
        try:
            a.batch = [int(x) for x in a.batch.split(",")]
        except ValueError:
            fail(f"--batch {a.batch!r} is not a comma-separated list of batch sizes, e.g. 1,2,4,8")
        if any(b < 1 for b in a.batch):
            fail(f"--batch: every batch size must be >= 1, got {a.batch}")
    return a


def main():
    a = parse_args()
    try:
        import torch
        import transformers
        from transformers import GPT2Config, GPT2LMHeadModel, LogitsProcessor, LogitsProcessorList
    except ImportError as e:
        fail(f"this tool needs torch and transformers ({e}); pip install torch transformers")

    if a.random_gpt2:
        torch.manual_seed(0)
        GPT2LMHeadModel(GPT2Config()).save_pretrained(a.model, safe_serialization=True)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype]
    device = torch.device(a.device)
    model = GPT2LMHeadModel.from_pretrained(a.model, dtype=dtype).to(device).eval()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    class Clock(LogitsProcessor):
        """Records the time at which each new token's logits are ready (one call per token)."""

        def __init__(self):
            self.stamps = []

        def __call__(self, input_ids, scores):
            sync()
            self.stamps.append(time.perf_counter())
            return scores

    if a.batch:
        doc = batched(a, torch, model, device, sync, Clock, LogitsProcessorList)
        doc["tool"] = f"transformers {transformers.__version__}"
        benchmark_schema.validate_batch(doc)
        write_atomically(a.json_out, doc)
        return

    ids = torch.tensor([a.prompt_ids], device=device)
    attention = torch.ones_like(ids)

    def one_run(use_cache):
        clock = Clock()
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=attention, max_new_tokens=a.max_new_tokens,
                                 min_new_tokens=a.max_new_tokens, do_sample=False, use_cache=use_cache,
                                 logits_processor=LogitsProcessorList([clock]), pad_token_id=50256)
        sync()
        end = time.perf_counter()
        # Token i's time runs from the previous stamp (or the start) to its logits being ready;
        # the time from the last stamp to the end of generate() goes to the last token.
        edges = [start] + clock.stamps
        token_ms = [(edges[i + 1] - edges[i]) * 1000 for i in range(len(clock.stamps))]
        token_ms[-1] += (end - edges[-1]) * 1000
        return benchmark_schema.run_record(token_ms, out[0, len(a.prompt_ids):].tolist())

    cfg = model.config
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    modes = []
    for name in a.modes.split(","):
        use_cache = name == "cache"
        one_run(use_cache)  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        runs = [one_run(use_cache) for _ in range(a.runs)]
        totals = [r["total_s"] for r in runs]
        label = "with KV caching" if use_cache else "without KV caching"
        print(f"{label}: {statistics.fmean(totals):.3f} +- {statistics.pstdev(totals):.3f} seconds", flush=True)
        # HF's DynamicCache grows to the final sequence length (no preallocated ring).
        seq = len(a.prompt_ids) + a.max_new_tokens
        modes.append({"name": name, "kv_cache": use_cache,
                      "kv_cache_bytes": 2 * cfg.n_layer * seq * cfg.n_embd * dtype.itemsize if use_cache else 0,
                      "weight_bytes": weight_bytes, "activation_bytes": 0,
                      "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else 0,
                      "runs": runs})
    doc = benchmark_schema.result(
        f"transformers {transformers.__version__}", device.type,
        torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", a.dtype, a.model,
        sum(p.numel() for p in model.parameters()), a.prompt_ids, a.max_new_tokens, modes)
    benchmark_schema.validate(doc)
    write_atomically(a.json_out, doc)


def write_atomically(path, doc):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def left_padded(torch, prompts, pad_id, device):
    """(input_ids, attention_mask) of a batch of prompts, padded on the left as decoder-only
    generation needs (the newest token of every row in the last column)."""
    width = max(len(p) for p in prompts)
    ids = [[pad_id] * (width - len(p)) + list(p) for p in prompts]
    mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
    return torch.tensor(ids, device=device), torch.tensor(mask, device=device)


def reset_peak_rss():
    """Resets this process's peak resident memory (Linux); False where that is refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def batched(a, torch, model, device, sync, Clock, LogitsProcessorList):
    """The batched benchmark's document (schema gpt2-gen-batch-benchmark/1, tool set by the caller)."""
    cfg = model.config
    n, P = a.max_new_tokens, len(a.prompt_ids)
    itemsize = next(model.parameters()).element_size()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    config = {"n_embd": cfg.n_embd, "n_layer": cfg.n_layer, "vocab_size": cfg.vocab_size, "n_inner": cfg.n_inner}

    def one_run(B, use_cache, new_tokens):
        ids, mask = left_padded(torch, [a.prompt_ids] * B, 50256, device)
        clock = Clock()
        sync()
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 do_sample=False, use_cache=use_cache, pad_token_id=50256,
                                 logits_processor=LogitsProcessorList([clock]))
        sync()
        end = time.perf_counter()
        edges = [start] + clock.stamps
        step_ms = [(edges[i + 1] - edges[i]) * 1000 for i in range(len(clock.stamps))]
        flops = B * benchmark_schema.decode_flops(config, P, new_tokens, use_cache)
        return benchmark_schema.batch_run_record(end - start, clock.stamps[0] - start, step_ms, B,
                                                 out[:, ids.shape[1]:].tolist(), flops)

    entries, reference, identical = [], None, True
    for B in a.batch:
        scope = reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for use_cache in (True, False):
            one_run(B, use_cache, min(2, n))  # warm-up
            runs = [one_run(B, use_cache, n) for _ in range(a.runs)]
            reference = reference or runs[0]["generated_ids"]
            identical = identical and all(r["requests_identical"] and r["generated_ids"] == reference for r in runs)
            # HF's DynamicCache grows to the P + n - 1 positions computed (no preallocated ring).
            held = B * 2 * cfg.n_layer * (P + n - 1) * cfg.n_embd * itemsize if use_cache else 0
            peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else peak_rss_bytes()
            entry = {"batch_size": B, "name": "cache" if use_cache else "no-cache", "kv_cache": use_cache,
                     "requests": B, "kv_ring_bytes": held, "kv_held_bytes": held, "weight_bytes": weight_bytes,
                     "peak_memory_bytes": peak, "peak_memory_scope": "batch_size" if scope else "process",
                     "runs": runs, "summary": benchmark_schema.batch_summary(runs)}
            entries.append(entry)
            print(f"B={B} {entry['name']}: {entry['summary']['decode_tokens_per_s_mean']:.1f} decode tokens/s",
                  flush=True)
    return {"schema": benchmark_schema.BATCH_SCHEMA, "tool": "transformers", "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "dtype": a.dtype, "threads": torch.get_num_threads(), "model": a.model,
            "n_params": sum(p.numel() for p in model.parameters()), "prompt_ids": list(a.prompt_ids),
            "max_new_tokens": n, "runs": a.runs, "kv_capacity": cfg.n_positions, "load_ms": 0.0, "tokenize_ms": 0.0,
            "batch_sizes": list(a.batch), "tokens_identical": identical, "entries": entries}

if __name__ == "__main__":
    main()
