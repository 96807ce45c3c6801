#!/usr/bin/env python3
"""`gpt2-gen --benchmark --parallel 1,2,3` on the tiny golden model (CPU): its JSON validates
against the batched schema with one entry per batch size and mode; every request generates
transformers' greedy tokens; the summaries, FLOPs and K/V bytes follow from the samples and the
model's shapes by the documented definitions (restated in Python); bad --parallel lists are one
clear error each; tools/plot_benchmark.py draws the file. No check depends on a time's value."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GPT2_SOURCE_DIR", ".")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
sys.path.insert(0, os.path.join(SOURCE, "tests"))
import benchmark_schema  # noqa: E402
from cli_support import BIN, TINY  # noqa: E402
from cli_support import GOLDEN as ALL_GOLDENS  # noqa: E402

GOLDEN = ALL_GOLDENS["greedy"][0]
with open(os.path.join(TINY, "config.json"), encoding="utf-8") as f:
    CONFIG = json.load(f)
SIZES, NEW, RUNS, CTX = [1, 2, 3], 6, 2, 64


def gpt2_gen(*args, timeout=300):
    return subprocess.run([BIN, "-m", TINY, "--device", "cpu", "-t", "1", *args], capture_output=True, text=True,
                          timeout=timeout)


class BatchBenchmark(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.json_path = os.path.join(cls.tmp.name, "batch.json")
        cls.proc = gpt2_gen("--benchmark", "--parallel", ",".join(map(str, SIZES)), "--prompt-ids",
                            ",".join(map(str, GOLDEN["prompt"])), "-n", str(NEW), "--runs", str(RUNS), "-c", str(CTX),
                            "--json", cls.json_path)
        with open(cls.json_path, encoding="utf-8") as f:
            cls.data = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_exits_cleanly_and_prints_the_table(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)
        out = self.proc.stdout
        for column in ("decode tok/s", "p50 ms", "p99 ms", "TTFT p50 ms", "K/V held", "peak memory", "fp32 GEMM"):
            self.assertIn(column, out)
        self.assertRegex(out, r"fp32 GEMM \(.*, 1 thread\) on the decode step's shapes at B=3: [\d.]+ GFLOP/s; "
                              r"the B=3 step with the cache reached [\d.]+ GFLOP/s, \d+% of it")
        self.assertIn("same tokens in every request, batch size and mode: yes", out)

    def test_json_validates_with_one_entry_per_batch_size_and_mode(self):
        benchmark_schema.validate_batch(self.data)
        self.assertEqual(self.data["batch_sizes"], SIZES)
        got = [(e["batch_size"], e["name"]) for e in self.data["entries"]]
        self.assertEqual(got, [(b, m) for b in SIZES for m in ("cache", "no-cache")])

    def test_every_request_generates_the_hugging_face_greedy_tokens(self):
        for e in self.data["entries"]:
            for run in e["runs"]:
                self.assertEqual(run["generated_ids"], GOLDEN["new_tokens"][:NEW], (e["batch_size"], e["name"]))
                self.assertTrue(run["requests_identical"])
        self.assertTrue(self.data["tokens_identical"])

    def test_summaries_follow_from_the_samples(self):
        for e in self.data["entries"]:
            expected = benchmark_schema.batch_summary(e["runs"])
            for key, value in expected.items():
                self.assertAlmostEqual(e["summary"][key], value, delta=1e-6 * max(1.0, abs(value)), msg=key)
            for run in e["runs"]:
                self.assertAlmostEqual(run["tokens_per_s"], run["tokens"] / run["wall_s"], delta=1e-6 * run["tokens_per_s"])
                self.assertEqual(run["decode_tokens"], e["batch_size"] * (NEW - 1))
                self.assertLessEqual(run["decode_s"], run["wall_s"])
                self.assertLessEqual(max(run["ttft_ms"]) / 1000, run["wall_s"])

    def test_flops_and_kv_bytes_follow_from_the_shapes(self):
        P, per_position = len(GOLDEN["prompt"]), 2 * CONFIG["n_layer"] * CONFIG["n_embd"] * 4  # fp32 K and V
        for e in self.data["entries"]:
            B, cache = e["batch_size"], e["kv_cache"]
            flops = B * benchmark_schema.decode_flops(CONFIG, P, NEW, cache)
            for run in e["runs"]:
                self.assertAlmostEqual(run["decode_flops"], flops, delta=1e-9 * flops)
            self.assertEqual(e["kv_ring_bytes"], B * CTX * per_position)
            self.assertEqual(e["kv_held_bytes"], B * (P + NEW - 1) * per_position if cache else 0)
            self.assertGreater(e["peak_memory_bytes"], 0)

    def test_gemm_rate_per_batch_size(self):
        gemm = self.data["gemm"]
        self.assertEqual([r["batch_size"] for r in gemm["rates"]], SIZES)
        C, H, L, V = CONFIG["n_embd"], CONFIG.get("n_inner") or 4 * CONFIG["n_embd"], CONFIG["n_layer"], CONFIG["vocab_size"]
        for rate in gemm["rates"]:
            self.assertEqual(rate["flops"], 2 * rate["batch_size"] * (L * (4 * C * C + 2 * C * H) + C * V))
            self.assertAlmostEqual(rate["gflop_per_s"], rate["flops"] / rate["best_ms"] / 1e6, delta=1e-6 * rate["gflop_per_s"])
            cache = next(e for e in self.data["entries"] if e["batch_size"] == rate["batch_size"] and e["kv_cache"])
            self.assertAlmostEqual(rate["step_gflop_per_s"], cache["summary"]["decode_gflop_per_s_mean"])

    def test_schema_rejects_a_missing_entry(self):
        broken = json.loads(json.dumps(self.data))
        del broken["entries"][3]
        with self.assertRaisesRegex(ValueError, "one entry per batch size and mode"):
            benchmark_schema.validate_batch(broken)

    def test_schema_rejects_a_wrong_latency_count(self):
        broken = json.loads(json.dumps(self.data))
        broken["entries"][4]["runs"][0]["token_ms"].pop()
        with self.assertRaisesRegex(ValueError, r"entries\[4\].runs\[0\].token_ms: \d+ entries, expected"):
            benchmark_schema.validate_batch(broken)

    def test_plot_draws_the_batched_file(self):
        png = os.path.join(self.tmp.name, "batch.png")
        proc = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_benchmark.py"), self.json_path,
                               "-o", png], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_plot_refuses_to_mix_the_two_kinds(self):
        single = os.path.join(self.tmp.name, "single.json")
        proc = gpt2_gen("--benchmark", "-p", "Hi", "-n", "2", "--runs", "1", "--json", single)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        png = os.path.join(self.tmp.name, "mixed.png")
        proc = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_benchmark.py"), self.json_path,
                               single, "-o", png], capture_output=True, text=True, timeout=120)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("error: cannot plot one-sequence and batched benchmark files together", proc.stderr)
        self.assertFalse(os.path.exists(png))


class BadParallelLists(unittest.TestCase):
    def assert_one_line_error(self, proc, needle):
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertEqual(len(proc.stderr.strip().splitlines()), 1, proc.stderr)
        self.assertIn(needle, proc.stderr)
        self.assertEqual(proc.stdout, "")

    def test_bad_lists(self):
        bench = ("--benchmark", "-p", "Hi", "-n", "2", "--runs", "1")
        self.assert_one_line_error(gpt2_gen(*bench, "--parallel", "0,2"), "each batch size must be in [1, 1024], got 0")
        self.assert_one_line_error(gpt2_gen(*bench, "--parallel", "2,x"), 'not a whole number: "x"')
        self.assert_one_line_error(gpt2_gen(*bench, "--parallel", "2,,4"), 'not a whole number: ""')
        self.assert_one_line_error(gpt2_gen(*bench, "--parallel", "2.5"), 'not a whole number: "2.5"')
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
            f.write("hello\n")
            f.flush()
            self.assert_one_line_error(gpt2_gen("--batch", f.name, "--parallel", "2,4"),
                                       "a list of batch sizes is for --benchmark only")
        self.assert_one_line_error(gpt2_gen("-p", "Hi", "--parallel", "2,4"), "--parallel requires --batch")
        self.assert_one_line_error(gpt2_gen(*bench, "--parallel", "1,2", "--explain"),
                                   "--explain is not recorded by --benchmark --parallel")


if __name__ == "__main__":
    unittest.main()
