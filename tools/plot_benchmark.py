#!/usr/bin/env python3
"""Plot gpt2-gen benchmark JSON files as one PNG.

The one-sequence benchmark (schema gpt2-gen-benchmark/1, written by `gpt2-gen --benchmark
--json FILE` or tools/bench_hf.py):
  1. per-token decode latency against the token's position, cache and no-cache
     (the median over runs at each position; no-cache grows with the sequence),
  2. cumulative generation time against tokens generated,
  3. memory: weights, K/V ring and activations per file.

The batched benchmark (schema gpt2-gen-batch-benchmark/1, written by `gpt2-gen --benchmark
--parallel 1,2,4,... --json FILE` or `tools/bench_hf.py --batch`), against the batch size B,
cache and no-cache side by side:
  1. aggregate decode tokens/s (mean over runs),
  2. K/V memory: the bytes the sequences hold at the end, the ring allocated, and peak memory.
Files of the two kinds cannot be mixed in one plot.

Usage: python3 tools/plot_benchmark.py RESULT.json [MORE.json ...] -o plot.png
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchmark_schema  # noqa: E402
from tool_errors import fail, read_json  # noqa: E402


def load(path):
    data = read_json(path, "benchmark JSON")
    try:
        if benchmark_schema.schema_of(data) == "batch":
            benchmark_schema.validate_batch(data)
        else:
            benchmark_schema.validate(data)
    except ValueError as e:
        fail(f"{path}: not a gpt2-gen benchmark file: {e}")
    return data


def source_label(data):
    return f"{data['tool']} {data['dtype']}"


def per_position_ms(mode):
    """Median latency at each generated position over the runs (position 0 is the prefill)."""
    runs = [r["token_ms"] for r in mode["runs"]]
    n = min(len(r) for r in runs)
    return np.median(np.array([r[:n] for r in runs]), axis=0)


def median_run(mode):
    """The run whose total time is the median of the mode's runs."""
    runs = sorted(mode["runs"], key=lambda r: r["total_s"])
    return runs[(len(runs) - 1) // 2]


def plot(files, out_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_cum, ax_mem) = plt.subplots(1, 3, figsize=(17, 5.2),
                                                 gridspec_kw={"width_ratios": [1.25, 1.0, 0.85]})
    styles = {True: "-", False: "--"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, data in enumerate(files):
        color_of = {True: colors[(2 * i) % len(colors)], False: colors[(2 * i + 1) % len(colors)]}
        for mode in data["modes"]:
            ms = per_position_ms(mode)
            cache = mode["kv_cache"]
            label = f"{source_label(data)}, {'with' if cache else 'without'} KV cache"
            positions = np.arange(1, len(ms))
            ax_lat.plot(positions, ms[1:], styles[cache], color=color_of[cache], lw=1.2,
                        label=f"{label} (median {np.median(ms[1:]):.3g} ms)")
            run = median_run(mode)
            ax_cum.plot(np.arange(1, len(run["token_ms"]) + 1), np.cumsum(run["token_ms"]) / 1000.0,
                        styles[cache], color=color_of[cache], lw=1.5, label=f"{label}: {run['total_s']:.3f} s")

    prompt_tokens = len(files[0]["prompt_ids"])
    ax_lat.set_title("Time per generated token (median over runs)")
    ax_lat.set_xlabel(f"generated token index (after a {prompt_tokens}-token prompt)")
    ax_lat.set_ylabel("latency per token (ms)")
    ax_lat.set_ylim(bottom=0)
    ax_lat.grid(alpha=0.3)
    ax_lat.legend(fontsize=8)

    ax_cum.set_title("Cumulative time (median run)")
    ax_cum.set_xlabel("tokens generated")
    ax_cum.set_ylabel("cumulative time (s)")
    ax_cum.set_ylim(bottom=0)
    ax_cum.grid(alpha=0.3)
    ax_cum.legend(fontsize=8)

    labels, weights, kv, act = [], [], [], []
    for data in files:
        mode = data["modes"][0]
        labels.append(source_label(data))
        weights.append(mode.get("weight_bytes", 0) / 1e6)
        kv.append(mode.get("kv_cache_bytes", 0) / 1e6)
        act.append(mode.get("activation_bytes", 0) / 1e6)
    x = np.arange(len(files))
    ax_mem.bar(x, weights, 0.55, label="weights")
    ax_mem.bar(x, kv, 0.55, bottom=weights, label="K/V ring")
    ax_mem.bar(x, act, 0.55, bottom=np.add(weights, kv), label="activations")
    for xi, total in zip(x, np.add(np.add(weights, kv), act)):
        ax_mem.text(xi, total, f"{total:.0f} MB", ha="center", va="bottom", fontsize=8)
    ax_mem.set_xticks(x, labels, fontsize=8)
    ax_mem.set_title("Memory")
    ax_mem.set_ylabel("MB")
    ax_mem.legend(fontsize=8, loc="lower right")

    devices = sorted({f"{d['device']}: {d['device_name']}" for d in files})
    first = files[0]
    fig.suptitle(f"What the KV cache buys: GPT-2 {first['n_params'] / 1e6:.0f}M "
                 f"({os.path.basename(first['model'].rstrip('/'))}), {first['max_new_tokens']} new tokens, "
                 f"greedy, {first['runs']} runs per mode — {' / '.join(devices)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


def batch_curves(data, cache):
    """(batch sizes, entries) of one mode, in increasing batch size."""
    entries = sorted((e for e in data["entries"] if e["kv_cache"] == cache), key=lambda e: e["batch_size"])
    return [e["batch_size"] for e in entries], entries


def plot_batch(files, out_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_tps, ax_mem) = plt.subplots(1, 2, figsize=(15, 5.4))
    ax_peak = ax_mem.twinx()  # peak memory is weights plus everything: its own scale
    styles = {True: "-o", False: "--s"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, data in enumerate(files):
        color_of = {True: colors[(2 * i) % len(colors)], False: colors[(2 * i + 1) % len(colors)]}
        for cache in (True, False):
            sizes, entries = batch_curves(data, cache)
            label = f"{source_label(data)}, {'with' if cache else 'without'} KV cache"
            tps = [e["summary"]["decode_tokens_per_s_mean"] for e in entries]
            ax_tps.plot(sizes, tps, styles[cache], color=color_of[cache], lw=1.5, label=label)
            for b, t in zip(sizes, tps):
                ax_tps.annotate(f"{t:.0f}", (b, t), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
            held = [e["kv_held_bytes"] / 1e6 for e in entries]
            ax_mem.plot(sizes, held, styles[cache], color=color_of[cache], lw=1.5, label=f"{label}: K/V held")
            if cache:
                ax_mem.plot(sizes, [e["kv_ring_bytes"] / 1e6 for e in entries], ":", color=color_of[cache], lw=1.2,
                            label=f"{source_label(data)}: K/V ring allocated")
            if cache and any(e["peak_memory_bytes"] for e in entries):  # one peak per B, both modes
                ax_peak.plot(sizes, [e["peak_memory_bytes"] / 1e6 for e in entries], "-.", color=color_of[cache],
                             lw=0.9, alpha=0.7, label=f"{source_label(data)}: peak memory (both modes)")

    for ax in (ax_tps, ax_mem):
        ax.set_xscale("log", base=2)
        sizes = sorted({b for d in files for b in d["batch_sizes"]})
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.set_xlabel("batch size B (B requests decoded together)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_tps.set_title("Aggregate decode throughput")
    ax_tps.set_ylabel("decode tokens/s, all sequences")
    ax_tps.set_ylim(bottom=0)
    ax_mem.set_title("K/V memory (held at the end of generation) and peak memory")
    ax_mem.set_ylabel("K/V MB")
    ax_mem.set_ylim(bottom=0)
    ax_peak.set_ylabel("peak memory MB (dash-dot)")
    ax_peak.set_ylim(0, 1.15 * max([1.0] + [y for line in ax_peak.lines for y in line.get_ydata()]))
    if ax_peak.lines:
        ax_peak.legend(fontsize=8, loc="lower right")

    devices = sorted({f"{d['device']}: {d['device_name']}" for d in files})
    first = files[0]
    fig.suptitle(f"Batched generation: GPT-2 {first['n_params'] / 1e6:.0f}M "
                 f"({os.path.basename(first['model'].rstrip('/'))}), {len(first['prompt_ids'])}-token prompts, "
                 f"{first['max_new_tokens']} new tokens, greedy, {first['runs']} run{'s' if first['runs'] != 1 else ''} per point "
                 f"— {' / '.join(devices)}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="benchmark JSON files")
    ap.add_argument("-o", "--output", default="benchmark.png", help="PNG to write (default benchmark.png)")
    args = ap.parse_args()
    files = [load(p) for p in args.inputs]
    kinds = {benchmark_schema.schema_of(d) for d in files}
    if len(kinds) > 1:
        fail("cannot plot one-sequence and batched benchmark files together; plot each kind on its own")
    tmp = args.output + ".tmp.png"
    (plot_batch if kinds == {"batch"} else plot)(files, tmp)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
