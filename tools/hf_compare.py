#!/usr/bin/env python3
"""Compare gpt2-gen with Hugging Face transformers on the same prompt ids: the logits at the last
position and the greedy continuation. Used by tools/gpu_check.sh on a GPU machine.

Subcommands:
  hf        Build a seeded, randomly initialised GPT-2 124M with transformers
            (GPT2LMHeadModel(GPT2Config()), save_pretrained -> safetensors), convert it with
            tools/convert_weights.py --from for each --dtypes, compute the reference in float64
            with transformers (last-position logits and the greedy path with its top-2 margins),
            run gpt2-dump-logits on each converted model and compare. Needs torch + transformers.
  golden    The same comparison against the tiny golden (../shared/golden/tiny-gpt2:
            reference_logits.safetensors seq0, reference.json greedy) instead of transformers:
            no torch needed, so the plumbing can be checked on any machine (--device cpu).

Comparison rules (per gpt2-gen dtype):
  logits:  max|gen - ref| / max|ref| <= tolerance (fp32 1e-3, fp16 2e-2, bf16 5e-2); NaN fails.
  greedy:  tokens must be equal at every step up to the first step where the reference's top-2
           margin is below 4x the measured max|gen - ref| (flips are possible only there); the
           report says how many steps that covered.
Writes one JSON report (--report) and prints one line per dtype; exits 1 if any check fails.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_format  # noqa: E402 - the tensor list of tools/convert_weights.py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2}


def log(msg):
    print(f"hf_compare: {msg}", file=sys.stderr, flush=True)


# ---- gpt2-gen side ----------------------------------------------------------------------------

def run_dump(dump_bin, model_dir, ids, device, dtype, steps, workdir, timeout=300):
    out = os.path.join(workdir, f"logits-{os.path.basename(model_dir)}-{device}-{dtype}.f32")
    cmd = [dump_bin, "-m", model_dir, "--ids", ",".join(map(str, ids)), "--device", device, "--dtype", dtype,
           "--out", out, "--steps", str(steps)]
    # tools/gpu_check.sh runs Python with its own LD_LIBRARY_PATH (torch's CUDA wheels) and gives the
    # binary's (the bundle's libraries, CUDA 13's cuBLAS) here.
    env = None
    if os.environ.get("GPT2_BIN_LD_LIBRARY_PATH") is not None:
        env = dict(os.environ, LD_LIBRARY_PATH=os.environ["GPT2_BIN_LD_LIBRARY_PATH"])
    t0 = time.time()
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    info = json.loads(r.stdout.strip().splitlines()[-1])
    info["logits"] = np.fromfile(out, dtype="<f4")
    info["wall_s"] = time.time() - t0
    return info


def compare(name, gen, ref_logits, ref_greedy, ref_margins, tol):
    """gen: run_dump's result. Returns a JSON-able dict with ok."""
    g = gen["logits"].astype(np.float64)
    r = np.asarray(ref_logits, dtype=np.float64)
    res = {"name": name, "device": gen.get("device"), "device_name": gen.get("device_name"),
           "dtype": gen.get("dtype"), "tolerance": tol}
    if g.shape != r.shape:
        res.update(ok=False, error=f"logits shape {g.shape} vs reference {r.shape}")
        return res
    nan = bool(np.isnan(g).any())
    max_abs = float(np.max(np.abs(r)))
    max_diff = float(np.max(np.abs(g - r))) if not nan else float("inf")
    rel = max_diff / max_abs if max_abs > 0 else max_diff
    res.update(max_abs_ref=max_abs, max_abs_diff=max_diff, rel_error=rel, nan=nan,
               argmax_gen=int(np.argmax(g)), argmax_ref=int(np.argmax(r)))
    floor = max(4.0 * max_diff, 1e-6)
    gen_tokens = list(gen.get("greedy", []))
    compared, mismatch_at = 0, None
    for j, (a, b) in enumerate(zip(gen_tokens, ref_greedy)):
        if ref_margins[j] < floor:
            break
        compared += 1
        if a != b:
            mismatch_at = j
            break
    res.update(greedy_steps=len(ref_greedy), greedy_compared=compared, greedy_margin_floor=floor,
               greedy_mismatch_at=mismatch_at, greedy_gen=gen_tokens, greedy_ref=list(ref_greedy),
               min_ref_margin=float(min(ref_margins)) if len(ref_margins) else None)
    res["ok"] = (not nan) and rel <= tol and mismatch_at is None
    return res


def print_result(res):
    if "error" in res:
        line = f"{res['name']}: FAIL {res['error']}"
    else:
        line = (f"{res['name']}: {'ok' if res['ok'] else 'FAIL'} logits max|d|/max|ref| {res['rel_error']:.2e} "
                f"(tol {res['tolerance']:.0e}); greedy {res['greedy_compared']}/{res['greedy_steps']} steps compared "
                f"(margin floor {res['greedy_margin_floor']:.2e})"
                + ("" if res["greedy_mismatch_at"] is None else f", MISMATCH at step {res['greedy_mismatch_at']}"))
    print(line, flush=True)


# ---- transformers reference -------------------------------------------------------------------

def build_hf_model(out_dir, seed):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config()).eval()
    model.save_pretrained(out_dir)
    if not os.path.exists(os.path.join(out_dir, "model.safetensors")):
        model.save_pretrained(out_dir, safe_serialization=True)
    return model


def hf_reference(model, ids, steps):
    """float64 last-position logits of `ids` and the float64 greedy path with top-2 margins.

    Each step re-runs the whole sequence without a cache: the reference stays independent of
    any KV cache, and of transformers' cache API, which changes between versions."""
    import torch
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    m = model.to(device=dev, dtype=torch.float64)
    seq = list(ids)
    greedy, margins, first = [], [], None
    with torch.no_grad():
        for _ in range(max(steps, 1)):
            logits = m(input_ids=torch.tensor([seq], device=dev), use_cache=False).logits[0, -1]
            if first is None:
                first = logits.detach().cpu().numpy().copy()
            if len(greedy) == steps:
                break
            top = torch.topk(logits, 2)
            margins.append(float(top.values[0] - top.values[1]))
            nxt = int(torch.argmax(logits))  # lowest id on ties, like gpt2-gen
            greedy.append(nxt)
            seq.append(nxt)
    return first, greedy, margins


def convert(converter, src, tokenizer, dtype, out):
    cmd = [sys.executable, converter, "--from", src, "--tokenizer", tokenizer, "--dtype", dtype, "--out", out]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-2000:]}")


def cmd_hf(a):
    os.makedirs(a.workdir, exist_ok=True)
    ids = [int(x) for x in a.ids.split(",")]
    report = {"reference": "transformers float64", "seed": a.seed, "prompt_ids": ids, "results": []}
    t0 = time.time()
    hf_dir = os.path.join(a.workdir, "hf-gpt2-random")
    model = build_hf_model(hf_dir, a.seed)
    report["build_s"] = time.time() - t0
    log(f"built GPT-2 124M (seed {a.seed}) in {report['build_s']:.1f} s")
    t0 = time.time()
    ref, greedy, margins = hf_reference(model, ids, a.steps)
    report["reference_s"] = time.time() - t0
    report.update(ref_greedy=greedy, ref_margins=margins)
    log(f"reference in {report['reference_s']:.1f} s; top-2 margins min {min(margins):.3g}")

    def check(dtype):
        out = os.path.join(a.workdir, f"gpt2-random-{dtype}")
        t0 = time.time()
        convert(a.converter, hf_dir, a.tokenizer, dtype, out)
        log(f"converted to {out} in {time.time() - t0:.1f} s")
        gen = run_dump(a.dump, out, ids, a.device, dtype, a.steps, a.workdir)
        return compare(f"gpt2-124M-random {dtype} vs HF fp64", gen, ref, greedy, margins, TOLERANCE[dtype])

    return run_checks(a, report, "gpt2-124M-random", check)


def run_checks(a, report, label, check):
    """Runs check(dtype) for each of --dtypes, an exception counting as that dtype's failure;
    prints each result, writes the report, returns the exit status."""
    ok = True
    for dtype in a.dtypes.split(","):
        try:
            res = check(dtype)
        except Exception as e:  # noqa: BLE001 - reported, counted as a failure
            res = {"name": f"{label} {dtype}", "ok": False, "error": str(e)}
        print_result(res)
        ok &= bool(res["ok"])
        report["results"].append(res)
    report["ok"] = ok
    write_report(a.report, report)
    return 0 if ok else 1


# ---- tiny golden reference (no torch) -----------------------------------------------------------

def cmd_golden(a):
    from safetensors.numpy import load_file
    ref_json = json.load(open(os.path.join(a.golden, "reference.json")))
    logits = load_file(os.path.join(a.golden, "reference_logits.safetensors"))
    seq = ref_json["sequences"][0]
    ids = seq["input_ids"]
    greedy = next(g for g in ref_json["greedy"] if g["prompt"] == ids)
    # The golden stores only the path's minimum margin: use it for every step.
    margins = [greedy["min_top2_margin"]] * len(greedy["new_tokens"])
    steps = min(a.steps, len(greedy["new_tokens"]))
    os.makedirs(a.workdir, exist_ok=True)
    report = {"reference": "tiny golden (transformers float64)", "prompt_ids": ids, "results": []}

    def check(dtype):
        gen = run_dump(a.dump, a.model, ids, a.device, dtype, steps, a.workdir)
        return compare(f"tiny {os.path.basename(a.model)} {a.device} {dtype} vs golden", gen,
                       logits[seq["name"] + "_logits_last"], greedy["new_tokens"][:steps], margins[:steps],
                       TOLERANCE[dtype])

    return run_checks(a, report, "tiny", check)


def write_report(path, report):
    if not path:
        return
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if k != "logits"}
        if isinstance(o, list):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        return o
    with open(path, "w") as f:
        json.dump(clean(report), f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dump", default=os.path.join(ROOT, "build", "gpt2-dump-logits"), help="gpt2-dump-logits binary")
    common.add_argument("--device", default="cuda")
    common.add_argument("--dtypes", default="fp32,fp16")
    common.add_argument("--steps", type=int, default=32, help="greedy steps to compare")
    common.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "gpt2-hf-compare"))
    common.add_argument("--report", help="write the JSON report here")
    h = sub.add_parser("hf", parents=[common])
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--ids", default="2061,318,509,53,40918,30")
    h.add_argument("--tokenizer", required=True)
    h.add_argument("--converter", default=os.path.join(HERE, "convert_weights.py"))
    g = sub.add_parser("golden", parents=[common])
    g.add_argument("--golden", required=True, help="the tiny golden directory")
    g.add_argument("--model", required=True, help="the tiny golden converted by tools/convert_weights.py")
    a = ap.parse_args()
    return {"hf": cmd_hf, "golden": cmd_golden}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
