#!/usr/bin/env python3
"""The gpt2-gen command line on the CUDA backend, end to end, on cuda-emu (gpt2-gen-emu: the
same main() and backend linked against the CPU emulation of the CUDA runtime) with the tiny
golden model: the goldens through the CLI on `--device cuda`, what the summary and --json
report about the device (and the paths an emulated T4 gets), `--device auto` choosing it, the
refusals (a V100; bf16 on a T4), the decode variants (GPT2_CUDA_VARIANTS), and --benchmark. Generations are kept
short: every emulated decode step runs the 50257-row LM head as emulated warps."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

SOURCE = os.environ.get("GPT2_SOURCE_DIR", ".")
BIN = os.path.join(os.environ.get("GPT2_BINARY_DIR", "build"), "tests", "cuda_emu", "gpt2-gen-emu")
SHARED = os.environ.get("GPT2_SHARED_DIR", "../shared")
MODELS = os.environ.get("GPT2_TEST_MODELS", "build/test-models")
sys.path.insert(0, os.path.join(SOURCE, "tools"))
sys.path.insert(0, os.path.join(SOURCE, "tests"))
import benchmark_schema  # noqa: E402
import profile_reference  # noqa: E402
import profile_schema  # noqa: E402

with open(os.path.join(SHARED, "golden/tiny-gpt2/reference.json"), encoding="utf-8") as f:
    GOLDEN = json.load(f)
N = 12  # new tokens per generation


def run(*args, timeout=600, variants=None, gpu=None):
    """gpt2-gen-emu with `args`; `variants`: its GPT2_CUDA_VARIANTS; `gpu`: the GPU the emulator
    plays (GPT2_EMU_DEVICE)."""
    env = dict(os.environ)
    if variants:
        env["GPT2_CUDA_VARIANTS"] = variants
    if gpu:
        env["GPT2_EMU_DEVICE"] = gpu
    return subprocess.run([BIN, *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=env)


def ids(values):
    return ",".join(str(v) for v in values)


class CudaCli(unittest.TestCase):
    def generate_json(self, *args, model="tiny-fp32", variants=None):
        proc = run("-m", os.path.join(MODELS, model), "--json", *args, variants=variants)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        return json.loads(proc.stdout), proc.stderr.decode()

    def test_greedy_goldens_with_and_without_cache_in_fp32(self):
        for case in GOLDEN["greedy"]:
            for cache_flag in ([], ["--no-cache"]):
                out, _ = self.generate_json("--device", "cuda", "--dtype", "fp32", "--prompt-ids", ids(case["prompt"]),
                                            "-n", str(N), "--temperature", "0", "--ignore-eos", *cache_flag)
                self.assertEqual(out["generated_ids"], case["new_tokens"][:N], cache_flag)
                self.assertEqual(out["stats"]["kv_cache"], not cache_flag)

    def test_summary_and_json_report_the_device_and_its_memory(self):
        out, err = self.generate_json("--device", "cuda", "--prompt-ids", "464", "-n", "3", "--temperature", "0")
        s = out["stats"]
        self.assertEqual(s["device"], "cuda")
        self.assertIn("cuda-emu", s["device_name"])
        self.assertEqual(s["dtype"], "fp16")  # the CUDA default
        self.assertEqual(s["kv_cache_bytes"], 2 * 2 * 128 * 128 * 2)  # K and V, 2 layers, 128 slots, C 128, fp16
        self.assertGreater(s["weight_bytes"], 0)
        self.assertGreaterEqual(s["peak_device_bytes"], s["weight_bytes"] + s["kv_cache_bytes"])
        self.assertIn("device cuda (cuda-emu", err)
        self.assertIn("peak memory", err)

    def test_the_paths_a_gpu_gets_are_shown_and_old_gpus_and_bf16_before_ampere_are_refused(self):
        """On an emulated T4 the summary and --json name the paths chosen from its limits;
        --dtype bf16 there is one line, exit 1. On a V100 (compute capability 7.0) --device cuda is
        one line, exit 1, and --device auto runs on the CPU with a note."""
        model = os.path.join(MODELS, "tiny-fp32")
        proc = run("-m", model, "--json", "--device", "cuda", "--prompt-ids", "464", "-n", "2", gpu="t4")
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        paths = "compute capability 7.5, 40 SMs: prefill key tile 32, pdl unavailable"
        self.assertTrue(json.loads(proc.stdout)["stats"]["device_paths"].startswith(paths))
        self.assertIn("gpt2-gen: device paths: " + paths, proc.stderr.decode())
        for gpu, args, line in (
                ("t4", ["--dtype", "bf16"], "error: --dtype bf16 needs compute capability 8.0 or newer; this GPU "
                                            "(cuda-emu as Tesla T4) is 7.5: use --dtype fp16 or fp32"),
                ("v100", [], "error: --device cuda: no usable CUDA device: this GPU (cuda-emu as "
                             "Tesla V100-SXM2-16GB) is compute capability 7.0; gpt2-gen needs 7.5 or newer; "
                             "use --device cpu")):
            bad = run("-m", model, "--device", "cuda", "--prompt-ids", "464", "-n", "2", *args, gpu=gpu)
            self.assertEqual((bad.returncode, bad.stderr.decode().strip()), (1, line))
        auto = run("-m", model, "--json", "--prompt-ids", "464", "-n", "2", gpu="v100")
        self.assertEqual(auto.returncode, 0, auto.stderr.decode())
        self.assertEqual(json.loads(auto.stdout)["stats"]["device"], "cpu")
        self.assertIn("note: running on the CPU: no usable CUDA device: this GPU (cuda-emu as Tesla V100",
                      auto.stderr.decode())

    def test_version_says_cuda_is_emulated(self):
        proc = run("--version")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertIn(b"\nCUDA: emulated on the CPU", proc.stdout)

    def test_device_auto_chooses_the_gpu(self):
        out, err = self.generate_json("--prompt-ids", "464", "-n", "2", "--temperature", "0")
        self.assertEqual(out["stats"]["device"], "cuda")
        self.assertNotIn("running on the CPU", err)

    def test_sampled_generation_is_reproducible_and_agrees_with_the_cpu(self):
        args = ["--prompt-ids", ids(GOLDEN["greedy"][0]["prompt"]), "-n", str(N), "--temperature", "0.8",
                "--top-k", "40", "--top-p", "0.95", "--seed", "5", "--ignore-eos", "--dtype", "fp32"]
        gpu, _ = self.generate_json("--device", "cuda", *args)
        cpu, _ = self.generate_json("--device", "cpu", *args)
        self.assertEqual(gpu["generated_ids"], cpu["generated_ids"])

    def test_launch_ahead_and_all_variants_keep_the_goldens_and_the_cpu_samples(self):
        """GPT2_CUDA_VARIANTS through the CLI: `ahead` (the step after each token queued before the
        token is read, greedy and sampled) and `all` give the golden greedy continuation and the
        CPU backend's seeded samples; an unknown name is one line naming it, exit 1."""
        case = GOLDEN["greedy"][0]
        sampled = ["--prompt-ids", ids(case["prompt"]), "-n", str(N), "--temperature", "0.8", "--top-k", "40",
                   "--seed", "9", "--ignore-eos", "--dtype", "fp32"]
        cpu, _ = self.generate_json("--device", "cpu", *sampled)
        for variants in ("ahead", "all"):
            greedy, _ = self.generate_json("--device", "cuda", "--dtype", "fp32", "--prompt-ids", ids(case["prompt"]),
                                           "-n", str(N), "--temperature", "0", "--ignore-eos", variants=variants)
            self.assertEqual(greedy["generated_ids"], case["new_tokens"][:N], variants)
            gpu, _ = self.generate_json("--device", "cuda", *sampled, variants=variants)
            self.assertEqual(gpu["generated_ids"], cpu["generated_ids"], variants)
        bad = run("-m", os.path.join(MODELS, "tiny-fp32"), "--device", "cuda", "--prompt-ids", "464", "-n", "2",
                  variants="ahead,later")
        self.assertEqual(bad.returncode, 1)
        err = bad.stderr.decode().strip()
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn("'later'", err)

    def test_sampling_flags_reach_the_device_sampler(self):
        # At temperature 100 the draws are nearly uniform: only the flag itself (top-k 1, or a
        # tiny top-p over the whole vocabulary) keeps the device on the greedy golden path.
        case = GOLDEN["greedy"][0]
        for flags in (["--top-k", "1", "--top-p", "1"], ["--top-k", "0", "--top-p", "0.000001"]):
            out, _ = self.generate_json("--device", "cuda", "--dtype", "fp32", "--prompt-ids", ids(case["prompt"]),
                                        "-n", str(N), "--temperature", "100", "--seed", "3", "--ignore-eos", *flags)
            self.assertEqual(out["generated_ids"], case["new_tokens"][:N], flags)

    def test_continuous_batching_on_the_device_gives_the_cpus_outputs(self):
        # Four requests on two slots (each finished slot refilled): the goldens' greedy prompts
        # with different lengths and max_new_tokens, and one sampled request with a seed.
        lines = [json.dumps({"id": f"g{i}", "prompt_ids": c["prompt"], "max_new_tokens": 3 + 2 * i,
                             "temperature": 0}) for i, c in enumerate(GOLDEN["greedy"][:4])]
        lines.append(json.dumps({"id": "s", "prompt_ids": [464], "max_new_tokens": 5, "temperature": 0.9,
                                 "seed": 4}))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "batch.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(lines) + "\n")
            outputs = {}
            for device in ("cuda", "cpu"):
                proc = run("-m", os.path.join(MODELS, "tiny-fp32"), "--device", device, "--dtype", "fp32",
                           "--batch", path, "--parallel", "2", "--ignore-eos")
                self.assertEqual(proc.returncode, 0, proc.stderr.decode())
                outputs[device] = {o["id"]: o["generated_ids"] for o in map(json.loads, proc.stdout.splitlines())}
        self.assertEqual(len(outputs["cuda"]), len(lines))
        self.assertEqual(outputs["cuda"], outputs["cpu"])
        for i, c in enumerate(GOLDEN["greedy"][:4]):
            self.assertEqual(outputs["cuda"][f"g{i}"], c["new_tokens"][:3 + 2 * i])

    def test_benchmark_json_follows_the_schema(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "bench.json")
            proc = run("-m", os.path.join(MODELS, "tiny-fp16"), "--device", "cuda", "--benchmark", "--prompt-ids",
                       ids(GOLDEN["greedy"][0]["prompt"]), "-n", "6", "--runs", "1", "--json", path)
            self.assertEqual(proc.returncode, 0, proc.stderr.decode())
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        benchmark_schema.validate(data)
        self.assertEqual(data["device"], "cuda")
        self.assertEqual(data["dtype"], "fp16")
        self.assertTrue(data["tokens_identical"])  # greedy: cache and no-cache give the same tokens
        for mode in data["modes"]:
            self.assertGreater(mode["peak_memory_bytes"], mode["weight_bytes"])


class CudaProfile(unittest.TestCase):
    """--profile on the emulated device: the eager decode step's launches as rows, whatever the
    run's decode mode; rows, calls and bytes as tests/profile_reference.py works them out from
    config.json; the run's tokens unchanged. The emulator's times mean nothing and are not read."""
    PROMPT = [464, 3290, 318]
    N = 3

    def generate(self, *args, mode="graph", model="tiny-fp32"):
        env = dict(os.environ, GPT2_CUDA_DECODE=mode)
        proc = subprocess.run([BIN, "-m", os.path.join(MODELS, model), "--json", "--device", "cuda",
                               "--prompt-ids", ids(self.PROMPT), "-n", str(self.N), "--temperature", "0",
                               "--ignore-eos", *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=600,
                              env=env)
        self.assertEqual(proc.returncode, 0, proc.stderr.decode())
        return json.loads(proc.stdout), proc.stderr.decode()

    def test_rows_calls_and_bytes_follow_the_config(self):
        for mode, dtype in (("graph", "fp16"), ("eager", "fp32"), ("rows", "bf16")):
            with self.subTest(mode=mode, dtype=dtype):
                out, err = self.generate("--profile", "1", "--dtype", dtype, mode=mode)
                profile = out["stats"]["profile"]
                profile_schema.validate(profile)
                self.assertEqual((profile["device"], profile["steps"]), ("cuda", 1))
                context = len(self.PROMPT) + self.N - 1  # the step that computed the last token
                self.assertEqual(profile["context"], context)
                expected = profile_reference.expected_rows(os.path.join(MODELS, "tiny-fp32"), "cuda", dtype, context)
                self.assertEqual([r["op"] for r in profile["rows"]], [e[0] for e in expected])
                for row, (op, calls, nbytes) in zip(profile["rows"], expected):
                    self.assertEqual(row["calls_per_token"], calls, op)
                    self.assertEqual(row["bytes_per_call"], nbytes, op)
                    self.assertIn(f"| {op} ", err)
                self.assertGreater(profile["bandwidth"]["gb_per_s"], 0)  # the copy was measured

    def test_the_run_is_unchanged(self):
        plain, _ = self.generate()
        profiled, _ = self.generate("--profile", "1")
        self.assertEqual(profiled["generated_ids"], plain["generated_ids"])
        self.assertEqual(len(profiled["stats"]["token_ms"]), self.N)
        del profiled["stats"]["profile"]
        self.assertEqual(profiled["stats"].keys(), plain["stats"].keys())


if __name__ == "__main__":
    unittest.main()
