#!/usr/bin/env python3
"""gpt2-gen's command line, end to end on the tiny golden model (CPU): the goldens through
the CLI, every flag's validation, bad files, and the process-level behaviour (closed
stdout, Ctrl-C, stdin). Each bad input must give one clear `error:` line and a non-zero exit."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_support import BIN, GOLDEN, PROCESSORS, SHARED, TINY, read_json  # noqa: E402


def token_bytes():
    """GPT-2's id -> bytes, from vocab.json and the byte <-> unicode table of OpenAI's encoder.py."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1),
                 *range(ord("\u00ae"), ord("\u00ff") + 1)]
    others = [b for b in range(256) if b not in printable]
    char_to_byte = {chr(b): b for b in printable}
    char_to_byte.update({chr(256 + i): b for i, b in enumerate(others)})
    vocab = read_json(os.path.join(SHARED, "gpt2-tokenizer/vocab.json"))
    return {i: bytes(char_to_byte[c] for c in token) for token, i in vocab.items()}


def run(*args, stdin=subprocess.DEVNULL, timeout=120):
    return subprocess.run([BIN, *args], stdin=stdin, capture_output=True, timeout=timeout)


def ids(values):
    return ",".join(str(v) for v in values)


class CliTest(unittest.TestCase):
    def assert_error(self, proc, needle):
        err = proc.stderr.decode("utf-8", "replace")
        self.assertNotEqual(proc.returncode, 0, f"expected failure; stderr: {err}")
        self.assertIn(needle, err)
        self.assertNotIn("terminate called", err)
        self.assertNotIn("Traceback", err)
        self.assertLess(proc.returncode, 128, "killed by a signal")

    def generate_json(self, *args):
        proc = run("-m", TINY, "--json", *args)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        return json.loads(proc.stdout)


class Goldens(CliTest):
    def test_greedy_continuations_with_and_without_cache(self):
        for case in GOLDEN["greedy"]:
            for cache_flag in ([], ["--no-cache"]):
                out = self.generate_json("--prompt-ids", ids(case["prompt"]), "-n", "60", "--temperature", "0",
                                         "--ignore-eos", *cache_flag)
                self.assertEqual(out["generated_ids"], case["new_tokens"], cache_flag)
                self.assertEqual(out["prompt_ids"], case["prompt"])
                self.assertEqual(out["finish_reason"], "length")
                self.assertEqual(out["stats"]["kv_cache"], not cache_flag)

    def test_json_has_the_documented_fields(self):
        out = self.generate_json("--prompt-ids", "464", "-n", "5", "--temperature", "0")
        for key in ("prompt_ids", "generated_ids", "text", "finish_reason", "stats"):
            self.assertIn(key, out)
        for key in ("device", "dtype", "kv_cache", "load_ms", "prefill_ms", "decode_ms", "decode_tokens_per_s",
                    "kv_cache_bytes"):
            self.assertIn(key, out["stats"])
        self.assertEqual(out["stats"]["device"], "cpu")
        self.assertEqual(out["stats"]["dtype"], "fp32")
        # K and V, 2 layers, 128 slots, 128 channels, fp32 (the CPU's default K/V format)
        self.assertEqual(out["stats"]["kv_dtype"], "fp32")
        self.assertEqual(out["stats"]["kv_cache_bytes"], 2 * 2 * 128 * 128 * 4)

    def test_cpu_weight_types_and_threads(self):
        # --dtype on the CPU is how the weight matrices are held: fp16 halves their bytes, int8
        # (one fp32 scale per 32) takes 1.125 bytes each; -t sets the threads. The tiny model's
        # matrices: wte (50257 x 128) and 12 C^2 per layer.
        matrices = 50257 * 128 + 2 * 12 * 128 * 128
        stats = {}
        for args in (["--dtype", "fp32"], ["--dtype", "fp16"], ["--dtype", "int8"], ["-t", "1"]):
            out = self.generate_json("--prompt-ids", "464", "-n", "3", "--temperature", "0", *args)
            stats[" ".join(args)] = out["stats"]
        self.assertEqual(stats["--dtype fp16"]["dtype"], "fp16")
        self.assertEqual(stats["--dtype int8"]["dtype"], "int8")
        fp32_bytes = stats["--dtype fp32"]["weight_bytes"]
        self.assertEqual(fp32_bytes - stats["--dtype fp16"]["weight_bytes"], 2 * matrices)
        self.assertEqual(fp32_bytes - stats["--dtype int8"]["weight_bytes"], 4 * matrices - matrices * 9 // 8)
        self.assertEqual(stats["-t 1"]["weight_bytes"], fp32_bytes)

    def test_cpu_prefetch_distance_is_reported_and_can_be_set(self):
        # The start-up probe skips a model under twice the last-level cache (the tiny one): the
        # default distance stays, and the summary and --json say so; GPT2_CPU_PREFETCH sets it.
        out = self.generate_json("--prompt-ids", "464", "-n", "2")
        self.assertEqual(out["stats"]["cpu_prefetch_bytes"], 8192)
        self.assertEqual(out["stats"]["cpu_prefetch_probe_ms"], 0)
        self.assertIn("weights prefetched 8 KB ahead (default: the weights nearly fit in the cache)",
                      out["stats"]["device_paths"])
        env = dict(os.environ, GPT2_CPU_PREFETCH="4096")
        proc = subprocess.run([BIN, "-m", TINY, "--prompt-ids", "464", "-n", "2", "--json"], env=env,
                              capture_output=True, timeout=120)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        self.assertEqual(json.loads(proc.stdout)["stats"]["cpu_prefetch_bytes"], 4096)
        proc = subprocess.run([BIN, "-m", TINY, "--prompt-ids", "464", "-n", "2"], env=env, capture_output=True,
                              timeout=120)
        self.assertIn("device paths: ", proc.stderr.decode())
        self.assertIn("weights prefetched 4 KB ahead (set by GPT2_CPU_PREFETCH)", proc.stderr.decode())
        for bad in ("abc", "-1", "99999999", ""):
            proc = subprocess.run([BIN, "-m", TINY, "--prompt-ids", "464", "-n", "2"],
                                  env=dict(os.environ, GPT2_CPU_PREFETCH=bad), capture_output=True, timeout=120)
            self.assert_error(proc, "GPT2_CPU_PREFETCH")

    def test_tokenize(self):
        proc = run("-m", TINY, "--tokenize", "-p", "What is KV caching?")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.decode().strip(), "[2061, 318, 509, 53, 40918, 30]")

    def test_text_prompt_equals_its_ids(self):
        a = self.generate_json("-p", "What is KV caching?", "-n", "8", "--temperature", "0")
        b = self.generate_json("--prompt-ids", "2061,318,509,53,40918,30", "-n", "8", "--temperature", "0")
        self.assertEqual(a["generated_ids"], b["generated_ids"])
        self.assertEqual(a["prompt_ids"], [2061, 318, 509, 53, 40918, 30])

    def test_streamed_text_is_prompt_plus_generated_text(self):
        out = self.generate_json("-p", "Hello", "-n", "10", "--temperature", "0")
        proc = run("-m", TINY, "-p", "Hello", "-n", "10", "--temperature", "0")
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(proc.stdout.decode("utf-8", "replace"), "Hello" + out["text"] + "\n")
        self.assertIn("tokens/s", proc.stderr.decode())

    def test_empty_prompt_starts_from_end_of_text(self):
        out = self.generate_json("-p", "", "-n", "3", "--temperature", "0")
        self.assertEqual(out["prompt_ids"], [50256])

    def test_seed_reproduces_and_is_reported(self):
        a = self.generate_json("-p", "Hi", "-n", "20", "--seed", "5", "--top-k", "0", "--temperature", "1.5")
        b = self.generate_json("-p", "Hi", "-n", "20", "--seed", "5", "--top-k", "0", "--temperature", "1.5")
        self.assertEqual(a["generated_ids"], b["generated_ids"])
        self.assertEqual(a["stats"]["seed"], 5)
        proc = run("-m", TINY, "-p", "Hi", "-n", "2")
        self.assertRegex(proc.stderr.decode(), r"seed \d+")

    def test_the_seed_decides_the_draws(self):
        # Another seed draws other tokens (20 draws at temperature 1.5 over the whole vocabulary
        # cannot coincide by chance), and the seed a run without --seed reports reproduces it.
        args = ("-p", "Hi", "-n", "20", "--top-k", "0", "--top-p", "1", "--temperature", "1.5")
        a = self.generate_json(*args, "--seed", "5")
        b = self.generate_json(*args, "--seed", "6")
        self.assertNotEqual(a["generated_ids"], b["generated_ids"])
        free = self.generate_json(*args)
        again = self.generate_json(*args, "--seed", str(free["stats"]["seed"]))
        self.assertEqual(free["generated_ids"], again["generated_ids"])

    def test_max_new_tokens_zero(self):
        out = self.generate_json("-p", "Hi", "-n", "0")
        self.assertEqual(out["generated_ids"], [])

    def test_stops_at_the_context_and_says_so(self):
        out = self.generate_json("--prompt-ids", ids([464] * 120), "-n", "50", "--temperature", "0", "--ignore-eos")
        self.assertEqual(out["finish_reason"], "context")
        self.assertEqual(len(out["generated_ids"]), 128 - 120 + 1)

    def test_context_shift_cache_and_no_cache_agree(self):
        args = ("--prompt-ids", "464", "-n", "300", "--temperature", "0", "--ignore-eos", "--context-shift")
        a = self.generate_json(*args)
        b = self.generate_json(*args, "--no-cache")
        self.assertEqual(len(a["generated_ids"]), 300)
        self.assertEqual(a["generated_ids"], b["generated_ids"])

    def test_json_file_is_written(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "out.json")
            proc = run("-m", TINY, "-p", "Hi", "-n", "3", "--json", path)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            self.assertEqual(len(read_json(path)["generated_ids"]), 3)
            self.assertEqual(os.listdir(d), ["out.json"])
            self.assert_error(run("-m", TINY, "-p", "Hi", "-n", "1", "--json", d), "is a directory")

    def test_json_into_a_device_keeps_the_device(self):
        proc = run("-m", TINY, "-p", "Hi", "-n", "1", "--json", os.devnull)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertFalse(os.path.isfile(os.devnull), "/dev/null was replaced by a regular file")


class SamplingFlags(CliTest):
    """Each sampling flag reaches the sampler: at a temperature where plain sampling wanders off
    the greedy path, the flag alone brings the golden greedy tokens back."""
    GREEDY = GOLDEN["greedy"][0]
    N = 20

    def sample(self, *flags, seed=7):
        out = self.generate_json("--prompt-ids", ids(self.GREEDY["prompt"]), "-n", str(self.N), "--ignore-eos",
                                 "--seed", str(seed), *flags)
        return out["generated_ids"]

    def test_a_high_temperature_alone_leaves_the_greedy_path(self):
        # The control for the tests below: at temperature 100 over the whole vocabulary (or the
        # default top-k 40 / top-p 0.95) the draws are nearly uniform, so almost no token is greedy.
        want = self.GREEDY["new_tokens"][: self.N]
        for flags in (["--top-k", "0", "--top-p", "1"], []):
            got = self.sample("--temperature", "100", *flags)
            self.assertLess(sum(a == b for a, b in zip(got, want)), 5, flags)

    def test_top_k_one_is_greedy_at_any_temperature(self):
        got = self.sample("--temperature", "100", "--top-k", "1", "--top-p", "1", seed=1)
        self.assertEqual(got, self.GREEDY["new_tokens"][: self.N])

    def test_a_tiny_top_p_is_greedy_at_any_temperature(self):
        # At temperature 100 the best token holds about 1/50257 of the mass, far above 1e-6.
        got = self.sample("--temperature", "100", "--top-k", "0", "--top-p", "0.000001", seed=2)
        self.assertEqual(got, self.GREEDY["new_tokens"][: self.N])

    def test_temperature_zero_and_a_tiny_temperature_are_greedy(self):
        # --temperature 1e-4: the golden margins (>= 0.003) become >= 30 nats, so the second-best
        # token has p < e^-30 at every step; the default temperature 0.8 would wander off.
        for flags in (["--temperature", "0"], ["--temperature", "0.0001"]):
            got = self.sample(*flags, "--top-k", "0", "--top-p", "1")
            self.assertEqual(got, self.GREEDY["new_tokens"][: self.N], flags)


class Version(CliTest):
    def test_version_names_version_commit_build_type_and_cuda(self):
        proc = run("--version")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        lines = proc.stdout.decode().splitlines()
        self.assertRegex(lines[0], r"^gpt2-gen \d+\.\d+\.\d+$")
        self.assertRegex(lines[1], r"^commit: [0-9a-f]{7,}(-dirty)?$|^commit: unknown$")
        self.assertRegex(lines[2], r"^build type: \w+$")
        self.assertRegex(lines[3], r"^CUDA: (not compiled in|compiled in, CUDA architectures \S+)")
        # Then the decode variants (tools/gpu_check.sh reads its list here; test_cuda_variants
        # checks the lines against the table): a heading, "  name: what" each, pdl among them.
        self.assertRegex(lines[4], r"^CUDA decode variants \(GPT2_CUDA_VARIANTS=")
        names = [re.match(r"^  ([a-z0-9]+): \S", line).group(1) for line in lines[5:]]
        self.assertIn("pdl", names)
        self.assertEqual(len(names), len(set(names)))


class GenerationControls(CliTest):
    GREEDY = ("--prompt-ids", "464", "--temperature", "0", "--ignore-eos")

    def test_processor_goldens(self):
        # One prompt per setting through the CLI (every case runs in test_cpu_golden).
        flags = {"repetition_penalty": "--repeat-penalty", "no_repeat_ngram_size": "--no-repeat-ngram-size"}
        seen = set()
        for case in PROCESSORS["cases"]:
            key = json.dumps(case["settings"], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            args = [a for k, v in case["settings"].items() for a in (flags[k], str(v))]
            out = self.generate_json("--prompt-ids", ids(case["prompt"]), "-n", str(len(case["new_tokens"])),
                                     "--temperature", "0", "--ignore-eos", *args)
            self.assertEqual(out["generated_ids"], case["new_tokens"], case["settings"])
        self.assertEqual(len(seen), 4)

    def greedy_text_and_pieces(self, n):
        out = self.generate_json(*self.GREEDY, "-n", str(n))
        vocab = token_bytes()
        pieces = [vocab[i] for i in out["generated_ids"]]
        self.assertEqual(b"".join(pieces).decode("utf-8", "replace"), out["text"])
        return out, pieces

    def test_stop_string_split_over_two_tokens(self):
        out, pieces = self.greedy_text_and_pieces(12)
        # The last two bytes of token 5 and the first two of token 6 (ASCII in this continuation).
        stop = (pieces[5][-2:] + pieces[6][:2]).decode("ascii")
        want_text = out["text"][:out["text"].index(stop)]
        got = self.generate_json(*self.GREEDY, "-n", "12", "--stop", stop, "--stop", "never appears")
        self.assertEqual(got["finish_reason"], "stop")
        self.assertEqual(got["stop_string"], stop)
        self.assertEqual(got["text"], want_text)
        self.assertEqual(got["generated_ids"], out["generated_ids"][:7])  # up to the completing token
        # Streaming: the prompt, the text before the stop string, a newline; the stop string never.
        proc = run("-m", TINY, *self.GREEDY, "-n", "12", "--stop", stop)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(proc.stdout.decode("utf-8"), "The" + want_text + "\n")
        self.assertIn(b'finish reason "stop"', proc.stderr)

    def test_stop_string_at_the_very_first_token(self):
        out, pieces = self.greedy_text_and_pieces(3)
        stop = pieces[0].decode("ascii")
        got = self.generate_json(*self.GREEDY, "-n", "3", "--stop", stop)
        self.assertEqual((got["finish_reason"], got["text"], got["generated_ids"]), ("stop", "", out["generated_ids"][:1]))
        proc = run("-m", TINY, *self.GREEDY, "-n", "3", "--stop", stop, "--no-display-prompt")
        self.assertEqual(proc.stdout, b"\n")

    def test_no_stop_string_match_changes_nothing(self):
        out = self.generate_json(*self.GREEDY, "-n", "6")
        got = self.generate_json(*self.GREEDY, "-n", "6", "--stop", "\u00e9\u00e9\u00e9")
        self.assertEqual((got["finish_reason"], got["text"]), ("length", out["text"]))
        self.assertNotIn("stop_string", got)

    def test_benchmark_says_it_ignores_them(self):
        proc = run("-m", TINY, "--benchmark", "--runs", "1", "-n", "2", "--prompt-ids", "464",
                   "--repeat-penalty", "1.3", "--stop", "x")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"--benchmark ignores --repeat-penalty, --stop", proc.stderr)


class BadInput(CliTest):
    def test_flag_values(self):
        cases = [
            (["-n", "-1"], "max-new-tokens"),
            (["--temperature", "-0.5"], "temperature"),
            (["--top-k", "-3"], "top-k"),
            (["--top-p", "0"], "top-p"),
            (["--top-p", "1.5"], "top-p"),
            (["--top-p", "abc"], "top-p"),
            (["--device", "tpu"], "device"),
            (["--dtype", "int4"], "dtype"),
            (["-t", "-1"], "threads"),
            (["--threads", "x"], "threads"),
            (["--ctx-size", "-1"], "ctx-size"),
            (["--ctx-size", "4096"], "ctx-size"),
            (["--runs", "0"], "runs"),
            (["--no-such-flag"], "no-such-flag"),
            (["-p", "a", "--prompt-ids", "1"], "excludes"),
            (["--repeat-penalty", "0"], "repeat-penalty: must be > 0"),
            (["--repeat-penalty", "-1.3"], "repeat-penalty"),
            (["--min-p", "-0.1"], "min-p: must be in [0, 1]"),
            (["--min-p", "1.01"], "min-p"),
            (["--no-repeat-ngram-size", "-2"], "no-repeat-ngram-size: must be >= 0"),
            (["--repeat-last-n", "-64"], "repeat-last-n: must be >= 0"),
            (["--presence-penalty", "nan"], "presence-penalty"),
            (["--frequency-penalty", "abc"], "frequency-penalty"),
            (["--stop", ""], "stop: must not be empty"),
            (["--stop", b"\xff"], "stop: must be valid UTF-8"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                proc = run("-m", TINY, *args)
                self.assert_error(proc, needle)
                # status 1 like every other bad input (CLI11's own codes are 105, 106, ...), one line
                self.assertEqual(proc.returncode, 1)
                self.assertEqual(len(proc.stderr.decode().strip().splitlines()), 1, proc.stderr)

    def test_missing_model_directory_says_how_to_convert(self):
        self.assert_error(run("-m", "/nonexistent/model", "-p", "x"), "convert_weights.py")

    def test_prompt_ids(self):
        self.assert_error(run("-m", TINY, "--prompt-ids", "1,50257"), "outside the vocabulary")
        self.assert_error(run("-m", TINY, "--prompt-ids", "1,-2"), "outside the vocabulary")
        self.assert_error(run("-m", TINY, "--prompt-ids", "1,,2"), "not a token id")
        self.assert_error(run("-m", TINY, "--prompt-ids", "1;2"), "not a token id")
        self.assert_error(run("-m", TINY, "--prompt-ids", "99999999999999999999"), "not a token id")

    def test_prompt_longer_than_the_context(self):
        self.assert_error(run("-m", TINY, "--prompt-ids", ids([464] * 129)), "shorten the prompt")
        self.assert_error(run("-m", TINY, "-p", "hello " * 200), "shorten the prompt")

    def test_prompt_file_missing_or_directory(self):
        self.assert_error(run("-m", TINY, "-f", "/nonexistent/prompt.txt"), "prompt-file")
        self.assert_error(run("-m", TINY, "-f", tempfile.gettempdir()), "is a directory")

    def test_device_cuda_without_a_gpu(self):
        proc = run("-m", TINY, "--device", "cuda", "-p", "x", "-n", "1")
        if proc.returncode == 0:
            self.skipTest("a CUDA device is present")
        self.assert_error(proc, "no usable CUDA device")

    def test_unwritable_json_file(self):
        self.assert_error(run("-m", TINY, "-p", "x", "-n", "1", "--json", "/nonexistent/dir/out.json"),
                          "cannot write")

    def test_damaged_model_files(self):
        with tempfile.TemporaryDirectory() as d:
            bad = os.path.join(d, "m")
            shutil.copytree(TINY, bad)
            weights = os.path.join(bad, "model.safetensors")
            with open(weights, "rb") as f:
                data = f.read()

            def write(path, payload):
                with open(path, "wb") as f:
                    f.write(payload)

            write(weights, data[: len(data) // 3])
            self.assert_error(run("-m", bad, "-p", "x"), "truncated")
            write(weights, data[:8] + b"#" + data[9:])
            self.assert_error(run("-m", bad, "-p", "x"), "model.safetensors")
            write(weights, data)
            config = read_json(os.path.join(bad, "config.json"))
            config["n_embd"] = 64
            write(os.path.join(bad, "config.json"), json.dumps(config).encode())
            self.assert_error(run("-m", bad, "-p", "x"), "has shape")
            os.remove(os.path.join(bad, "config.json"))
            self.assert_error(run("-m", bad, "-p", "x"), "config.json")

    def test_a_fifo_in_the_model_directory_is_refused_without_blocking(self):
        # Nobody writes into the FIFO: opening it the plain way would wait forever, so the
        # timeout turns a regression into a failure instead of a hung test.
        for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt"):
            with self.subTest(file=name), tempfile.TemporaryDirectory() as d:
                bad = os.path.join(d, "m")
                shutil.copytree(TINY, bad)
                os.remove(os.path.join(bad, name))
                os.mkfifo(os.path.join(bad, name))
                try:
                    proc = run("-m", bad, "-p", "x", "-n", "1", timeout=60)
                except subprocess.TimeoutExpired:
                    self.fail(f"gpt2-gen blocked on {name} as a FIFO")
                self.assert_error(proc, name)
                self.assert_error(proc, "not a regular file")


class Process(CliTest):
    LONG = ("-m", TINY, "-p", "Hi", "-n", "100000", "--ignore-eos", "--context-shift")

    def test_stdin_prompt_and_closed_stdin(self):
        proc = subprocess.run([BIN, "-m", TINY, "-f", "-", "-n", "2", "--json"], input=b"What is KV caching?",
                              capture_output=True, timeout=60)
        self.assertEqual(json.loads(proc.stdout)["prompt_ids"], [2061, 318, 509, 53, 40918, 30])
        proc = run("-m", TINY, "-f", "-", "-n", "2", "--json", stdin=subprocess.DEVNULL)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertEqual(json.loads(proc.stdout)["prompt_ids"], [50256])

    def test_closed_stdout_exits_quietly(self):
        # gpt2-gen ... | head -c 10
        proc = subprocess.Popen([BIN, *self.LONG], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.read(10)
        proc.stdout.close()
        _, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0, err)
        self.assertNotIn(b"error", err)
        self.assertNotIn(b"Broken pipe", err)

    def test_ctrl_c_stops_prints_the_summary_and_exits_130(self):
        proc = subprocess.Popen([BIN, *self.LONG], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.read(20)  # generation is under way
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 130, err)
        self.assertIn(b'finish reason "interrupted"', err)


if __name__ == "__main__":
    unittest.main()
