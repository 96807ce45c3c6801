#!/usr/bin/env python3
"""Plot gpt2-gen benchmark JSON files (schema gpt2-gen-benchmark/1, written by
`gpt2-gen --benchmark --json FILE` or tools/bench_hf.py) as one PNG:

  1. per-token decode latency against the token's position, cache and no-cache
     (the median over runs at each position; no-cache grows with the sequence),
  2. cumulative generation time against tokens generated,
  3. memory: weights, K/V ring and activations per file.

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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="benchmark JSON files")
    ap.add_argument("-o", "--output", default="benchmark.png", help="PNG to write (default benchmark.png)")
    args = ap.parse_args()
    files = [load(p) for p in args.inputs]
    tmp = args.output + ".tmp.png"
    plot(files, tmp)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
