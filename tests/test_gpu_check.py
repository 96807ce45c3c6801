#!/usr/bin/env python3
"""tools/gpu_check.sh's own plumbing, on stand-in binaries (no GPU, no build needed; a few
seconds a run): a step that crashes or fails leaves every other step run and reported, and
reported as it ends (a check killed mid-way has left every ended step's result in $OUT), an
[exact] variant's comparison reports SKIP when its reference run failed and FAIL when its tokens
differ, a missing Python package makes the HF steps SKIP, a plant that plants nothing and a
budget too small are refused or reported INCOMPLETE, and $OUT holds the summary and every result.

The stand-ins (written here): gpt2-gen prints its variants (`fast`, and `sched`, [exact]),
writes a --json report of 7s (8s for the variant STANDIN_WRONG_VARIANT names; the processors'
reference continuation for their prompt), a --profile and a --benchmark report; the GoogleTest binaries report skipped tests; numpy cannot
be imported (a module that raises ImportError on PYTHONPATH).
Also tools/narrow_model.py (convert_weights.py's bytes), and tools/random_model.py, the check's benchmark model: the same seed gives the same bytes, the
header describes the data exactly, and gpt2-gen (this build's, when there is one) generates
from it.
"""
import json
import os
import signal
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

SOURCE = os.path.abspath(os.environ.get("GPT2_SOURCE_DIR", "."))
CHECK = os.path.join(SOURCE, "tools", "gpu_check.sh")
RANDOM_MODEL = os.path.join(SOURCE, "tools", "random_model.py")
TOKENIZER = os.path.join(os.environ.get("GPT2_SHARED_DIR", os.path.join(SOURCE, "..", "shared")), "gpt2-tokenizer")
GPT2_GEN = os.path.join(os.environ.get("GPT2_BINARY_DIR", os.path.join(SOURCE, "build")), "gpt2-gen")

# In shell, not Python: the check starts it ~25 times a run.
STANDIN_GEN = r'''#!/bin/bash
n=4 ids=1 json=- bench=0 profile=""
while [ $# -gt 0 ]; do
  case $1 in
    --version) printf 'gpt2-gen stand-in\nCUDA decode variants:\n  fast: a variant\n  sched: only the schedule [exact]\n'; exit 0 ;;
    --help) echo "  --profile [K]"; [ -z "${STANDIN_NO_KV_DTYPE:-}" ] && echo "  --kv-dtype"; exit 0 ;;
    -n) n=$2; shift ;;
    --prompt-ids) ids=$2; shift ;;
    --json) json=$2; shift ;;
    --benchmark) bench=1 ;;
    --profile) profile=', "profile": {"ops_us": 9.0, "step_us": 10.0}' ;;
  esac
  shift
done
tok=7; [ "${STANDIN_WRONG_VARIANT:--}" = "${GPT2_CUDA_VARIANTS:-}" ] && tok=8
gen=$(printf "$tok,%.0s" $(seq "$n")); gen="[${gen%,}]"
[ "$ids" = 1,2 ] && gen="[5, 6, 7]"  # the processors' reference continuation of [1, 2]
out="{\"generated_ids\": $gen, \"stats\": {\"generated_tokens\": $n, \"token_ms\": [1.0, 1.0], \"decode_ms\": $n.0, \"prefill_ms\": 1.0, \"load_ms\": 2.0$profile}}"
[ $bench = 1 ] && out='{"speedup": 3.0, "tokens_identical": true}'
case $json in -*) echo "$out" ;; *) echo "$out" >"$json" ;; esac
'''
GTEST = '''#!/bin/sh
echo "[  PASSED  ] 0 tests."
echo "[  SKIPPED ] 2 tests, listed below:"
'''


def write(path, text, executable=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    if executable:
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


def make_bundle(root):
    b = os.path.join(root, "bundle")
    write(f"{b}/bin/gpt2-gen", STANDIN_GEN, True)
    write(f"{b}/bin/gpt2-dump-logits", "#!/bin/sh\nexit 1\n", True)
    for t in ("test_gpu_kernels", "test_gpu_kv_formats", "test_gpu_kv_backend", "test_gpu_backend", "test_gpu_batch"):
        write(f"{b}/bin/{t}", GTEST, True)
    case = {"settings": {"repetition_penalty": 1.3}, "prompt": [1, 2], "new_tokens": [5, 6, 7], "min_top2_margin": 1}
    write(f"{b}/shared/golden/tiny-gpt2/reference_processors.json", json.dumps({"cases": [case, case]}))
    write(f"{b}/shared/gpt2-tokenizer/vocab.json", "{}")
    write(f"{b}/shared/gpt2-tokenizer/merges.txt", "")
    for m in ("tiny-fp32", "tiny-fp16"):
        os.makedirs(f"{b}/models/{m}")
    write(f"{root}/fake/numpy.py", "raise ImportError('no numpy here (planted by test_gpu_check)')\n")
    return b


class GpuCheck(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.bundle = make_bundle(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_check(self, name, kill_at=None, **env):
        """Runs the dry check; returns (exit status, output, results.json, $OUT). kill_at: a step
        whose start kills the check and all it started (SIGKILL, as a device call cut short)."""
        base = os.path.join(self.tmp.name, name)
        out = os.path.join(base, "out")
        os.makedirs(out)
        e = {k: v for k, v in os.environ.items() if not k.startswith(("GPU_CHECK_", "STANDIN_"))}
        e.update(GPU_CHECK_DRY="1", GPU_CHECK_BUNDLE=self.bundle, OUT=out, GPU_CHECK_LOGS=os.path.join(base, "logs"),
                 GPU_CHECK_WORK=os.path.join(base, "work"), PYTHONPATH=os.path.join(self.tmp.name, "fake"), **env)
        p = subprocess.Popen(["bash", CHECK], env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        if kill_at:
            self.kill_when(p, os.path.join(out, "gpu_check.log"), f"log {kill_at}.log)")
        log = p.communicate(timeout=300)[0]
        self.assertTrue(os.path.exists(os.path.join(out, "results.json")), "no results.json in $OUT:\n" + log)
        with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
            results = json.load(f)
        return p.returncode, log, results, out

    @staticmethod
    def kill_when(p, log, line, limit_s=200):
        deadline = time.time() + limit_s
        while time.time() < deadline and p.poll() is None:
            if os.path.exists(log):
                with open(log, encoding="utf-8", errors="replace") as f:
                    if line in f.read():
                        break
            time.sleep(0.1)
        os.killpg(p.pid, signal.SIGKILL)

    def steps(self, results):
        return {s["step"]: (s["result"], s["info"]) for s in results["steps"]}

    def assert_every_step_reported(self, results, out, last=None):
        """Every step of the plan (up to `last`, excluded) is in results.json, summary.txt and
        logs.tgz came back too."""
        got = [s["step"] for s in results["steps"]]
        plan = ["unpack", "libraries", "nvidia-smi", "test_gpu_kernels", "test_gpu_kv_formats", "test_gpu_kv_backend",
                "test_gpu_backend", "test_gpu_batch", "processors", "hf_imports", "hf_compare", "racecheck",
                "memcheck_none", "memcheck_all", "memcheck_all_sampled", "initcheck", "bench_model", "cache_none",
                "nocache_none", "cache_all", "cache_fast", "cache_sched", "exact_sched", "profile_none", "profile_all",
                "kv_fp32", "kv_fp16", "kv_bf16", "kv_int8", "penalties", "benchmark"]
        plan = plan[:plan.index(last)] if last else plan
        self.assertEqual(got, plan)
        with open(os.path.join(out, "summary.txt"), encoding="utf-8") as f:
            summary = f.read()
        for step in plan:
            self.assertIn(f"| {step} ", summary)
        with tarfile.open(os.path.join(out, "logs.tgz")) as t:
            names = t.getnames()
        self.assertIn("./cache_none.log", names)
        self.assertIn("./results.json", names)

    def test_a_crashing_reference_and_step_leave_every_other_result(self):
        # ... and the call is cut short when the last step starts: what ended came back already.
        rc, log, results, out = self.run_check("crash", kill_at="benchmark", STANDIN_NO_KV_DTYPE="1",
                                               GPU_CHECK_PLANT="crash-variant:none,crash:racecheck,hang:benchmark")
        self.assertEqual(rc, -signal.SIGKILL, log)
        self.assertEqual(results["status"], "RUNNING")
        self.assert_every_step_reported(results, out, last="benchmark")
        s = self.steps(results)
        for step in ("racecheck", "memcheck_none", "initcheck", "cache_none", "nocache_none", "profile_none",
                     "penalties"):
            self.assertEqual(s[step][0], "FAIL", step)
            self.assertIn("signal 11", s[step][1], step)
        for step in ("memcheck_all", "cache_all", "cache_fast", "cache_sched", "profile_all"):
            self.assertEqual(s[step][0], "ok", step)
        self.assertEqual(s["exact_sched"][0], "SKIP")
        self.assertIn("reference run cache_none failed", s["exact_sched"][1])
        for f in ("fp32", "fp16", "bf16", "int8"):  # a gpt2-gen without --kv-dtype
            self.assertEqual(s[f"kv_{f}"], ("SKIP", "this gpt2-gen has no --kv-dtype (issue 24's CLI flag not in this build)"))
        with open(os.path.join(out, "summary.txt"), encoding="utf-8") as f:
            self.assertIn("RUNNING, rewritten as each step ends", f.read())
        self.assertIn("PLANTED FAILURES: crash-variant:none,crash:racecheck,hang:benchmark", log)

    def test_an_exact_variant_with_other_tokens_fails_and_the_rest_passes(self):
        rc, log, results, out = self.run_check("wrong", STANDIN_WRONG_VARIANT="sched")
        self.assertEqual(rc, 1, log)
        self.assert_every_step_reported(results, out)
        s = self.steps(results)
        self.assertEqual(s["exact_sched"][0], "FAIL")
        self.assertIn("first 0 of 20 tokens", s["exact_sched"][1])
        self.assertEqual(s["hf_imports"][0], "SKIP")
        self.assertIn("no numpy here", s["hf_imports"][1])
        self.assertEqual(s["hf_compare"][0], "SKIP")
        others = {k: v for k, v in s.items() if k not in ("exact_sched", "hf_imports", "hf_compare", "nvidia-smi")}
        self.assertEqual({k: "ok" for k in others}, {k: v[0] for k, v in others.items()}, log)
        self.assertIn("processors: 2 of 2 runs", log)
        self.assertIn("first 20 of 20 tokens = cache_none's", s["kv_fp16"][1])
        for f in ("summary.txt", "results.json", "logs.tgz", "gpu_check.log", "variants.txt", "benchmark.json"):
            self.assertTrue(os.path.exists(os.path.join(out, f)), f)

    def test_a_plant_that_plants_nothing_is_refused(self):
        rc, log, results, _ = self.run_check("typo", GPU_CHECK_PLANT="crash:no_such_step")
        self.assertEqual(rc, 1, log)
        self.assertIn("'crash:no_such_step' plants nothing", log)
        self.assertEqual(results["steps"][-1]["step"], "plant")

    def test_a_budget_too_small_is_incomplete_not_a_pass(self):
        rc, log, results, _ = self.run_check("budget", GPU_CHECK_BUDGET_S="6")
        self.assertEqual(rc, 2, log)
        self.assertEqual(results["status"], "INCOMPLETE")
        s = self.steps(results)
        self.assertEqual(s["test_gpu_kernels"][0], "INCOMPLETE")
        self.assertIn("not run", s["test_gpu_kernels"][1])
        self.assertIn("This is NOT a pass", log)


class RandomModel(unittest.TestCase):
    def write(self, out, seed, *tokenizer):
        r = subprocess.run([sys.executable, RANDOM_MODEL, "--out", out, "--seed", str(seed), "--n-layer", "1",
                            "--n-embd", "64", "--n-head", "2", "--dtype", "fp32", *tokenizer], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            return f.read()

    def test_a_seed_gives_one_model_that_gpt2_gen_runs(self):
        with tempfile.TemporaryDirectory() as tmp:
            a = self.write(os.path.join(tmp, "a"), 0, "--tokenizer", TOKENIZER)
            self.assertEqual(a, self.write(os.path.join(tmp, "b"), 0))
            n = struct.unpack("<Q", a[:8])[0]
            header = json.loads(a[8:8 + n])
            self.assertEqual(header["__metadata__"]["format"], "gpt2-gen")
            ends = sorted(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
            self.assertEqual(len(a), 8 + n + ends[-1])
            wte = struct.unpack_from(f"<{50257 * 64}f", a, 8 + n + header["wte"]["data_offsets"][0])
            rows = {wte[i * 64:(i + 1) * 64] for i in range(50257)}
            self.assertEqual(len(rows), 50257)  # no two equal rows: the LM head has no exact ties
            self.assertLess(abs(sum(x * x for x in wte) / len(wte) - 0.02 ** 2), 0.02 ** 2 * 0.05)
            if not os.path.exists(GPT2_GEN):
                self.skipTest(f"no {GPT2_GEN}")
            r = subprocess.run([GPT2_GEN, "-m", os.path.join(tmp, "a"), "--prompt-ids", "1,2", "-n", "3", "--device",
                                "cpu", "--temperature", "0", "--ignore-eos", "--json", "-q"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(len(json.loads(r.stdout)["generated_ids"]), 3)


class NarrowModel(unittest.TestCase):
    """tools/narrow_model.py (gpu_check.sh makes tiny-fp16 and tiny-bf16 with it) writes the bytes
    that convert_weights.py (numpy) wrote for the same model: the CTest fixture's tiny models."""
    MODELS = os.environ.get("GPT2_TEST_MODELS", os.path.join(SOURCE, "build", "test-models"))

    def test_fp16_and_bf16_are_convert_weights_bytes(self):
        if not os.path.exists(os.path.join(self.MODELS, "tiny-bf16", "model.safetensors")):
            self.skipTest(f"no tiny models in {self.MODELS} (the convert_tiny_models fixture)")
        with tempfile.TemporaryDirectory() as tmp:
            for d in ("fp16", "bf16"):
                out = os.path.join(tmp, d)
                r = subprocess.run([sys.executable, os.path.join(SOURCE, "tools", "narrow_model.py"),
                                    os.path.join(self.MODELS, "tiny-fp32"), out, d], capture_output=True, text=True)
                self.assertEqual(r.returncode, 0, r.stderr)
                for f in ("model.safetensors", "config.json"):
                    with open(os.path.join(out, f), "rb") as a, open(os.path.join(self.MODELS, f"tiny-{d}", f), "rb") as b:
                        self.assertTrue(a.read() == b.read(), f"{d} {f}")

    def test_a_value_beyond_fp16_is_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            body = struct.pack("<2f", 1.0, 70000.0)
            header = json.dumps({"__metadata__": {"dtype": "fp32"}, "w": {"dtype": "F32", "shape": [2],
                                                                          "data_offsets": [0, 8]}}).encode()
            write(os.path.join(tmp, "in", "config.json"), "{}")
            with open(os.path.join(tmp, "in", "model.safetensors"), "wb") as f:
                f.write(struct.pack("<Q", len(header)) + header + body)
            r = subprocess.run([sys.executable, os.path.join(SOURCE, "tools", "narrow_model.py"),
                                os.path.join(tmp, "in"), os.path.join(tmp, "out"), "fp16"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 1)
            self.assertIn("beyond fp16's range", r.stderr)
            self.assertFalse(os.path.exists(os.path.join(tmp, "out", "model.safetensors")))


if __name__ == "__main__":
    unittest.main()
