"""The --profile JSON schema "gpt2-gen-profile/1": the `stats.profile` object of
`gpt2-gen --profile [K] --json` (src/engine/profile.h writes it; tools/README.md documents the
same fields).

  profile: {schema, device ("cpu" | "cuda"), steps, context,
            bandwidth: {gb_per_s, source ("cpu-read" | "device-copy")},
            rows: [{op, calls_per_token, us_per_call, bytes_per_call, gb_per_s, bandwidth_pct}],
            ops_us, step_us}
A row's gb_per_s is bytes_per_call / us_per_call / 1e3 and its bandwidth_pct that as a percentage
of bandwidth.gb_per_s; ops_us is the sum over rows of calls_per_token x us_per_call; step_us is one
step timed as a whole (no per-op timing). validate() checks those relations too.
"""
import math

SCHEMA = "gpt2-gen-profile/1"
NUMBER = (int, float)
ROW_NUMBERS = ["calls_per_token", "us_per_call", "bytes_per_call", "gb_per_s", "bandwidth_pct"]
SOURCES = {"cpu": "cpu-read", "cuda": "device-copy"}


def _number(obj, key, where):
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, NUMBER) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}.{key}: missing, not a number or negative")
    return value


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _row(row, where, bandwidth):
    if not isinstance(row, dict) or not isinstance(row.get("op"), str) or not row["op"]:
        raise ValueError(f"{where}.op: missing or not a string")
    calls, us, nbytes, gbps, pct = (_number(row, k, where) for k in ROW_NUMBERS)
    if calls <= 0 or calls != int(calls):
        raise ValueError(f"{where}.calls_per_token: {calls} is not a positive whole number")
    if nbytes <= 0:
        raise ValueError(f"{where}.bytes_per_call: must be positive")
    if not _close(gbps, nbytes / us / 1e3 if us > 0 else 0.0):
        raise ValueError(f"{where}.gb_per_s: {gbps} is not bytes_per_call / us_per_call / 1e3")
    if not _close(pct, 100 * gbps / bandwidth if bandwidth > 0 else 0.0):
        raise ValueError(f"{where}.bandwidth_pct: {pct} is not gb_per_s as a percentage of the bandwidth")


def validate(profile):
    """Raises ValueError naming the first field of `profile` that breaks the schema."""
    where = "$.stats.profile"
    if not isinstance(profile, dict):
        raise ValueError(f"{where}: expected an object")
    if profile.get("schema") != SCHEMA:
        raise ValueError(f"{where}.schema: {profile.get('schema')!r} is not {SCHEMA!r}")
    device = profile.get("device")
    if device not in SOURCES:
        raise ValueError(f"{where}.device: {device!r} is not one of {sorted(SOURCES)}")
    for key in ("steps", "context"):
        if not isinstance(profile.get(key), int) or isinstance(profile.get(key), bool) or profile[key] < 1:
            raise ValueError(f"{where}.{key}: missing or not a positive integer")
    bandwidth = profile.get("bandwidth")
    gb = _number(bandwidth, "gb_per_s", where + ".bandwidth")
    if bandwidth.get("source") != SOURCES[device]:
        raise ValueError(f"{where}.bandwidth.source: {bandwidth.get('source')!r} is not {SOURCES[device]!r}")
    rows = profile.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{where}.rows: missing or empty")
    for i, row in enumerate(rows):
        _row(row, f"{where}.rows[{i}]", gb)
    if len({r["op"] for r in rows}) != len(rows):
        raise ValueError(f"{where}.rows: an op appears twice")
    ops_us = _number(profile, "ops_us", where)
    _number(profile, "step_us", where)
    if not _close(ops_us, sum(r["calls_per_token"] * r["us_per_call"] for r in rows)):
        raise ValueError(f"{where}.ops_us: {ops_us} is not the rows' sum of calls_per_token x us_per_call")
