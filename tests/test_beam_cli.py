#!/usr/bin/env python3
"""gpt2-gen --num-beams end to end on the tiny golden model (CPU): --json returns transformers'
recorded beams (reference_beams.json: sequences, scores, finish reasons) with and without the
cache, the text is printed when the search ends, --benchmark compares both modes, --explain and
--profile report the reorder's cost, and every bad input is one `error:` line and exit 1."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_support import BIN, SHARED, TINY, read_json  # noqa: E402

BEAMS = read_json(os.path.join(SHARED, "golden/tiny-gpt2/reference_beams.json"))


def run(*args, timeout=300):
    return subprocess.run([BIN, "-m", TINY, "--device", "cpu", *args], capture_output=True, text=True,
                          timeout=timeout)


def case_flags(case):
    """The flags of a reference case (its EOS is the model's <|endoftext|>: no flag sets another)."""
    s = case["settings"]
    flags = ["--num-beams", str(s["num_beams"]), "-n", str(BEAMS["max_new_tokens"]),
             "--prompt-ids", ",".join(map(str, case["prompt"]))]
    if "length_penalty" in s:
        flags += ["--length-penalty", str(s["length_penalty"])]
    if "early_stopping" in s:
        flags += ["--early-stopping", str(s["early_stopping"]).lower()]
    if "num_return_sequences" in s:
        flags += ["--num-return-sequences", str(s["num_return_sequences"])]
    if "no_repeat_ngram_size" in s:
        flags += ["--no-repeat-ngram-size", str(s["no_repeat_ngram_size"])]
    if "repetition_penalty" in s:
        flags += ["--repeat-penalty", str(s["repetition_penalty"])]
    return flags


class BeamCliTest(unittest.TestCase):
    def test_json_returns_the_recorded_beams(self):
        cases = [c for c in BEAMS["cases"] if c["settings"]["eos_token_id"] == 50256]
        self.assertGreaterEqual(len(cases), 9)
        for case in cases[::4]:  # a spread of them: the C++ suite runs all 24
            for cache in ([], ["--no-cache"]):
                proc = run(*case_flags(case), "--json", *cache)
                self.assertEqual(proc.returncode, 0, proc.stderr)
                out = json.loads(proc.stdout)
                got = [s["generated_ids"] for s in out["sequences"]]
                self.assertEqual(got, case["new_tokens"], case["settings"])
                for s, score in zip(out["sequences"], case["sequences_scores"]):
                    self.assertAlmostEqual(s["score"], score, delta=1e-4)
                    self.assertEqual(s["finish_reason"], "length")
                self.assertEqual(out["generated_ids"], case["new_tokens"][0])
                self.assertEqual(out["beam"]["kv_bytes_copied_per_step"], 0)

    def test_text_is_printed_when_the_search_ends(self):
        case = BEAMS["cases"][6]  # 4 beams, 3 returned
        proc = run(*case_flags(case), "--no-display-prompt")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.count("[sequence "), 3)
        self.assertIn("[sequence 1 of 3, score -6.4357", proc.stdout)

    def test_explain_and_profile_report_the_reorder(self):
        case = BEAMS["cases"][3]
        proc = run(*case_flags(case), "--explain", "--profile", "4", "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("bytes copied per step: K/V 0", proc.stderr)
        self.assertIn("reorder", proc.stderr)
        beam = json.loads(proc.stdout)["beam"]
        self.assertEqual(beam["history_bytes_per_step"], 4 * 4 * (6 + 23))  # 4 beams x 29 positions x 4 B
        self.assertIn("reorder_us", beam["profile"])

    def test_benchmark_compares_both_modes(self):
        proc = run("--benchmark", "--num-beams", "3", "-n", "8", "--runs", "1", "--prompt-ids", "2061,318,509")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn("beam search of 3 beams", proc.stdout)
        self.assertIn("same tokens in both modes: yes", proc.stdout)

    def test_bad_inputs(self):
        bad = {
            ("--num-beams", "0"): "--num-beams",
            ("--num-beams", "2", "--num-return-sequences", "3"): "--num-return-sequences 3 is more than --num-beams 2",
            ("--num-return-sequences", "2"): "--num-return-sequences 2 is more than --num-beams 1",
            ("--num-beams", "2", "--temperature", "0.7"): "beam sampling is not supported",
            ("--num-beams", "2", "--top-k", "5"): "--top-k samples",
            ("--num-beams", "2", "--seed", "3"): "--seed samples",
            ("--num-beams", "2", "--context-shift"): "--context-shift does not work with --num-beams 2",
            ("--num-beams", "2", "--early-stopping", "maybe"): "--early-stopping",
            ("--num-beams", "2", "--batch", "-"): "--batch does not take --num-beams 2",
        }
        for args, message in bad.items():
            proc = run(*args, "-n", "3")
            self.assertEqual(proc.returncode, 1, args)
            self.assertEqual(proc.stdout, "", args)
            lines = proc.stderr.strip().splitlines()
            self.assertEqual(len(lines), 1, proc.stderr)
            self.assertTrue(lines[0].startswith("error: "), proc.stderr)
            self.assertIn(message, lines[0])

    def test_greedy_temperature_zero_is_allowed(self):
        proc = run("--num-beams", "2", "--temperature", "0", "-n", "3", "--prompt-ids", "2061,318", "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(len(json.loads(proc.stdout)["sequences"]), 1)


if __name__ == "__main__":
    unittest.main()
