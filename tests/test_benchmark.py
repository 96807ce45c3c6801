#!/usr/bin/env python3
"""`gpt2-gen --benchmark` on the tiny golden model (CPU), its JSON schema, and the plot tool
(on gpt2-gen's JSON and on a Hugging Face-schema JSON built the way tools/bench_hf.py builds it)."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GPT2_SOURCE_DIR", ".")
BIN = os.path.join(os.environ.get("GPT2_BINARY_DIR", "build"), "gpt2-gen")
SHARED = os.environ.get("GPT2_SHARED_DIR", "../shared")
TINY = os.path.join(os.environ.get("GPT2_TEST_MODELS", "build/test-models"), "tiny-fp32")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
import benchmark_schema  # noqa: E402

with open(os.path.join(SHARED, "golden/tiny-gpt2/reference.json"), encoding="utf-8") as f:
    GOLDEN = json.load(f)["greedy"][0]
RUNS, NEW = 3, 12


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


class Benchmark(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.json_path = os.path.join(cls.tmp.name, "bench.json")
        cls.proc = subprocess.run(
            [BIN, "-m", TINY, "--benchmark", "--prompt-ids", ",".join(map(str, GOLDEN["prompt"])),
             "-n", str(NEW), "--runs", str(RUNS), "--json", cls.json_path],
            capture_output=True, timeout=300)
        with open(cls.json_path, encoding="utf-8") as f:
            cls.data = json.load(f)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_exits_cleanly_and_prints_the_classic_lines(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr.decode())
        out = self.proc.stdout.decode()
        self.assertRegex(out, r"with KV caching: \d+\.\d{3} \+- \d+\.\d{3} seconds")
        self.assertRegex(out, r"without KV caching: \d+\.\d{3} \+- \d+\.\d{3} seconds")
        for column in ("prefill ms", "decode tokens/s", "p50", "p90", "p99", "first 10%", "last 10%", "KV cache",
                       "peak memory"):
            self.assertIn(column, out)
        self.assertIn("cpu", out.splitlines()[0])

    def test_json_validates_against_the_schema(self):
        benchmark_schema.validate(self.data)  # raises on any violation

    def test_sample_counts_match_the_flags(self):
        self.assertEqual([m["name"] for m in self.data["modes"]], ["cache", "no-cache"])
        for mode in self.data["modes"]:
            self.assertEqual(len(mode["runs"]), RUNS)
            for run in mode["runs"]:
                self.assertEqual(len(run["token_ms"]), NEW)
                self.assertEqual(len(run["generated_ids"]), NEW)

    def test_memory_bandwidth_floor_follows_from_its_parts(self):
        bw = self.data["memory_bandwidth"]
        with open(os.path.join(TINY, "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
        C, L, P = cfg["n_embd"], cfg["n_layer"], cfg["n_positions"]
        # fp32 weights, all read once per step except wpe (one row); K and V of every layer up to
        # the mean context of the run.
        weights = 4 * (self.data["n_params"] - (P - 1) * C)
        kv = 2 * L * C * 4 * (len(GOLDEN["prompt"]) + NEW / 2)
        self.assertAlmostEqual(bw["decode_bytes_per_token"], weights + kv)
        self.assertGreater(bw["read_gb_per_s"], 0)
        self.assertGreaterEqual(bw["threads"], 1)
        self.assertGreaterEqual(bw["buffer_bytes"], 256 << 20)
        floor = bw["read_gb_per_s"] * 1e9 / bw["decode_bytes_per_token"]
        self.assertAlmostEqual(bw["floor_tokens_per_s"], floor, delta=1e-9 * floor)
        tps = self.data["modes"][0]["summary"]["decode_tokens_per_s_mean"]
        self.assertAlmostEqual(bw["floor_reached_pct"], 100 * tps / floor, delta=1e-6)
        self.assertRegex(self.proc.stdout.decode(), r"memory read bandwidth [\d.]+ GB/s .* floor [\d.]+ tokens/s, "
                                                    r"reached \d+%")

    def test_schema_rejects_an_incomplete_bandwidth_record(self):
        broken = json.loads(json.dumps(self.data))
        del broken["memory_bandwidth"]["floor_tokens_per_s"]
        with self.assertRaisesRegex(ValueError, "memory_bandwidth: missing \"floor_tokens_per_s\""):
            benchmark_schema.validate(broken)

    def test_both_modes_generate_the_hugging_face_greedy_tokens(self):
        for mode in self.data["modes"]:
            for run in mode["runs"]:
                self.assertEqual(run["generated_ids"], GOLDEN["new_tokens"][:NEW], mode["name"])
        self.assertTrue(self.data["tokens_identical"])

    def test_summary_follows_from_the_samples(self):
        for mode in self.data["modes"]:
            # The Python summary of the same samples (an independent implementation of the
            # documented definitions) must agree with what gpt2-gen computed.
            expected = benchmark_schema.summarize(mode["runs"])
            for key, value in expected.items():
                self.assertAlmostEqual(mode["summary"][key], value, delta=1e-6 * max(1.0, abs(value)), msg=key)

    def test_plot_writes_a_png(self):
        png = os.path.join(self.tmp.name, "plot.png")
        proc = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_benchmark.py"), self.json_path,
                               "-o", png], capture_output=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        self.assertTrue(is_png(png))
        self.assertGreater(os.path.getsize(png), 20000)

    def test_plot_with_a_hugging_face_json_beside_it(self):
        # What tools/bench_hf.py writes, built with the same helpers from synthetic timings
        # (torch is not installed here): no-cache grows with the sequence, cache stays flat.
        prompt = GOLDEN["prompt"]
        modes = []
        for name, cache in (("cache", True), ("no-cache", False)):
            runs = [benchmark_schema.run_record([5.0] + [1.0 + (0 if cache else 0.1 * i) for i in range(NEW - 1)],
                                                GOLDEN["new_tokens"][:NEW]) for _ in range(RUNS)]
            modes.append({"name": name, "kv_cache": cache, "kv_cache_bytes": 1000 if cache else 0,
                          "weight_bytes": 27_000_000, "activation_bytes": 0, "peak_memory_bytes": 0, "runs": runs})
        hf = benchmark_schema.result("transformers 5.17.0", "cpu", "cpu", "fp32", "tiny", 6846080, prompt, NEW, modes)
        benchmark_schema.validate(hf)
        hf_path = os.path.join(self.tmp.name, "hf.json")
        with open(hf_path, "w", encoding="utf-8") as f:
            json.dump(hf, f)
        png = os.path.join(self.tmp.name, "both.png")
        proc = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_benchmark.py"), self.json_path,
                               hf_path, "-o", png], capture_output=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        self.assertTrue(is_png(png))

    def test_schema_rejects_a_wrong_sample_count(self):
        broken = json.loads(json.dumps(self.data))
        broken["modes"][1]["runs"][0]["token_ms"].pop()
        with self.assertRaises(ValueError):
            benchmark_schema.validate(broken)

    def test_plot_refuses_a_file_that_is_not_a_benchmark(self):
        bad = os.path.join(self.tmp.name, "bad.json")
        with open(bad, "w", encoding="utf-8") as f:
            json.dump({"schema": "something else"}, f)
        proc = subprocess.run([sys.executable, os.path.join(SOURCE, "tools/plot_benchmark.py"), bad, "-o",
                               os.path.join(self.tmp.name, "x.png")], capture_output=True, timeout=120)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"error:", proc.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp.name, "x.png")))

    def test_one_run_is_one_run(self):
        proc = subprocess.run([BIN, "-m", TINY, "--benchmark", "-p", "Hi", "-n", "4", "--runs", "1"],
                              capture_output=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"warm-up + 1 run\n", proc.stderr)
        self.assertIn(b", 1 run per mode after a warm-up", proc.stdout)
        self.assertNotIn(b"1 runs", proc.stdout + proc.stderr)

    def test_benchmark_refuses_a_length_that_does_not_fit(self):
        proc = subprocess.run([BIN, "-m", TINY, "--benchmark", "-p", "Hi", "-n", "500", "--runs", "1"],
                              capture_output=True, timeout=60)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"--context-shift", proc.stderr)


if __name__ == "__main__":
    unittest.main()
