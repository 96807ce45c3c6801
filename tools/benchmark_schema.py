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


# --- The batched benchmark: "gpt2-gen-batch-benchmark/1" ------------------------------------
# Written by `gpt2-gen --benchmark --parallel 1,2,4,... --json FILE` and `tools/bench_hf.py
# --batch`, read by tools/plot_benchmark.py. Batch size B runs B requests of the same prompt and
# length together (llama.cpp's llama-batched-bench), with the cache and without it:
#
#   {schema, tool, device, device_name, dtype, threads, model, n_params, prompt_ids[],
#    max_new_tokens, runs, kv_capacity, load_ms, tokenize_ms, batch_sizes[], tokens_identical,
#    entries: [{batch_size, name, kv_cache, requests, kv_ring_bytes, kv_held_bytes, weight_bytes,
#               peak_memory_bytes, peak_memory_scope ("batch_size" | "process"),
#               runs: [{wall_s, decode_s, tokens, decode_tokens, tokens_per_s, decode_tokens_per_s,
#                       decode_flops, decode_gflop_per_s, ttft_ms[B], token_ms[B * (n - 1)],
#                       generated_ids[n], requests_identical}],
#               summary: {tokens_per_s_mean, tokens_per_s_std, decode_tokens_per_s_mean,
#                         decode_tokens_per_s_std, decode_gflop_per_s_mean, token_ms_p50,
#                         token_ms_p99, ttft_ms_p50, ttft_ms_max}}],   one per (B, cache / no-cache)
#    gemm (optional; gpt2-gen on the CPU): {library, dtype, threads,
#          rates: [{batch_size, flops, best_ms, gflop_per_s, step_gflop_per_s, reached_pct}]}}
# tokens_per_s = tokens / wall_s; decode_tokens_per_s = decode_tokens / decode_s, decode_s running
# from the last request's first token to the end; ttft_ms from the batch's start.

BATCH_SCHEMA = "gpt2-gen-batch-benchmark/1"
BATCH_TOP = {"schema": str, "tool": str, "device": str, "device_name": str, "dtype": str, "threads": int,
             "model": str, "n_params": int, "prompt_ids": list, "max_new_tokens": int, "runs": int,
             "kv_capacity": int, "load_ms": NUMBER, "tokenize_ms": NUMBER, "batch_sizes": list,
             "tokens_identical": bool, "entries": list}
BATCH_ENTRY = {"batch_size": int, "name": str, "kv_cache": bool, "requests": int, "kv_ring_bytes": int,
               "kv_held_bytes": NUMBER, "weight_bytes": int, "peak_memory_bytes": int, "peak_memory_scope": str,
               "runs": list, "summary": dict}
BATCH_RUN = {"wall_s": NUMBER, "decode_s": NUMBER, "tokens": int, "decode_tokens": int, "tokens_per_s": NUMBER,
             "decode_tokens_per_s": NUMBER, "decode_flops": NUMBER, "decode_gflop_per_s": NUMBER, "ttft_ms": list,
             "token_ms": list, "generated_ids": list, "requests_identical": bool}
BATCH_SUMMARY = ["tokens_per_s_mean", "tokens_per_s_std", "decode_tokens_per_s_mean", "decode_tokens_per_s_std",
                 "decode_gflop_per_s_mean", "token_ms_p50", "token_ms_p99", "ttft_ms_p50", "ttft_ms_max"]
GEMM = {"library": str, "dtype": str, "threads": int, "rates": list}
GEMM_RATE = {"batch_size": int, "flops": NUMBER, "best_ms": NUMBER, "gflop_per_s": NUMBER,
             "step_gflop_per_s": NUMBER, "reached_pct": NUMBER}


def _nonnegative_numbers(values, where):
    if not all(isinstance(x, NUMBER) and not isinstance(x, bool) and math.isfinite(x) and x >= 0 for x in values):
        raise ValueError(f"{where}: non-numeric or negative entry")


def _validate_batch_run(run, batch_size, new_tokens, where):
    _check_fields(run, BATCH_RUN, where)
    counts = {"ttft_ms": batch_size, "token_ms": batch_size * (new_tokens - 1), "generated_ids": new_tokens}
    for key, expected in counts.items():
        if len(run[key]) != expected:
            raise ValueError(f"{where}.{key}: {len(run[key])} entries, expected {expected}")
    _nonnegative_numbers(run["ttft_ms"], f"{where}.ttft_ms")
    _nonnegative_numbers(run["token_ms"], f"{where}.token_ms")
    if run["tokens"] != batch_size * new_tokens:
        raise ValueError(f"{where}.tokens: {run['tokens']}, expected batch_size * max_new_tokens")


def validate_batch(data):
    """Raises ValueError naming the first field that breaks the batched schema."""
    _check_fields(data, BATCH_TOP, "$")
    if data["schema"] != BATCH_SCHEMA:
        raise ValueError(f"$.schema: {data['schema']!r} is not {BATCH_SCHEMA!r}")
    sizes = data["batch_sizes"]
    if not sizes or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in sizes):
        raise ValueError("$.batch_sizes: expected a non-empty list of batch sizes >= 1")
    seen = []
    for i, entry in enumerate(data["entries"]):
        where = f"$.entries[{i}]"
        _check_fields(entry, BATCH_ENTRY, where)
        if entry["requests"] != entry["batch_size"]:
            raise ValueError(f"{where}.requests: {entry['requests']}, expected batch_size {entry['batch_size']}")
        if len(entry["runs"]) != data["runs"]:
            raise ValueError(f"{where}.runs: {len(entry['runs'])} runs, header says {data['runs']}")
        for j, run in enumerate(entry["runs"]):
            _validate_batch_run(run, entry["batch_size"], data["max_new_tokens"], f"{where}.runs[{j}]")
        for key in BATCH_SUMMARY:
            if not isinstance(entry["summary"].get(key), NUMBER):
                raise ValueError(f"{where}.summary.{key}: missing or not a number")
        seen.append((entry["batch_size"], entry["kv_cache"]))
    expected = sorted((b, c) for b in sizes for c in (True, False))
    if sorted(seen) != expected:
        raise ValueError(f"$.entries: expected one entry per batch size and mode, {expected}; got {sorted(seen)}")
    if "gemm" in data:
        _check_fields(data["gemm"], GEMM, "$.gemm")
        for i, rate in enumerate(data["gemm"]["rates"]):
            _check_fields(rate, GEMM_RATE, f"$.gemm.rates[{i}]")


def schema_of(data):
    """"benchmark" or "batch" from a document's schema field, else ValueError."""
    kind = data.get("schema") if isinstance(data, dict) else None
    if kind == SCHEMA:
        return "benchmark"
    if kind == BATCH_SCHEMA:
        return "batch"
    raise ValueError(f"$.schema: {kind!r} is neither {SCHEMA!r} nor {BATCH_SCHEMA!r}")


def nearest_rank(sorted_values, q):
    if not sorted_values:
        return 0.0
    rank = math.ceil(q / 100 * len(sorted_values))
    return sorted_values[min(len(sorted_values) - 1, max(rank, 1) - 1)]


def batch_summary(runs):
    """An entry's summary from its runs, by the definitions gpt2-gen documents: means and
    population std over runs; nearest-rank percentiles of the latencies (and first-token
    times) of every request of every run, pooled."""
    latencies = sorted(x for r in runs for x in r["token_ms"])
    ttft = sorted(x for r in runs for x in r["ttft_ms"])
    mean = lambda v: statistics.fmean(v) if v else 0.0
    std = lambda v: statistics.pstdev(v) if v else 0.0
    return {"tokens_per_s_mean": mean([r["tokens_per_s"] for r in runs]),
            "tokens_per_s_std": std([r["tokens_per_s"] for r in runs]),
            "decode_tokens_per_s_mean": mean([r["decode_tokens_per_s"] for r in runs]),
            "decode_tokens_per_s_std": std([r["decode_tokens_per_s"] for r in runs]),
            "decode_gflop_per_s_mean": mean([r["decode_gflop_per_s"] for r in runs]),
            "token_ms_p50": nearest_rank(latencies, 50), "token_ms_p99": nearest_rank(latencies, 99),
            "ttft_ms_p50": nearest_rank(ttft, 50), "ttft_ms_max": ttft[-1] if ttft else 0.0}


def batch_run_record(wall_s, first_token_s, step_ms, batch_size, generated_ids, decode_flops=0.0):
    """One batched run where every step computes a token for all B rows together (transformers'
    generate on a padded batch): step_ms[0] is the prefill (every request's first token),
    step_ms[1:] the later steps, each one latency for every row."""
    tokens = batch_size * len(step_ms)
    decode_tokens = tokens - batch_size
    decode_s = max(wall_s - first_token_s, 0.0)
    return {"wall_s": wall_s, "decode_s": decode_s, "tokens": tokens, "decode_tokens": decode_tokens,
            "tokens_per_s": tokens / wall_s if wall_s > 0 else 0.0,
            "decode_tokens_per_s": decode_tokens / decode_s if decode_s > 0 else 0.0,
            "decode_flops": decode_flops, "decode_gflop_per_s": decode_flops / decode_s / 1e9 if decode_s > 0 else 0.0,
            "ttft_ms": [first_token_s * 1000] * batch_size,
            "token_ms": [ms for ms in step_ms[1:] for _ in range(batch_size)],
            "generated_ids": list(generated_ids[0]),
            "requests_identical": all(list(g) == list(generated_ids[0]) for g in generated_ids)}


def decode_flops(config, prompt_tokens, new_tokens, use_cache):
    """One request's decode FLOPs (every forward after the prompt's) by gpt2-gen's counting
    convention (src/app/README.md, "What the cache saves"; step_cost() in src/app/explain.cpp):
    linear 2 t (4C^2 + 2CH) n_layer, attention 4 C S n_layer with S = t pos + t (t + 1) / 2,
    LM head 2 C V (one row). With the cache forward i computes t = 1 token at pos = P + i - 1;
    without it t = P + i tokens from pos 0."""
    C, L, V = config["n_embd"], config["n_layer"], config["vocab_size"]
    H = config.get("n_inner") or 4 * C
    total = 0.0
    for i in range(1, new_tokens):
        t, pos = (1, prompt_tokens + i - 1) if use_cache else (prompt_tokens + i, 0)
        pairs = t * pos + t * (t + 1) / 2
        total += 2 * t * (4 * C * C + 2 * C * H) * L + 4 * C * pairs * L + 2 * C * V
    return total
