#!/usr/bin/env python3
"""`gpt2-gen --explain` on the tiny golden model (CPU): every step's FLOPs and bytes against the
counting convention of src/app/README.md ("What the cache saves"), recomputed here from config.json alone,
for a cached run, a --no-cache run and runs across --context-shift; per_step sums to totals; the
cache/no-cache ratio; the JSON schema; tools/plot_explain.py; and the progress line on a
pseudo-terminal (shown there, not on a pipe, not with -q)."""
import json
import os
import pty
import select
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GPT2_SOURCE_DIR", ".")
BIN = os.path.join(os.environ.get("GPT2_BINARY_DIR", "build"), "gpt2-gen")
TINY = os.path.join(os.environ.get("GPT2_TEST_MODELS", "build/test-models"), "tiny-fp32")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import explain_schema  # noqa: E402

PROMPT = [2061, 318, 509, 53, 40918, 30]
NEW = 14
with open(os.path.join(TINY, "config.json"), encoding="utf-8") as f:
    CFG = json.load(f)
C, V, LAYERS, P = CFG["n_embd"], CFG["vocab_size"], CFG["n_layer"], CFG["n_positions"]
H = CFG.get("n_inner") or 4 * C
HEAD_DIM = C // CFG["n_head"]
F32 = 4  # the CPU backend holds weights and K/V in fp32
N_PARAMS = V * C + P * C + 2 * C + LAYERS * (2 * C + 3 * C * C + 3 * C + C * C + C + 2 * C + H * C + H + C * H + C)


def expected_forwards(n_prompt, n_new, cache, window=None):
    """(tokens computed, position) of each step, by simulating the context window by hand:
    with the cache, the prompt and every shift recompute the window and other steps one token."""
    window = window or P
    keep = max(window // 2, 1)
    n, begin, calls = n_prompt, 0, [(n_prompt, 0)]
    for _ in range(n_new - 1):
        n += 1
        shifted = n - begin > window
        if shifted:
            begin = n - keep
        L = n - begin
        calls.append((1, L - 1) if cache and not shifted else (L, 0))
    return calls


def convention(t, pos):
    """src/app/README.md's counting convention, written out again: FLOPs and bytes of one forward."""
    L = pos + t
    pairs = sum(pos + i + 1 for i in range(t))  # each query i scores pos + i + 1 keys
    flops = {"linear": 2 * t * 12 * C * C * LAYERS, "attention": 4 * C * pairs * LAYERS, "lm_head": 2 * C * V}
    nbytes = {"weights": N_PARAMS * F32, "kv_read": 2 * LAYERS * L * C * F32, "kv_write": 2 * LAYERS * t * C * F32}
    flops["total"] = sum(flops.values())
    nbytes["total"] = sum(nbytes.values())
    return flops, nbytes


def explain_of(*args):
    proc = subprocess.run([BIN, "-m", TINY, "--device", "cpu", "--prompt-ids", ",".join(map(str, PROMPT)),
                           "--temperature", "0", "--ignore-eos", "--explain", "--json", *args],
                          capture_output=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr.decode())
    return json.loads(proc.stdout)["explain"], proc.stderr.decode()


class Explain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cache, cls.cache_text = explain_of("-n", str(NEW))
        cls.no_cache, _ = explain_of("-n", str(NEW), "--no-cache")
        # A 12-token window keeping 6: the 6-token prompt overflows it at 13 tokens, then every 7.
        cls.shift = explain_of("-n", "20", "--ctx-size", "12", "--context-shift")[0]
        cls.shift_no_cache = explain_of("-n", "20", "--ctx-size", "12", "--context-shift", "--no-cache")[0]

    def check_steps(self, mode, calls):
        self.assertEqual(len(mode["per_step"]), len(calls))
        for step, (t, pos) in zip(mode["per_step"], calls):
            where = f"{mode['mode']} step {step['step']}"
            self.assertEqual((step["tokens_computed"], step["position"], step["context"]), (t, pos, pos + t), where)
            flops, nbytes = convention(t, pos)
            self.assertEqual(step["flops"], flops, where)
            self.assertEqual(step["bytes"], nbytes, where)
            held = 2 * LAYERS * (pos + t) * C * F32 if mode["mode"] == "cache" else 0
            self.assertEqual(step["kv_cache_bytes"], held, where)
            self.assertEqual(step["shapes"]["q"], [t, HEAD_DIM])
            self.assertEqual(step["shapes"]["k_t"], [HEAD_DIM, pos + t])
            self.assertEqual(step["shapes"]["scores"], [t, pos + t])

    def check_totals(self, mode):
        for group in ("flops", "bytes"):
            for key, value in mode["totals"][group].items():
                self.assertEqual(value, sum(s[group][key] for s in mode["per_step"]), f"{group}.{key}")
        self.assertEqual(mode["totals"]["steps"], len(mode["per_step"]))
        if mode["measured"]:
            self.assertAlmostEqual(mode["totals"]["ms"], sum(s["ms"] for s in mode["per_step"]), places=6)

    def test_cached_run_counts_one_token_per_step_after_the_prompt(self):
        self.check_steps(self.cache, expected_forwards(len(PROMPT), NEW, True))
        self.check_steps(self.cache["other_mode"], expected_forwards(len(PROMPT), NEW, False))

    def test_no_cache_run_recomputes_the_whole_context(self):
        self.check_steps(self.no_cache, expected_forwards(len(PROMPT), NEW, False))
        self.check_steps(self.no_cache["other_mode"], expected_forwards(len(PROMPT), NEW, True))

    def test_context_shift_steps_count_the_recomputed_window(self):
        self.check_steps(self.shift, expected_forwards(len(PROMPT), 20, True, window=12))
        self.check_steps(self.shift_no_cache, expected_forwards(len(PROMPT), 20, False, window=12))
        self.check_steps(self.shift["other_mode"], expected_forwards(len(PROMPT), 20, False, window=12))
        self.check_steps(self.shift_no_cache["other_mode"], expected_forwards(len(PROMPT), 20, True, window=12))
        recomputes = [s["step"] for s in self.shift["per_step"] if s["tokens_computed"] > 1]
        self.assertEqual(recomputes, [1, 8, 15])  # the prompt, then shifts at 13 and 20 tokens

    def test_per_step_sums_to_totals(self):
        for e in (self.cache, self.no_cache, self.shift, self.shift_no_cache):
            self.check_totals(e)
            self.check_totals(e["other_mode"])

    def test_cache_and_no_cache_totals_have_the_ratio_of_the_formulas(self):
        def total(calls, group):
            return sum(convention(t, pos)[0 if group == "flops" else 1]["total"] for t, pos in calls)
        for group, key in (("flops", "flops_ratio"), ("bytes", "bytes_ratio")):
            want = total(expected_forwards(len(PROMPT), NEW, False), group) / total(
                expected_forwards(len(PROMPT), NEW, True), group)
            measured_modes = self.no_cache["totals"][group]["total"] / self.cache["totals"][group]["total"]
            self.assertAlmostEqual(measured_modes, want, places=12)
            self.assertAlmostEqual(self.cache["comparison"][key], want, places=12)
            self.assertAlmostEqual(self.no_cache["comparison"][key], want, places=12)
        # A single run times only its own mode.
        self.assertIsNone(self.cache["comparison"]["time_ratio"])
        self.assertFalse(self.cache["other_mode"]["measured"])

    def test_json_validates_against_the_schema(self):
        for e in (self.cache, self.no_cache, self.shift, self.shift_no_cache):
            explain_schema.validate(e)
        broken = json.loads(json.dumps(self.cache))
        broken["per_step"][2]["shapes"]["scores"] = [1, 1]
        with self.assertRaises(ValueError):
            explain_schema.validate(broken)
        del broken["other_mode"]["totals"]
        with self.assertRaises(ValueError):
            explain_schema.validate(broken)

    def test_stderr_shows_four_diagrams_a_table_and_the_comparison(self):
        text = self.cache_text
        for step in range(1, 5):
            self.assertIn(f"explain: step {step} (with the cache)", text)
        self.assertNotIn("explain: step 5 ", text)
        self.assertIn("Q 1x64", text)
        self.assertIn(f"K^T 64x{len(PROMPT) + 3}", text)
        self.assertIn(f"one row per 10% of the {NEW} steps", text)
        self.assertIn("| FLOPs |", text)
        self.assertIn("predicted", text)
        self.assertIn("not run", text)

    def test_plot_writes_a_png_from_one_mode(self):
        with tempfile.TemporaryDirectory() as tmp:
            src, png = os.path.join(tmp, "run.json"), os.path.join(tmp, "explain.png")
            with open(src, "w", encoding="utf-8") as f:
                json.dump({"explain": self.shift}, f)
            proc = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_explain.py"), src, "-o", png],
                                  capture_output=True, timeout=300)
            self.assertEqual(proc.returncode, 0, proc.stderr.decode())
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_plot_refuses_a_file_without_explain(self):
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "run.json")
            with open(src, "w", encoding="utf-8") as f:
                json.dump({"generated_ids": [1]}, f)
            proc = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_explain.py"), src, "-o",
                                   os.path.join(tmp, "x.png")], capture_output=True, timeout=300)
            self.assertEqual(proc.returncode, 1)
            self.assertIn(b"error:", proc.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "x.png")))


class BenchmarkExplain(unittest.TestCase):
    def test_both_modes_are_timed_and_agree_with_the_formulas(self):
        with tempfile.TemporaryDirectory() as tmp:
            out, png = os.path.join(tmp, "bench.json"), os.path.join(tmp, "bench.png")
            proc = subprocess.run([BIN, "-m", TINY, "--device", "cpu", "--benchmark", "--runs", "2", "--explain",
                                   "--prompt-ids", ",".join(map(str, PROMPT)), "-n", "8", "--json", out],
                                  capture_output=True, timeout=300)
            self.assertEqual(proc.returncode, 0, proc.stderr.decode())
            with open(out, encoding="utf-8") as f:
                doc = json.load(f)
            cache, no_cache = explain_schema.explain_objects(doc)
            for e, use_cache in ((cache, True), (no_cache, False)):
                explain_schema.validate(e)
                self.assertTrue(e["measured"])
                calls = expected_forwards(len(PROMPT), 8, use_cache)
                self.assertEqual([(s["tokens_computed"], s["position"]) for s in e["per_step"]], calls)
                # Each step's time is the mean over the timed runs.
                runs = next(m for m in doc["modes"] if m["kv_cache"] == use_cache)["runs"]
                for i, step in enumerate(e["per_step"]):
                    self.assertAlmostEqual(step["ms"], sum(r["token_ms"][i] for r in runs) / len(runs), places=6)
            self.assertAlmostEqual(cache["comparison"]["time_ratio"],
                                   no_cache["totals"]["ms"] / cache["totals"]["ms"], places=9)
            self.assertIn("explain: step 1 (without the cache)", proc.stderr.decode())
            self.assertIn("measured", proc.stderr.decode())
            plot = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_explain.py"), out, "-o", png],
                                  capture_output=True, timeout=300)
            self.assertEqual(plot.returncode, 0, plot.stderr.decode())
            self.assertTrue(os.path.getsize(png) > 10000)


def run_with_stderr_on_a_tty(args, env_extra=None):
    """Runs gpt2-gen with stderr on a pseudo-terminal; returns (exit code, what the terminal got)."""
    master, slave = pty.openpty()
    env = dict(os.environ, **(env_extra or {}))
    proc = subprocess.Popen([BIN, *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


class Progress(unittest.TestCase):
    BENCH = ["-m", TINY, "--device", "cpu", "--benchmark", "--runs", "2", "--prompt-ids", "2061,318", "-n", "6"]

    def test_benchmark_progress_appears_on_a_terminal(self):
        code, tty = run_with_stderr_on_a_tty(self.BENCH)
        self.assertEqual(code, 0, tty)
        for needle in ("benchmark cache: warm-up", "benchmark cache: run 2/2", "benchmark no-cache: run 1/2",
                       "token 6/6", "elapsed", "ETA", "\r\033[K"):
            self.assertIn(needle, tty)

    def test_no_cache_estimate_is_announced_before_a_long_benchmark(self):
        code, tty = run_with_stderr_on_a_tty(self.BENCH, {"GPT2_PROGRESS_MIN_S": "0"})
        self.assertEqual(code, 0, tty)
        self.assertRegex(tty, r"benchmark no-cache: about [0-9.]+ s estimated for the warm-up and 2 runs of 6 tokens")
        self.assertEqual(tty.count("estimated for the warm-up"), 1)

    def test_generation_progress_appears_when_the_text_is_not_on_the_terminal(self):
        args = ["-m", TINY, "--device", "cpu", "--prompt-ids", "2061,318", "-n", "5", "--json", os.devnull]
        code, tty = run_with_stderr_on_a_tty(args, {"GPT2_PROGRESS_MIN_S": "0"})
        self.assertEqual(code, 0, tty)
        self.assertIn("generating (cache), token 1/5", tty)

    def test_silent_with_quiet_and_on_a_pipe(self):
        code, tty = run_with_stderr_on_a_tty(self.BENCH + ["-q"], {"GPT2_PROGRESS_MIN_S": "0"})
        self.assertEqual(code, 0)
        self.assertEqual(tty, "")
        proc = subprocess.run([BIN, *self.BENCH], capture_output=True, timeout=300,
                              env=dict(os.environ, GPT2_PROGRESS_MIN_S="0"))
        self.assertEqual(proc.returncode, 0)
        for needle in (b"token", b"ETA", b"\r", b"estimated"):
            self.assertNotIn(needle, proc.stderr)


if __name__ == "__main__":
    unittest.main()
