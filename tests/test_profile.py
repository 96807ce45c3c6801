#!/usr/bin/env python3
"""--profile on the CPU, end to end on the tiny golden model: the rows and how often each runs
per token follow the model's structure, every row's bytes match tests/profile_reference.py
(worked out from config.json), the JSON validates (tools/profile_schema.py), and the run itself
is untouched (same tokens, same report). No test reads a time: only that times are numbers."""
import copy
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.environ.get("GPT2_SOURCE_DIR", "."), "tools"))
import profile_reference  # noqa: E402
import profile_schema  # noqa: E402
from test_cli import BIN, TINY, CliTest, run  # noqa: E402,F401

MODELS = os.path.dirname(TINY)
PROMPT = [464, 3290, 318]  # 3 tokens


class CpuProfile(CliTest):
    def profile(self, *args, model=TINY, n=5, sampling=("--temperature", "0")):
        proc = run("-m", model, "--json", "--prompt-ids", ",".join(map(str, PROMPT)), "-n", str(n),
                   *sampling, "--ignore-eos", "--device", "cpu", *args)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        return json.loads(proc.stdout), proc.stderr.decode()

    def assert_rows(self, profile, model, dtype, context):
        profile_schema.validate(profile)
        self.assertEqual(profile["device"], "cpu")
        self.assertEqual(profile["context"], context)
        expected = profile_reference.expected_rows(model, "cpu", dtype, context)
        self.assertEqual([r["op"] for r in profile["rows"]], [e[0] for e in expected])
        for row, (op, calls, nbytes) in zip(profile["rows"], expected):
            self.assertEqual(row["calls_per_token"], calls, op)
            self.assertEqual(row["bytes_per_call"], nbytes, op)

    def test_rows_calls_and_bytes_follow_the_config(self):
        # The step re-run is the one that computed the last token: context prompt + n - 1.
        for model, dtype_flag, dtype in (("tiny-fp32", [], "fp32"), ("tiny-fp16", [], "fp16"),
                                         ("tiny-bf16", [], "bf16"), ("tiny-fp32", ["--dtype", "int8"], "int8")):
            with self.subTest(model=model, dtype=dtype):
                path = os.path.join(MODELS, model)
                out, _ = self.profile("--profile", "3", *dtype_flag, model=path)
                self.assertEqual(out["stats"]["profile"]["steps"], 3)
                self.assert_rows(out["stats"]["profile"], path, dtype, len(PROMPT) + 5 - 1)

    def test_default_steps_and_a_run_without_decode_steps(self):
        out, _ = self.profile("--profile")
        self.assertEqual(out["stats"]["profile"]["steps"], 16)
        for n in (0, 1):  # -n 0 computes the prompt first; -n 1 re-runs the prompt's last token
            with self.subTest(n=n):
                out, _ = self.profile("--profile", "2", n=n)
                self.assertEqual(len(out["generated_ids"]), n)
                self.assert_rows(out["stats"]["profile"], TINY, "fp32", len(PROMPT))

    def test_the_run_is_unchanged(self):
        greedy = ("--temperature", "0")
        for extra, sampling in (([], greedy), (["--no-cache"], greedy), ([], ("--temperature", "0.9", "--seed", "7"))):
            with self.subTest(extra=extra, sampling=sampling):
                plain, _ = self.profile(*extra, n=8, sampling=sampling)
                profiled, err = self.profile("--profile", "2", *extra, n=8, sampling=sampling)
                self.assertEqual(profiled["generated_ids"], plain["generated_ids"])
                self.assertEqual(len(profiled["stats"]["token_ms"]), 8)  # the profile's steps are not in it
                del profiled["stats"]["profile"]
                self.assertEqual(profiled["stats"].keys(), plain["stats"].keys())
                self.assertIn("decode", err)

    def test_table_on_stderr_after_the_summary(self):
        out, err = self.profile("--profile", "2")
        table = err[err.index("profile of the decode step"):]
        self.assertLess(err.index("finish reason"), err.index("profile of the decode step"))
        for row in out["stats"]["profile"]["rows"]:
            self.assertIn(f"| {row['op']} ", table)
        self.assertIn("step timed as a whole", table)
        quiet = run("-m", TINY, "-p", "Hi", "-n", "2", "--profile", "2", "-q")
        self.assertEqual(quiet.returncode, 0, quiet.stderr)
        self.assertEqual(quiet.stderr, b"")

    def test_bad_values(self):
        for value in ("0", "-1", "x", "100001"):
            with self.subTest(value=value):
                self.assert_error(run("-m", TINY, "-p", "Hi", "-n", "2", f"--profile={value}"), "--profile")
        self.assert_error(run("-m", TINY, "-p", "Hi", "-n", "2", "--profile", "--benchmark"), "--benchmark")

    def test_schema_rejects_broken_profiles(self):
        out, _ = self.profile("--profile", "2")
        good = out["stats"]["profile"]
        profile_schema.validate(good)
        breaks = [
            lambda p: p.pop("step_us"),
            lambda p: p["rows"][1].update(gb_per_s=p["rows"][1]["gb_per_s"] * 2 + 1),
            lambda p: p["rows"][0].update(bandwidth_pct=p["rows"][0]["bandwidth_pct"] + 1),
            lambda p: p["rows"][2].update(calls_per_token=1.5),
            lambda p: p.update(ops_us=p["ops_us"] + 1),
            lambda p: p["bandwidth"].update(source="device-copy"),
            lambda p: p.update(rows=[]),
            lambda p: p["rows"].append(copy.deepcopy(p["rows"][0])),
            lambda p: p.update(schema="gpt2-gen-profile/0"),
        ]
        for i, spoil in enumerate(breaks):
            with self.subTest(i=i):
                broken = copy.deepcopy(good)
                spoil(broken)
                with self.assertRaises(ValueError):
                    profile_schema.validate(broken)


if __name__ == "__main__":
    unittest.main()
