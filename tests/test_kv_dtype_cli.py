#!/usr/bin/env python3
"""--kv-dtype end to end on the tiny golden model (CPU): every format and llama.cpp alias reaches
the backend and is reported with its bytes (summary, --json, --explain, --benchmark), and a bad
value is one clear error line. Bytes come from engine/kv_format.h's layout, restated here as the
independent expectation: 2 (K, V) x 2 layers x 128 slots x a row of 128 values (int8: 128 bytes
and 2 fp32 scales, one per head)."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_support import BIN, TINY  # noqa: E402

ROW = {"fp32": 128 * 4, "fp16": 128 * 2, "bf16": 128 * 2, "int8": 128 + 2 * 4}


def kv_bytes(fmt):
    return 2 * 2 * 128 * ROW[fmt]


def run(*args):
    return subprocess.run([BIN, "-m", TINY, "--device", "cpu", *args], capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)


class KvDtypeCli(unittest.TestCase):
    def generate(self, *args):
        proc = run("--prompt-ids", "464,318", "-n", "6", "--temperature", "0", "--json", *args)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        return json.loads(proc.stdout), proc.stderr.decode()

    def test_each_format_and_alias_is_reported_with_its_bytes(self):
        for value, fmt in (("fp32", "fp32"), ("fp16", "fp16"), ("bf16", "bf16"), ("int8", "int8"),
                           ("f32", "fp32"), ("f16", "fp16"), ("q8_0", "int8"), (None, "fp32")):
            with self.subTest(value=value):
                out, err = self.generate(*(["--kv-dtype", value] if value else []))
                self.assertEqual(out["stats"]["kv_dtype"], fmt)
                self.assertEqual(out["stats"]["kv_cache_bytes"], kv_bytes(fmt))
                self.assertIn(f"kv cache on ({fmt}, 128 slots/layer", err)
        self.assertLessEqual(kv_bytes("int8"), 0.28 * kv_bytes("fp32"))

    def test_a_bad_value_is_one_error_line(self):
        for bad in ("fp64", "q4_0", ""):
            with self.subTest(bad=bad):
                proc = run("--prompt-ids", "464", "-n", "1", "--kv-dtype", bad)
                self.assertNotEqual(proc.returncode, 0)
                lines = proc.stderr.decode().strip().splitlines()
                self.assertEqual(len(lines), 1, lines)
                self.assertIn("--kv-dtype", lines[0])
                self.assertIn("fp32, fp16, bf16 or int8", lines[0])
                self.assertEqual(proc.stdout, b"")

    def test_explain_counts_rows_of_the_format(self):
        out, _ = self.generate("--kv-dtype", "int8", "--explain")
        model = out["explain"]["model"]
        self.assertEqual(model["kv_format"], "int8")
        self.assertEqual(model["kv_row_bytes"], ROW["int8"])
        self.assertEqual(model["kv_ring_bytes"], kv_bytes("int8"))
        step = out["explain"]["per_step"][1]  # one new token over its context
        self.assertEqual(step["bytes"]["kv_write"], 2 * 2 * ROW["int8"])
        self.assertEqual(step["bytes"]["kv_read"], 2 * 2 * step["context"] * ROW["int8"])

    def test_benchmark_reports_the_format(self):
        proc = run("--prompt-ids", "464", "-n", "4", "--benchmark", "--runs", "1", "--kv-dtype", "bf16", "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        doc = json.loads(proc.stdout)
        for mode in doc["modes"]:
            self.assertEqual(mode["kv_dtype"], "bf16")
            self.assertEqual(mode["kv_cache_bytes"], kv_bytes("bf16"))
        self.assertIn("bf16", proc.stderr.decode() + proc.stdout.decode())

    def test_help_names_the_formats_and_aliases(self):
        proc = subprocess.run([BIN, "--help"], capture_output=True, timeout=60)
        text = proc.stdout.decode()
        self.assertIn("--kv-dtype", text)
        self.assertIn("q8_0", text)


if __name__ == "__main__":
    unittest.main()
