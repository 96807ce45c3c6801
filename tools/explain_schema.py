"""The --explain JSON schema "gpt2-gen-explain/1": the `explain` object of `gpt2-gen --explain --json`
(at the top level of a run's object, and in each mode of a `--benchmark --explain` document).
Read by tools/plot_explain.py and the tests; tools/README.md documents the same fields.

  explain: {schema, model: {n_layer, n_head, n_embd, n_inner, head_dim, vocab_size, weight_bytes,
                            kv_format, kv_row_bytes, kv_bytes_per_element, kv_ring_bytes},
            mode ("cache" | "no-cache"), measured (true), per_step: [STEP], totals: TOTALS,
            other_mode: {mode, measured, per_step: [STEP], totals: TOTALS},
            comparison: {flops_ratio, bytes_ratio, time_ratio}}      (ratios: no-cache / cache)
  STEP:   {step, tokens_computed, position, context, new_tokens,
           shapes: {q: [t, head_dim], k_t: [head_dim, L], scores: [t, L], heads, layers},
           flops: {linear, attention, lm_head, total}, bytes: {weights, kv_read, kv_write, total},
           kv_cache_bytes, and when measured: ms, gflop_per_s, gb_per_s}
  TOTALS: {steps, tokens_computed, kv_cache_bytes_peak, flops, bytes, and when measured: ms,
           gflop_per_s, gb_per_s}
The other mode of a single run is the arithmetic alone (measured false: no times); time_ratio is
null unless both modes were timed (--benchmark).
"""
import math

SCHEMA = "gpt2-gen-explain/1"
NUMBER = (int, float)
MODEL = ["n_layer", "n_head", "n_embd", "n_inner", "head_dim", "vocab_size", "weight_bytes",
         "kv_row_bytes", "kv_bytes_per_element", "kv_ring_bytes"]
KV_FORMATS = ["fp32", "fp16", "bf16", "int8"]
STEP_INTS = ["step", "tokens_computed", "position", "context", "new_tokens"]
FLOPS = ["linear", "attention", "lm_head", "total"]
BYTES = ["weights", "kv_read", "kv_write", "total"]
TIMES = ["ms", "gflop_per_s", "gb_per_s"]


def _number(obj, key, where):
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, NUMBER) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}.{key}: missing, not a number or negative")
    return value


def _numbers(obj, keys, where):
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object")
    for key in keys:
        _number(obj, key, where)


def _costs(obj, where, measured):
    _numbers(obj.get("flops"), FLOPS, where + ".flops")
    _numbers(obj.get("bytes"), BYTES, where + ".bytes")
    if measured:
        _numbers(obj, TIMES, where)


def _step(step, where, model, measured):
    _numbers(step, STEP_INTS + ["kv_cache_bytes"], where)
    if any(not isinstance(step[k], int) for k in STEP_INTS):
        raise ValueError(f"{where}: {', '.join(STEP_INTS)} must be integers")
    t, L, hd = step["tokens_computed"], step["context"], model["head_dim"]
    if t < 1 or L != step["position"] + t:
        raise ValueError(f"{where}: context must be position + tokens_computed, with tokens_computed >= 1")
    shapes = step.get("shapes")
    expected = {"q": [t, hd], "k_t": [hd, L], "scores": [t, L], "heads": model["n_head"], "layers": model["n_layer"]}
    if shapes != expected:
        raise ValueError(f"{where}.shapes: {shapes} is not {expected}")
    _costs(step, where, measured)


def _mode(obj, where, model):
    if not isinstance(obj, dict) or obj.get("mode") not in ("cache", "no-cache"):
        raise ValueError(f"{where}.mode: expected \"cache\" or \"no-cache\"")
    if not isinstance(obj.get("measured"), bool):
        raise ValueError(f"{where}.measured: expected true or false")
    steps = obj.get("per_step")
    if not isinstance(steps, list):
        raise ValueError(f"{where}.per_step: expected an array")
    for i, step in enumerate(steps):
        _step(step, f"{where}.per_step[{i}]", model, obj["measured"])
        if step["step"] != i + 1:
            raise ValueError(f"{where}.per_step[{i}].step: {step['step']}, expected {i + 1}")
    totals = obj.get("totals")
    _numbers(totals, ["steps", "tokens_computed", "kv_cache_bytes_peak"], where + ".totals")
    if totals["steps"] != len(steps):
        raise ValueError(f"{where}.totals.steps: {totals['steps']}, but per_step has {len(steps)} entries")
    _costs(totals, where + ".totals", obj["measured"])


def validate(explain):
    """Raises ValueError naming the first field of an `explain` object that breaks the schema."""
    if not isinstance(explain, dict) or explain.get("schema") != SCHEMA:
        raise ValueError(f"explain.schema: expected {SCHEMA!r}")
    _numbers(explain.get("model"), MODEL, "explain.model")
    model = explain["model"]
    if model.get("kv_format") not in KV_FORMATS:
        raise ValueError(f"explain.model.kv_format: expected one of {KV_FORMATS}")
    if not explain.get("measured"):
        raise ValueError("explain.measured: the run's own mode is always measured")
    _mode(explain, "explain", model)
    _mode(explain.get("other_mode"), "explain.other_mode", model)
    if explain["other_mode"]["mode"] == explain["mode"]:
        raise ValueError("explain.other_mode.mode: must be the other mode")
    if len(explain["other_mode"]["per_step"]) != len(explain["per_step"]):
        raise ValueError("explain.other_mode.per_step: not one entry per step")
    comparison = explain.get("comparison")
    if not isinstance(comparison, dict):
        raise ValueError("explain.comparison: expected an object")
    for key in ("flops_ratio", "bytes_ratio", "time_ratio"):
        if key not in comparison:
            raise ValueError(f"explain.comparison.{key}: missing")
        if comparison[key] is not None:
            _number(comparison, key, "explain.comparison")


def explain_objects(document):
    """The explain objects of a run's --json (one) or of a --benchmark's JSON (one per mode)."""
    if "modes" in document:
        found = [m["explain"] for m in document["modes"] if "explain" in m]
    else:
        found = [document["explain"]] if "explain" in document else []
    if not found:
        raise ValueError("no \"explain\" object: run gpt2-gen with --explain --json")
    return found
