#!/usr/bin/env python3
"""Draw what the K/V cache saves from the --json of a `gpt2-gen --explain` run (one mode) or of a
`gpt2-gen --benchmark --explain` (both modes), as one PNG:

  top:    for steps 1-4, one head's Q (t x head_dim), K^T (head_dim x L) and scores (t x L) with the
          cache and without it, drawn to scale, one square per element: new cells, recomputed
          cells (computed in an earlier step too), keys read from the cache, masked cells;
  bottom: cumulative FLOPs and bytes per step, with the cache (linear) and without it (quadratic),
          with the measured cumulative time overlaid; and the K/V cache memory held per step.

A mode the run did not time (the other mode of a single run) comes from the same arithmetic as
gpt2-gen's (its `other_mode` block) and is labelled so. Schema: tools/explain_schema.py.

Usage: python3 tools/plot_explain.py EXPLAIN.json -o explain.png [--title TEXT]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import explain_schema  # noqa: E402
from tool_errors import fail, read_json  # noqa: E402

MASKED, NEW, RECOMPUTED, CACHED = 0, 1, 2, 3
COLORS = ["#ffffff", "#1f4e9c", "#f2a541", "#9fd89f"]
LABELS = {NEW: "computed new this step", RECOMPUTED: "recomputed (already computed in an earlier step)",
          CACHED: "read from the K/V cache", MASKED: "masked (key after the query)"}
MODE_COLOR = {"cache": "#1f4e9c", "no-cache": "#d9541e"}
MODE_NAME = {"cache": "with the cache", "no-cache": "without the cache"}
DRAWN_HEAD_DIM = 16  # head_dim (64 in GPT-2) is drawn this wide so that t and L stay readable


def load_modes(path):
    """{mode name: explain-mode dict with per_step/totals/measured}, both modes, from one file."""
    document = read_json(path, "--explain --json output")
    try:
        explains = explain_schema.explain_objects(document)
        for e in explains:
            explain_schema.validate(e)
    except (ValueError, KeyError, TypeError) as e:
        fail(f"{path}: not a gpt2-gen --explain --json file: {e}")
    modes = {}
    for e in explains:  # measured modes first, so a benchmark's timed mode wins over a prediction
        modes[e["mode"]] = e
    for e in explains:
        modes.setdefault(e["other_mode"]["mode"], e["other_mode"])
    return explains[0], modes


def matrices(step, head_dim):
    """Q, K^T and scores of one head as category arrays (rows x columns)."""
    t, pos, L = step["tokens_computed"], step["position"], step["context"]
    first_new = L - step["new_tokens"]
    kind = np.where(np.arange(L) >= first_new, NEW, RECOMPUTED)  # of the token at each position
    q = np.repeat(kind[pos:pos + t, None], head_dim, axis=1)
    kt = np.repeat(np.where(np.arange(L) < pos, CACHED, kind)[None, :], head_dim, axis=0)
    queries = np.arange(pos, pos + t)[:, None]
    scores = np.where(np.arange(L)[None, :] > queries, MASKED, kind[pos:pos + t, None].repeat(L, axis=1))
    return q, kt, scores


def draw_step(ax, step, head_dim, mode, measured):
    """Q x K^T = scores, side by side; t and L to scale, head_dim drawn DRAWN_HEAD_DIM cells wide."""
    from matplotlib.colors import ListedColormap
    cmap = ListedColormap(COLORS)
    drawn_hd = min(head_dim, DRAWN_HEAD_DIM)
    q, kt, scores = matrices(step, drawn_hd)
    real = {"Q": (step["tokens_computed"], head_dim), "K\u1d40": (head_dim, step["context"]),
            "scores": (step["tokens_computed"], step["context"])}
    gap, x, top = 4, 0, max(drawn_hd, scores.shape[0])
    for name, m in (("Q", q), ("K\u1d40", kt), ("scores", scores)):
        rows, cols = m.shape
        edges = "white" if max(rows, cols) <= 40 else "face"
        ax.pcolormesh(np.arange(cols + 1) + x, np.arange(rows + 1), m, cmap=cmap, vmin=0, vmax=3,
                      edgecolors=edges, linewidth=0.4)
        ax.plot([x, x + cols, x + cols, x, x], [0, 0, rows, rows, 0], color="black", lw=0.8)
        ax.text(x + cols / 2, -1, f"{name}\n{real[name][0]}\u00d7{real[name][1]}", ha="center", va="bottom",
                fontsize=8)
        if name != "scores":
            ax.text(x + cols + gap / 2, min(rows, 4) / 2, "\u00d7" if name == "Q" else "=", ha="center",
                    va="center", fontsize=12)
        x += cols + gap
    ax.set_xlim(-1, x - gap + 1)
    ax.set_ylim(top + 1, -7)
    ax.set_aspect("equal")
    ax.axis("off")
    when = f"measured {step['ms']:.2f} ms" if measured else "arithmetic only"
    ax.set_title(f"step {step['step']} {MODE_NAME[mode]} ({when})\n"
                 f"t = {step['tokens_computed']} computed, L = {step['context']}", fontsize=9)


def cumulative(mode, *keys):
    values = [s for s in mode["per_step"]]
    for k in keys:
        values = [v[k] for v in values]
    return np.cumsum(np.array(values, dtype=float))


def draw_cumulative(ax, modes, keys, unit, scale, title):
    """Cumulative analytic cost (solid) and, on a twin axis, the measured cumulative time (dashed),
    scaled so the first timed mode's time ends where its cost ends."""
    tax = ax.twinx()
    timed = [m for m in modes.values() if m["measured"]]
    ref = timed[0] if timed else None
    for name, mode in modes.items():
        steps = np.arange(1, len(mode["per_step"]) + 1)
        label = MODE_NAME[name] + ("" if mode["measured"] else " (arithmetic; not run)")
        ax.plot(steps, cumulative(mode, *keys) / scale, color=MODE_COLOR[name], lw=2, label=label)
        if mode["measured"]:
            tax.plot(steps, cumulative(mode, "ms") / 1000, color=MODE_COLOR[name], lw=1.2, ls="--",
                     label=f"{MODE_NAME[name]}: measured time")
    ax.set_ylim(bottom=0)
    if ref is not None:
        ratio = ref["totals"]["ms"] / 1000 / (cumulative(ref, *keys)[-1] / scale)
        longest = max(m["totals"]["ms"] for m in timed) / 1000
        top = max(ax.get_ylim()[1] * ratio, longest * 1.05)  # never clip a measured curve
        ax.set_ylim(0, top / ratio)
        tax.set_ylim(0, top)
        tax.set_ylabel("measured cumulative time, s (dashed)")
    ax.set_xlabel("step (generated token)")
    ax.set_ylabel(f"cumulative {unit} (solid)")
    ax.set_title(title, fontsize=9)
    lines = ax.get_legend_handles_labels()
    tlines = tax.get_legend_handles_labels()
    ax.legend(lines[0] + tlines[0], lines[1] + tlines[1], fontsize=7, loc="upper left")


def draw_memory(ax, modes, ring_bytes):
    for name, mode in modes.items():
        steps = np.arange(1, len(mode["per_step"]) + 1)
        held = np.array([s["kv_cache_bytes"] for s in mode["per_step"]], dtype=float) / 1e6
        ax.plot(steps, held, color=MODE_COLOR[name], lw=2, label=f"{MODE_NAME[name]}: K/V kept between steps")
    peak = max(max(s["kv_cache_bytes"] for s in m["per_step"]) for m in modes.values()) / 1e6
    if ring_bytes / 1e6 <= peak * 1.5:
        ax.axhline(ring_bytes / 1e6, color="gray", ls=":", lw=1, label="K/V ring as allocated (both modes)")
    else:  # a ring far larger than what this run filled would flatten the curve
        ax.plot([], [], " ", label=f"K/V ring as allocated: {ring_bytes / 1e6:.1f} MB (both modes; off the scale)")
    ax.set_ylim(0, max(peak, ring_bytes / 1e6 if ring_bytes / 1e6 <= peak * 1.5 else 0) * 1.15 or 1)
    ax.set_xlabel("step (generated token)")
    ax.set_ylabel("MB")
    ax.set_title("what the cache costs: the K/V memory it holds", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", help="the --json of gpt2-gen --explain (or --benchmark --explain)")
    ap.add_argument("-o", "--out", required=True, help="PNG to write")
    ap.add_argument("--title", default="", help="a line above the figure (model, machine, date)")
    a = ap.parse_args()
    first, modes = load_modes(a.json)
    modes = {k: modes[k] for k in ("cache", "no-cache")}
    model = first["model"]

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    n_shown = min(4, len(modes["cache"]["per_step"]))
    fig = plt.figure(figsize=(16, 11))
    top = fig.add_gridspec(2, 4, top=0.86, bottom=0.40, left=0.02, right=0.98, wspace=0.06, hspace=0.3)
    for row, name in enumerate(("cache", "no-cache")):
        for i in range(n_shown):
            draw_step(fig.add_subplot(top[row, i]), modes[name]["per_step"][i], model["head_dim"], name,
                      modes[name]["measured"])
    handles = [Patch(fc=COLORS[k], ec="black", label=LABELS[k]) for k in (NEW, RECOMPUTED, CACHED, MASKED)]
    fig.legend(handles=handles, loc="upper center", ncol=4, fontsize=9, bbox_to_anchor=(0.5, 0.925), frameon=False)
    bottom = fig.add_gridspec(1, 3, top=0.33, bottom=0.06, left=0.05, right=0.97, wspace=0.42)
    draw_cumulative(fig.add_subplot(bottom[0]), modes, ("flops", "total"), "GFLOP", 1e9,
                    "FLOPs: quadratic without the cache, linear with it")
    draw_cumulative(fig.add_subplot(bottom[1]), modes, ("bytes", "total"), "GB", 1e9,
                    "bytes moved: weights + K/V read and written")
    draw_memory(fig.add_subplot(bottom[2]), modes, model["kv_ring_bytes"])
    heading = (f"What the K/V cache saves: one head of {model['n_head']} in each of {model['n_layer']} layers, "
               f"t and L to scale (head_dim {model['head_dim']} drawn {min(model['head_dim'], DRAWN_HEAD_DIM)} "
               f"cells wide)")
    fig.suptitle(heading + (f"\n{a.title}" if a.title else ""), fontsize=11)
    fig.savefig(a.out, dpi=80)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
