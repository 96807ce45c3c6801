#!/usr/bin/env python3
"""--prompt-cache FILE and --prompt-cache-ro end to end on the tiny golden model (CPU): a warm
run generates the cold run's greedy tokens (the goldens), writes nothing with -ro, skips a
corrupt file with one note and still generates, and the modes it does not apply to are refused
with one error line."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_support import BIN, GOLDEN, TINY  # noqa: E402


def run(*args):
    return subprocess.run([BIN, "-m", TINY, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)


def ids(values):
    return ",".join(str(v) for v in values)


class PromptCacheCli(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.tmp.name, "p.cache")

    def tearDown(self):
        self.tmp.cleanup()

    def greedy(self, prompt, *extra):
        proc = run("--prompt-ids", ids(prompt), "-n", "20", "--temperature", "0", "--ignore-eos", "--json",
                   "--prompt-cache", self.path, *extra)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        return json.loads(proc.stdout)["generated_ids"], proc.stderr.decode()

    def test_cold_then_warm_runs_generate_the_golden_tokens(self):
        case = GOLDEN["greedy"][0]
        golden = case["new_tokens"][:20]
        cold, err = self.greedy(case["prompt"])
        self.assertEqual(cold, golden)
        self.assertIn("none yet", err)
        self.assertTrue(os.path.isfile(self.path))
        self.assertEqual([n for n in os.listdir(self.tmp.name) if n != "p.cache"], [])  # no temporary left
        warm, err = self.greedy(case["prompt"])
        self.assertEqual(warm, golden)
        self.assertIn(f"reused {len(case['prompt']) - 1} of {len(case['prompt'])} prompt tokens", err)
        # A longer prompt reuses the whole saved one.
        longer = case["prompt"] + golden[:5]
        out, err = self.greedy(longer)
        self.assertEqual(out, case["new_tokens"][5:25])
        self.assertIn(f"reused {len(case['prompt'])} of {len(longer)}", err)

    def test_read_only_writes_nothing(self):
        case = GOLDEN["greedy"][1]
        out, err = self.greedy(case["prompt"], "--prompt-cache-ro")
        self.assertEqual(out, case["new_tokens"][:20])
        self.assertFalse(os.path.exists(self.path))
        self.assertEqual(os.listdir(self.tmp.name), [])

    def test_a_corrupt_file_is_ignored_with_one_note(self):
        case = GOLDEN["greedy"][0]
        self.greedy(case["prompt"])
        with open(self.path, "r+b") as f:
            f.truncate(os.path.getsize(self.path) // 2)
        out, err = self.greedy(case["prompt"], "--prompt-cache-ro")
        self.assertEqual(out, case["new_tokens"][:20])
        notes = [line for line in err.splitlines() if "prompt cache" in line]
        self.assertEqual(len(notes), 1, err)
        self.assertIn("ignored:", notes[0])
        self.assertIn("truncated", notes[0])

    def test_modes_it_does_not_apply_to_are_refused(self):
        prompt = ["--prompt-ids", "1,2,3", "-n", "2"]
        batch = os.path.join(self.tmp.name, "batch.txt")
        with open(batch, "w") as f:
            f.write("hello\n")
        for args, needle in [(["--no-cache"], "--no-cache"), (["--benchmark"], "--benchmark"),
                             (["--prompt-cache", self.tmp.name], "not a regular file"),
                             (["--prompt-cache", "/nonexistent-dir/x"], "cannot write in /nonexistent-dir")]:
            extra = [] if "--prompt-cache" in args else ["--prompt-cache", self.path]
            proc = run(*prompt, *extra, *args)
            err = proc.stderr.decode()
            self.assertEqual(proc.returncode, 1, err)
            self.assertEqual(len(err.strip().splitlines()), 1, err)
            self.assertIn(needle, err)
        proc = subprocess.run([BIN, "-m", TINY, "--batch", batch, "--prompt-cache", self.path],
                              capture_output=True, timeout=60)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("excludes", proc.stderr.decode())
        proc = run(*prompt, "--prompt-cache-ro")
        self.assertEqual(proc.returncode, 1)
        self.assertIn("requires --prompt-cache", proc.stderr.decode())


if __name__ == "__main__":
    unittest.main()
