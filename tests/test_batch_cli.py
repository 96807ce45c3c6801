#!/usr/bin/env python3
"""gpt2-gen --batch end to end on the tiny golden model (CPU): a batch of the goldens' prompts
gives transformers' continuations at any --parallel (greedy, and with the logits processors),
sampled requests give what the same request gives alone (--seed), shared prefixes reused and
counted (and not with --no-prefix-reuse), slots are refilled (more
requests than --parallel), --json's input order and atomic file, and every bad input: one
`error:` line naming the line, exit 1, nothing generated (a file), or what ran written (stdin);
Ctrl-C (exit 130, the unfinished request reported `interrupted`) and a closed stdout."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_support import BIN, GOLDEN, PROCESSORS, SHARED, TINY, read_json  # noqa: E402
FIELDS = {"repetition_penalty": "repeat_penalty", "no_repeat_ngram_size": "no_repeat_ngram_size"}


def run(*args, stdin_text=None, timeout=300):
    return subprocess.run([BIN, "-m", TINY, "--device", "cpu", *args], input=stdin_text, capture_output=True,
                          text=True, timeout=timeout)


class BatchTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp()

    def batch_file(self, lines, name="batch.jsonl"):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
        return path

    def run_batch(self, lines, *args):
        proc = run("--batch", self.batch_file(lines), *args)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return [json.loads(line) for line in proc.stdout.splitlines()]

    def assert_error(self, proc, needle):
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn(needle, proc.stderr)
        self.assertNotIn("terminate called", proc.stderr)

    def golden_requests(self):
        """The goldens' greedy prompts and the four processor settings, with transformers' tokens."""
        reqs = [({"prompt_ids": c["prompt"], "max_new_tokens": len(c["new_tokens"])}, c["new_tokens"])
                for c in GOLDEN["greedy"]]
        seen = set()
        for c in PROCESSORS["cases"]:
            key = json.dumps(c["settings"], sort_keys=True)
            if key not in seen:
                seen.add(key)
                fields = {FIELDS[k]: v for k, v in c["settings"].items()}
                reqs.append(({"prompt_ids": c["prompt"], "max_new_tokens": len(c["new_tokens"]), **fields},
                             c["new_tokens"]))
        return [({**r, "id": f"g{i}"}, want) for i, (r, want) in enumerate(reqs)]


class Results(BatchTest):
    def test_the_goldens_at_every_parallel(self):
        reqs = self.golden_requests()
        for parallel in ("1", "3", "7"):
            out = self.run_batch([r for r, _ in reqs], "--parallel", parallel, "--temperature", "0", "--ignore-eos")
            got = {o["id"]: o for o in out}
            self.assertEqual(len(out), len(reqs))
            for r, want in reqs:
                self.assertEqual(got[r["id"]]["generated_ids"], want, f"{r['id']} at --parallel {parallel}")
                self.assertEqual(got[r["id"]]["finish_reason"], "length")

    def test_sampled_requests_reproduce_their_solo_runs(self):
        reqs = [{"prompt": "The cat", "seed": 7, "max_new_tokens": 12},
                {"prompt": "Hello", "seed": 8, "temperature": 1.2, "top_k": 0, "top_p": 0.8, "max_new_tokens": 9},
                {"prompt_ids": [464], "seed": 9, "min_p": 0.1, "repeat_penalty": 1.2, "max_new_tokens": 15}]
        out = self.run_batch(reqs, "--parallel", "3", "--ignore-eos")
        for i, r in enumerate(reqs):
            solo = ["--seed", str(r["seed"]), "-n", str(r["max_new_tokens"]), "--ignore-eos", "--json"]
            solo += ["--prompt", r["prompt"]] if "prompt" in r else ["--prompt-ids", ",".join(map(str, r["prompt_ids"]))]
            for key, flag in (("temperature", "--temperature"), ("top_k", "--top-k"), ("top_p", "--top-p"),
                              ("min_p", "--min-p"), ("repeat_penalty", "--repeat-penalty")):
                if key in r:
                    solo += [flag, str(r[key])]
            proc = run(*solo)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            want = json.loads(proc.stdout)
            got = next(o for o in out if o["id"] == i + 1)  # no "id": the line number
            self.assertEqual(got["generated_ids"], want["generated_ids"], r)
            self.assertEqual(got["text"], want["text"])
            self.assertEqual(got["stats"]["seed"], r["seed"])

    def test_more_requests_than_slots_and_plain_text_lines(self):
        lines = ["one", "", '{"prompt": "two", "max_new_tokens": 2}', "three", "four", '{"max_new_tokens": 1}']
        out = self.run_batch(lines, "--parallel", "2", "-n", "4", "--temperature", "0", "--ignore-eos")
        self.assertEqual(sorted(o["id"] for o in out), [1, 3, 4, 5, 6])  # the blank line 2 is skipped
        lengths = {o["id"]: len(o["generated_ids"]) for o in out}
        self.assertEqual(lengths, {1: 4, 3: 2, 4: 4, 5: 4, 6: 1})
        for o in out:
            self.assertEqual(o["stats"]["generated_tokens"], len(o["generated_ids"]))

    def test_stop_strings_per_request(self):
        base = self.run_batch([{"prompt_ids": GOLDEN["greedy"][0]["prompt"], "max_new_tokens": 12}],
                              "--temperature", "0", "--ignore-eos")[0]
        stop = base["text"][5:9]
        out = self.run_batch([{"prompt_ids": GOLDEN["greedy"][0]["prompt"], "max_new_tokens": 12, "stop": [stop]},
                              {"prompt_ids": GOLDEN["greedy"][0]["prompt"], "max_new_tokens": 12}],
                             "--parallel", "2", "--temperature", "0", "--ignore-eos")
        by_id = {o["id"]: o for o in out}
        self.assertEqual(by_id[1]["finish_reason"], "stop")
        self.assertEqual(by_id[1]["stop_string"], stop)
        self.assertEqual(by_id[1]["text"], base["text"][:base["text"].index(stop)])
        self.assertEqual(by_id[2]["generated_ids"], base["generated_ids"])

    def test_shared_prefixes_are_reused_and_counted(self):
        """Three prompts sharing 20 ids (the third is those 20 alone: 19 reusable, its last is computed):
        each generates its solo run's ids; reused 0, 20 and 19 of 23 + 24 + 20 = 67 prompt tokens, so
        28 computed; --no-prefix-reuse computes all 67 and generates the same."""
        prefix = [(i * 7919 + 13) % 50257 for i in range(20)]
        prompts = [prefix + [11, 12, 13], prefix + [21, 22, 23, 24], prefix]
        reqs = [{"prompt_ids": p, "id": f"r{i}"} for i, p in enumerate(prompts)]
        common = ["--temperature", "0", "--ignore-eos", "-n", "4"]
        for flags, reused, totals in (([], [0, 20, 19], "28 computed, 39 reused"),
                                      (["--no-prefix-reuse"], [0, 0, 0], "67 computed, 0 reused")):
            proc = run("--batch", self.batch_file(reqs), "--parallel", "3", *common, *flags)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertIn(f"prompt tokens: {totals} from shared prefixes", proc.stderr)
            got = {o["id"]: o for o in map(json.loads, proc.stdout.splitlines())}
            for i, p in enumerate(prompts):
                solo = run("--prompt-ids", ",".join(map(str, p)), "--json", *common)
                self.assertEqual(got[f"r{i}"]["generated_ids"], json.loads(solo.stdout)["generated_ids"], flags)
                self.assertEqual(got[f"r{i}"]["stats"]["prompt_tokens_reused"], reused[i], flags)
        self.assert_error(run("--no-prefix-reuse", "-p", "x"), "--no-prefix-reuse requires --batch")

    def test_json_writes_input_order_atomically(self):
        lines = [{"prompt": "a", "max_new_tokens": 6}, {"prompt": "b", "max_new_tokens": 1},
                 {"prompt": "c", "max_new_tokens": 3}]
        out_file = os.path.join(self.dir, "out.jsonl")
        streamed = self.run_batch(lines, "--parallel", "3", "--temperature", "0", "--json", out_file)
        self.assertEqual([o["id"] for o in streamed], [2, 3, 1])  # as each finished
        with open(out_file, encoding="utf-8") as f:
            ordered = [json.loads(line) for line in f]
        self.assertEqual([o["id"] for o in ordered], [1, 2, 3])
        self.assertEqual(sorted(os.listdir(self.dir)), ["batch.jsonl", "out.jsonl"])  # no temporary left
        at_end = self.run_batch(lines, "--parallel", "3", "--temperature", "0", "--json")
        self.assertEqual([o["id"] for o in at_end], [1, 2, 3])


class BadInput(BatchTest):
    def test_bad_lines_are_refused_before_anything_runs(self):
        cases = [("{not json", "line 2: not valid JSON"),
                 ('{"prompt": "x", "colour": 1}', 'line 2: unknown field "colour"'),
                 ('{"temperature": -1}', 'line 2: field "temperature" must be in [0, 100], got -1'),
                 ('{"max_new_tokens": 2.5}', 'line 2: field "max_new_tokens" must be a whole number'),
                 ('{"prompt": "x", "prompt_ids": [1]}', 'line 2: give "prompt" or "prompt_ids", not both'),
                 ('{"prompt_ids": [50257]}', 'line 2: field "prompt_ids": 50257 is not a token id in [0, 50257)'),
                 ('{"stop": [""]}', 'line 2: field "stop"'),
                 ('{"seed": -3}', 'line 2: field "seed" must be a whole number >= 0'),
                 ('{"prompt_ids": ' + json.dumps(list(range(200))) + "}", "line 2: the prompt has 200 tokens")]
        for line, needle in cases:
            proc = run("--batch", self.batch_file(["fine", line]), "-n", "2")
            self.assert_error(proc, needle)
            self.assertEqual(proc.stdout, "", "nothing is generated before the whole file is checked")

    def test_bad_flags(self):
        path = self.batch_file(["x"])
        self.assert_error(run("--batch", os.path.join(self.dir, "missing.txt")), "cannot open it")
        self.assert_error(run("--batch", path, "--parallel", "0"), "--parallel")
        self.assert_error(run("--parallel", "2", "-p", "x"), "--parallel requires --batch")
        self.assert_error(run("--batch", path, "-p", "x"), "excludes")
        self.assert_error(run("--batch", path, "--benchmark"), "excludes")

    def test_a_kv_cache_too_large_is_refused_before_loading(self):
        """GPT-2 XL's shapes (config.json only: the plan comes before the weights are read)."""
        config = read_json(os.path.join(TINY, "config.json"))
        config.update(n_layer=48, n_embd=1600, n_head=25, n_inner=6400, n_positions=1024)
        model = os.path.join(self.dir, "xl")
        os.mkdir(model)
        with open(os.path.join(model, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        proc = subprocess.run([BIN, "-m", model, "--batch", self.batch_file(["x"]), "--parallel", "1024"],
                              capture_output=True, text=True, timeout=60)
        self.assert_error(proc, "--parallel 1024 with a 1024-token context needs 644.25 GB of K/V cache")
        self.assertRegex(proc.stderr, r"use --parallel \d+ or -c \d+")

    def test_a_bad_stdin_line_ends_the_run_after_what_runs(self):
        proc = run("--batch", "-", "--parallel", "2", "-n", "3", stdin_text='first\nsecond\n{"oops": 1}\nnever\n')
        self.assert_error(proc, 'line 3: unknown field "oops"')
        self.assertEqual(sorted(json.loads(line)["id"] for line in proc.stdout.splitlines()), [1, 2])


class Process(BatchTest):
    def test_ctrl_c_writes_the_finished_and_the_interrupted(self):
        proc = subprocess.Popen([BIN, "-m", TINY, "--device", "cpu", "--batch", "-", "--parallel", "2",
                                 "--temperature", "0", "--ignore-eos", "--context-shift"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The long request is in flight before the short one (the next slot) can finish and be
        # printed: Ctrl-C then comes while the long one runs, whatever the timing.
        proc.stdin.write('{"prompt": "long", "max_new_tokens": 100000}\n{"prompt": "short", "max_new_tokens": 1}\n')
        proc.stdin.close()
        first = json.loads(proc.stdout.readline())  # the short request has finished
        self.assertEqual(first["id"], 2)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.stdout.read(), proc.stderr.read()
        self.assertEqual(proc.wait(timeout=120), 130, err)
        last = json.loads(rest.splitlines()[-1])
        self.assertEqual((last["id"], last["finish_reason"]), (1, "interrupted"))
        self.assertGreater(len(last["generated_ids"]), 0)

    def test_a_closed_stdout_ends_the_run_quietly(self):
        path = self.batch_file([{"prompt": "a", "max_new_tokens": 1}] + [{"prompt": "b", "max_new_tokens": 100}] * 6)
        proc = subprocess.Popen([BIN, "-m", TINY, "--device", "cpu", "--batch", path, "--parallel", "2",
                                 "--ignore-eos", "--context-shift"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        proc.stdout.readline()
        proc.stdout.close()
        _, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn("error", err)


if __name__ == "__main__":
    unittest.main()
