"""The benchmark JSON schema "gpt2-gen-benchmark/1": written by `gpt2-gen --benchmark --json FILE`
and tools/bench_hf.py, read by tools/plot_benchmark.py. One definition, used by all three
Python tools and by the tests (tools/README.md documents the same fields).

  {schema, tool, device, device_name, dtype, model, n_params, prompt_ids[], max_new_tokens,
   runs, load_ms, tokenize_ms, speedup, tokens_identical,
   modes: [{name, kv_cache, kv_cache_bytes, weight_bytes, activation_bytes, peak_memory_bytes,
            runs: [{total_s, prefill_ms, decode_ms, decode_tokens_per_s, token_ms[], generated_ids[]}],
            summary: {total_s_mean, total_s_std, prefill_ms_mean, prefill_ms_std,
                      decode_tokens_per_s_mean, decode_tokens_per_s_std, p50_ms, p90_ms, p99_ms,
                      first_10pct_ms, last_10pct_ms}}],
   memory_bandwidth (optional; gpt2-gen on the CPU): {read_gb_per_s, threads, buffer_bytes,
                     decode_bytes_per_token, floor_tokens_per_s, floor_reached_pct}}
floor_tokens_per_s = read_gb_per_s * 1e9 / decode_bytes_per_token, and floor_reached_pct is the
cache mode's decode_tokens_per_s_mean as a percentage of it.
"""
import math
import statistics

SCHEMA = "gpt2-gen-benchmark/1"

NUMBER = (int, float)
TOP = {"schema": str, "tool": str, "device": str, "device_name": str, "dtype": str, "model": str,
       "n_params": int, "prompt_ids": list, "max_new_tokens": int, "runs": int, "load_ms": NUMBER,
       "tokenize_ms": NUMBER, "modes": list}
MODE = {"name": str, "kv_cache": bool, "kv_cache_bytes": int, "weight_bytes": int, "activation_bytes": int,
        "peak_memory_bytes": int, "runs": list, "summary": dict}
RUN = {"total_s": NUMBER, "prefill_ms": NUMBER, "decode_ms": NUMBER, "decode_tokens_per_s": NUMBER,
       "token_ms": list, "generated_ids": list}
BANDWIDTH = {"read_gb_per_s": NUMBER, "threads": int, "buffer_bytes": int, "decode_bytes_per_token": NUMBER,
             "floor_tokens_per_s": NUMBER, "floor_reached_pct": NUMBER}
SUMMARY = ["total_s_mean", "total_s_std", "prefill_ms_mean", "prefill_ms_std", "decode_tokens_per_s_mean",
           "decode_tokens_per_s_std", "p50_ms", "p90_ms", "p99_ms", "first_10pct_ms", "last_10pct_ms"]


def _check_fields(obj, fields, where):
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object")
    for key, kind in fields.items():
        if key not in obj:
            raise ValueError(f"{where}: missing \"{key}\"")
        if kind is int and isinstance(obj[key], bool) or not isinstance(obj[key], kind):
            raise ValueError(f"{where}.{key}: wrong type {type(obj[key]).__name__}")


def validate(data):
    """Raises ValueError naming the first field that breaks the schema."""
    _check_fields(data, TOP, "$")
    if data["schema"] != SCHEMA:
        raise ValueError(f"$.schema: {data['schema']!r} is not {SCHEMA!r}")
    if not data["modes"]:
        raise ValueError("$.modes: empty")
    for i, mode in enumerate(data["modes"]):
        where = f"$.modes[{i}]"
        _check_fields(mode, MODE, where)
        if len(mode["runs"]) != data["runs"]:
            raise ValueError(f"{where}.runs: {len(mode['runs'])} runs, header says {data['runs']}")
        for j, run in enumerate(mode["runs"]):
            _check_fields(run, RUN, f"{where}.runs[{j}]")
            for key in ("token_ms", "generated_ids"):
                if len(run[key]) != data["max_new_tokens"]:
                    raise ValueError(f"{where}.runs[{j}].{key}: {len(run[key])} entries, "
                                     f"expected max_new_tokens = {data['max_new_tokens']}")
            if not all(isinstance(x, NUMBER) and math.isfinite(x) and x >= 0 for x in run["token_ms"]):
                raise ValueError(f"{where}.runs[{j}].token_ms: non-numeric or negative entry")
        for key in SUMMARY:
            if not isinstance(mode["summary"].get(key), NUMBER):
                raise ValueError(f"{where}.summary.{key}: missing or not a number")
    if "memory_bandwidth" in data:
        _check_fields(data["memory_bandwidth"], BANDWIDTH, "$.memory_bandwidth")


def summarize(runs):
    """The summary block from a mode's runs, by the same definitions gpt2-gen uses: population
    std, nearest-rank percentiles of decode-token latencies pooled over runs, and the mean
    latency of the first and last tenth of decode tokens."""
    totals = [r["total_s"] for r in runs]
    latencies = sorted(x for r in runs for x in r["token_ms"][1:])

    def pct(q):
        if not latencies:
            return 0.0
        rank = math.ceil(q / 100 * len(latencies))
        return latencies[min(len(latencies) - 1, max(rank, 1) - 1)]

    firsts, lasts = [], []
    for r in runs:
        decode = r["token_ms"][1:]
        if decode:
            tenth = max(1, len(decode) // 10)
            firsts.append(statistics.fmean(decode[:tenth]))
            lasts.append(statistics.fmean(decode[-tenth:]))
    mean = lambda v: statistics.fmean(v) if v else 0.0
    std = lambda v: statistics.pstdev(v) if v else 0.0
    return {"total_s_mean": mean(totals), "total_s_std": std(totals),
            "prefill_ms_mean": mean([r["prefill_ms"] for r in runs]),
            "prefill_ms_std": std([r["prefill_ms"] for r in runs]),
            "decode_tokens_per_s_mean": mean([r["decode_tokens_per_s"] for r in runs]),
            "decode_tokens_per_s_std": std([r["decode_tokens_per_s"] for r in runs]),
            "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99),
            "first_10pct_ms": mean(firsts), "last_10pct_ms": mean(lasts)}


def run_record(token_ms, generated_ids):
    """One run's record from its per-token times (token_ms[0] = the prefill)."""
    decode_ms = sum(token_ms[1:])
    return {"total_s": sum(token_ms) / 1000, "prefill_ms": token_ms[0], "decode_ms": decode_ms,
            "decode_tokens_per_s": (len(token_ms) - 1) / (decode_ms / 1000) if decode_ms > 0 else 0.0,
            "token_ms": list(token_ms), "generated_ids": list(generated_ids)}


def result(tool, device, device_name, dtype, model, n_params, prompt_ids, max_new_tokens, modes,
           load_ms=0.0, tokenize_ms=0.0):
    """The whole document from modes = [{name, kv_cache, *_bytes, runs}] (summaries added here)."""
    for m in modes:
        m["summary"] = summarize(m["runs"])
    by_name = {m["name"]: m for m in modes}
    both = "cache" in by_name and "no-cache" in by_name
    return {"schema": SCHEMA, "tool": tool, "device": device, "device_name": device_name, "dtype": dtype,
            "model": model, "n_params": n_params, "prompt_ids": list(prompt_ids),
            "max_new_tokens": max_new_tokens, "runs": len(modes[0]["runs"]), "load_ms": load_ms,
            "tokenize_ms": tokenize_ms,
            "speedup": by_name["no-cache"]["summary"]["total_s_mean"] / by_name["cache"]["summary"]["total_s_mean"]
            if both else None,
            "tokens_identical": by_name["cache"]["runs"][0]["generated_ids"] == by_name["no-cache"]["runs"][0]["generated_ids"]
            if both else None,
            "modes": modes}
