#!/usr/bin/env python3
"""Tests of tools/convert_weights.py (run by CTest as test_convert_weights).

The source of truth is the tiny golden Hugging Face checkpoint in
$GPT2_SHARED_DIR/golden/tiny-gpt2 (transformer.-prefixed names, Conv1D weights [in, out],
F32, lm_head tied and absent). Checkpoint variants (unprefixed names, F16 and BF16 storage,
mask buffers, an lm_head, broken shapes or configs) are built from it here with numpy and a
small safetensors writer of the test's own; every output is read back independently (the
safetensors package and a raw header parser) and compared with numpy against the golden
arrays: exactly for fp32, against numpy's own float16 rounding for fp16, and against an
independent round-to-nearest-even for bf16. The converter runs as a subprocess, as a user
runs it; the hub path runs against stand-in huggingface_hub modules put first on PYTHONPATH.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from safetensors.numpy import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("GPT2_SOURCE_DIR", os.path.dirname(HERE))
SHARED_DIR = os.environ.get("GPT2_SHARED_DIR", os.path.join(SOURCE_DIR, "..", "shared"))
CONVERTER = os.path.join(SOURCE_DIR, "tools", "convert_weights.py")
GOLDEN = os.path.join(SHARED_DIR, "golden", "tiny-gpt2")
TOKENIZER = os.path.join(SHARED_DIR, "gpt2-tokenizer")

N_LAYER, C, H, V, P = 2, 128, 512, 50257, 128

# The project's layout (src/model/model.h), written out independently of the converter:
# output name -> (Hugging Face name without "transformer.", transposed?)
EXPECTED = {"wte": ("wte.weight", False), "wpe": ("wpe.weight", False),
            "ln_f.weight": ("ln_f.weight", False), "ln_f.bias": ("ln_f.bias", False)}
for _l in range(N_LAYER):
    _p = f"h.{_l}."
    for _a, _b, _t in [("ln_1.weight", "ln_1.weight", False), ("ln_1.bias", "ln_1.bias", False),
                       ("attn.qkv.weight", "attn.c_attn.weight", True), ("attn.qkv.bias", "attn.c_attn.bias", False),
                       ("attn.proj.weight", "attn.c_proj.weight", True), ("attn.proj.bias", "attn.c_proj.bias", False),
                       ("ln_2.weight", "ln_2.weight", False), ("ln_2.bias", "ln_2.bias", False),
                       ("mlp.fc.weight", "mlp.c_fc.weight", True), ("mlp.fc.bias", "mlp.c_fc.bias", False),
                       ("mlp.proj.weight", "mlp.c_proj.weight", True), ("mlp.proj.bias", "mlp.c_proj.bias", False)]:
        EXPECTED[_p + _a] = (_p + _b, _t)
EXPECTED_SHAPES = {"wte": (V, C), "wpe": (P, C), "attn.qkv.weight": (3 * C, C), "attn.proj.weight": (C, C),
                   "mlp.fc.weight": (H, C), "mlp.proj.weight": (C, H), "attn.qkv.bias": (3 * C,),
                   "mlp.fc.bias": (H,)}
CONFIG_KEYS = {"model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner",
               "layer_norm_epsilon", "activation_function", "eos_token_id"}


def expected_shape(name):
    for suffix, shape in EXPECTED_SHAPES.items():
        if name == suffix or name.endswith("." + suffix):
            return shape
    return (C,)


# ---- safetensors read/write of the test's own (numpy cannot hold bfloat16) -------------

ST_NP = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "BOOL": "u1", "U8": "u1"}


def write_st(path, tensors, metadata=None):
    """tensors: {name: ndarray (F32/F16) | (st_dtype, shape, ndarray of the stored elements)}."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        v = tensors[name]
        if isinstance(v, tuple):
            dt, shape, arr = v
        else:
            dt = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}[v.dtype]
            shape, arr = v.shape, v
        b = np.ascontiguousarray(arr, dtype=ST_NP[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def read_st(path):
    """Returns (header length, metadata, {name: (dtype, shape, stored array)}, data size)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    buf = data[8 + n:]
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        out[name] = (e["dtype"], tuple(e["shape"]),
                     np.frombuffer(buf[b:en], dtype=ST_NP[e["dtype"]]).reshape(e["shape"]))
    return n, meta, out, header, len(buf)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def bf16_rne_reference(x32):
    """Nearest bfloat16 by comparing the two neighbours in float64; ties to the even one."""
    x32 = np.ascontiguousarray(x32, dtype=np.float32)
    u = x32.view(np.uint32)
    lo = u & np.uint32(0xFFFF0000)
    hi = lo + np.uint32(0x10000)
    x = x32.astype(np.float64)
    hi_v = hi.view(np.float32).astype(np.float64)
    # past the largest finite bf16 the next step up is +-2^128, which is stored as inf
    hi_v = np.where((hi & np.uint32(0x7FFFFFFF)) == 0x7F800000, np.copysign(2.0 ** 128, x), hi_v)
    d_lo = np.abs(x - lo.view(np.float32).astype(np.float64))
    d_hi = np.abs(hi_v - x)
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (((lo >> np.uint32(16)) & np.uint32(1)) == 1))
    return (np.where(pick_hi, hi, lo) >> np.uint32(16)).astype(np.uint16)


# ---- fixtures -------------------------------------------------------------------------

GOLDEN_ARRAYS = load_file(os.path.join(GOLDEN, "model.safetensors"))
with open(os.path.join(GOLDEN, "config.json")) as _f:
    GOLDEN_CONFIG = json.load(_f)


def golden_unprefixed():
    return {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in GOLDEN_ARRAYS.items()}


def expected_f32():
    """What the converter must write, in float32, from the golden (src/model/model.h's layout)."""
    g = golden_unprefixed()
    return {out: np.ascontiguousarray(g[hf].T if t else g[hf]) for out, (hf, t) in EXPECTED.items()}


def run_converter(*args, cwd=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, CONVERTER, *args], cwd=cwd, env=e,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)


class ConverterTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls._tmp = tempfile.TemporaryDirectory(prefix="test_convert_weights-")
        cls.tmp = cls._tmp.name

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def snapshot(self, name, tensors=None, config=None, tokenizer=False, link_weights=False):
        """A Hugging Face-style snapshot directory: config.json + model.safetensors."""
        d = self.path(name)
        os.makedirs(d)
        cfg = dict(GOLDEN_CONFIG)
        cfg.update(config or {})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        if link_weights:
            os.symlink(os.path.abspath(os.path.join(GOLDEN, "model.safetensors")),
                       os.path.join(d, "model.safetensors"))
        else:
            write_st(os.path.join(d, "model.safetensors"), tensors, {"format": "pt"})
        if tokenizer:
            for fname in ("vocab.json", "merges.txt"):
                shutil.copyfile(os.path.join(TOKENIZER, fname), os.path.join(d, fname))
        return d

    def convert(self, src, out, dtype="fp32", tokenizer=TOKENIZER, extra=()):
        args = ["--from", src, "--out", out, "--dtype", dtype, *extra]
        if tokenizer:
            args += ["--tokenizer", tokenizer]
        r = run_converter(*args)
        self.assertEqual(r.returncode, 0, f"conversion failed: {r.stderr}")
        self.assertNotIn("Traceback", r.stderr)
        return r

    def assert_refused(self, r, out, *needles):
        self.assertNotEqual(r.returncode, 0, f"expected a refusal, got: {r.stderr}")
        # one error line (besides the converter's own progress notes, "convert_weights: ...")
        lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("convert_weights: ")]
        self.assertEqual(len(lines), 1, f"expected one error line, got:\n{r.stderr}")
        self.assertTrue(lines[0].startswith("error: "), lines[0])
        self.assertNotIn("Traceback", r.stderr)
        for n in needles:
            self.assertIn(n, lines[0])
        if out is not None:
            self.assertFalse(os.path.exists(out), f"{out} was left behind")
            self.assert_no_temporaries(os.path.dirname(out))
        return lines[0]

    def assert_no_temporaries(self, parent):
        if os.path.isdir(parent):
            leftovers = [e for e in os.listdir(parent) if e.startswith(".")]
            self.assertEqual(leftovers, [], f"temporary entries left in {parent}")

    def assert_tensors_f32(self, model_dir, expected=None):
        """The output holds exactly src/model/model.h's tensors, F32, equal to `expected`."""
        expected = expected if expected is not None else expected_f32()
        got = load_file(os.path.join(model_dir, "model.safetensors"))
        self.assertEqual(set(got), set(EXPECTED))
        for name, want in expected.items():
            self.assertEqual(got[name].dtype, np.float32, name)
            self.assertEqual(got[name].shape, expected_shape(name), name)
            np.testing.assert_array_equal(got[name], want, err_msg=name)


class TestGoldenConversion(ConverterTestCase):
    """The tiny golden checkpoint, converted to each precision."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.out = {}
        for dtype in ("fp32", "fp16", "bf16"):
            out = os.path.join(cls.tmp, "models", f"tiny-{dtype}")
            r = run_converter("--from", GOLDEN, "--tokenizer", TOKENIZER, "--dtype", dtype, "--out", out)
            if r.returncode != 0:
                raise AssertionError(f"converting the golden to {dtype} failed: {r.stderr}")
            cls.out[dtype] = out
            cls.summary = r.stderr

    def test_fp32_equals_golden_exactly(self):
        self.assert_tensors_f32(self.out["fp32"])

    def test_fp16_is_numpys_rounding_of_golden(self):
        got = load_file(os.path.join(self.out["fp16"], "model.safetensors"))
        self.assertEqual(set(got), set(EXPECTED))
        for name, want in expected_f32().items():
            self.assertEqual(got[name].dtype, np.float16, name)
            np.testing.assert_array_equal(got[name].view(np.uint16), want.astype(np.float16).view(np.uint16),
                                          err_msg=name)

    def test_bf16_is_round_to_nearest_even_of_golden(self):
        _, _, got, _, _ = read_st(os.path.join(self.out["bf16"], "model.safetensors"))
        self.assertEqual(set(got), set(EXPECTED))
        for name, want in expected_f32().items():
            dt, shape, bits = got[name]
            self.assertEqual((dt, shape), ("BF16", expected_shape(name)), name)
            np.testing.assert_array_equal(bits, bf16_rne_reference(want), err_msg=name)
            # and, less strictly, within half a bf16 ulp (2^-8 relative)
            np.testing.assert_allclose(bf16_to_f32(bits), want, rtol=2.0 ** -8, atol=0, err_msg=name)

    def test_file_layout_is_what_the_cpp_loader_accepts(self):
        for dtype, out in self.out.items():
            path = os.path.join(out, "model.safetensors")
            n, meta, tensors, header, data_size = read_st(path)
            self.assertEqual(n % 8, 0, "header padded to 8 bytes")
            # sorted by name, back to back from 0 to the end of the buffer
            ranges = sorted((e["data_offsets"], name) for name, e in header.items())
            self.assertEqual([name for _, name in ranges], sorted(header))
            pos = 0
            for (b, e), name in ranges:
                self.assertEqual(b, pos, name)
                pos = e
            self.assertEqual(pos, data_size)
            self.assertEqual({t[0] for t in tensors.values()}, {{"fp32": "F32", "fp16": "F16", "bf16": "BF16"}[dtype]})
            self.assertEqual(meta, {"format": "gpt2-gen", "format_version": "1",
                                    "source": os.path.abspath(GOLDEN), "dtype": dtype, "source_dtype": "F32"})

    def test_config(self):
        for out in self.out.values():
            with open(os.path.join(out, "config.json")) as f:
                cfg = json.load(f)
            self.assertEqual(set(cfg), CONFIG_KEYS)
            self.assertEqual(cfg, {"model_type": "gpt2", "vocab_size": V, "n_positions": P, "n_embd": C,
                                   "n_layer": N_LAYER, "n_head": 2, "n_inner": 4 * C, "layer_norm_epsilon": 1e-5,
                                   "activation_function": "gelu_new", "eos_token_id": 50256})

    def test_tokenizer_copied_byte_identical(self):
        for out in self.out.values():
            self.assertEqual(sorted(os.listdir(out)), ["config.json", "merges.txt", "model.safetensors", "vocab.json"])
            for fname in ("vocab.json", "merges.txt"):
                with open(os.path.join(out, fname), "rb") as a, open(os.path.join(TOKENIZER, fname), "rb") as b:
                    self.assertEqual(a.read(), b.read(), fname)

    def test_no_temporaries_and_summary(self):
        self.assert_no_temporaries(os.path.join(self.tmp, "models"))
        lines = [l for l in self.summary.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, self.summary)
        for needle in ("bf16", "6,846,080 parameters", "bytes", "tiny-bf16"):
            self.assertIn(needle, lines[0])

    def test_deterministic(self):
        again = self.path("again-fp16")
        self.convert(GOLDEN, again, "fp16")
        for fname in ("model.safetensors", "config.json"):
            with open(os.path.join(again, fname), "rb") as a, open(os.path.join(self.out["fp16"], fname), "rb") as b:
                self.assertEqual(a.read(), b.read(), fname)

    def test_existing_model_replaced_only_after_success(self):
        out = self.path("models", "replace-me")
        self.convert(GOLDEN, out, "fp32")
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            before = f.read()
        # a failing conversion leaves the existing model untouched
        bad = self.snapshot("replace-bad", config={"n_layer": 3}, link_weights=True)
        r = run_converter("--from", bad, "--out", out, "--tokenizer", TOKENIZER, "--dtype", "fp16")
        self.assert_refused(r, None, "h.2.")
        with open(os.path.join(out, "model.safetensors"), "rb") as f:
            self.assertEqual(f.read(), before)
        self.assert_no_temporaries(os.path.dirname(out))
        # a successful one replaces it
        self.convert(GOLDEN, out, "fp16")
        self.assertEqual(read_st(os.path.join(out, "model.safetensors"))[1]["dtype"], "fp16")
        self.assert_no_temporaries(os.path.dirname(out))

    def test_refuses_to_replace_a_directory_that_is_not_a_model(self):
        out = self.path("not-a-model")
        os.makedirs(out)
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("keep me")
        r = run_converter("--from", GOLDEN, "--out", out, "--tokenizer", TOKENIZER)
        self.assert_refused(r, None, "notes.txt")
        self.assertEqual(os.listdir(out), ["notes.txt"])


class TestCheckpointVariants(ConverterTestCase):
    """Checkpoints as they occur in the wild, built from the golden."""

    def test_unprefixed_names_convert_identically(self):
        src = self.snapshot("unprefixed", golden_unprefixed())
        out = self.path("out-unprefixed")
        self.convert(src, out)
        self.assert_tensors_f32(out)  # what the prefixed golden converts to (TestGoldenConversion)
        with open(os.path.join(out, "config.json")) as f:
            self.assertEqual(json.load(f)["n_embd"], C)

    def test_fp16_source(self):
        f16 = {k: v.astype(np.float16) for k, v in GOLDEN_ARRAYS.items()}
        src = self.snapshot("src-f16", f16)
        out32, out16 = self.path("f16-to-fp32"), self.path("f16-to-fp16")
        self.convert(src, out32, "fp32")
        self.convert(src, out16, "fp16")
        widened = {k: v.astype(np.float16).astype(np.float32) for k, v in expected_f32().items()}
        self.assert_tensors_f32(out32, widened)  # widening is exact
        got16 = load_file(os.path.join(out16, "model.safetensors"))
        for name, want in widened.items():  # and re-storing as fp16 gives the source back
            np.testing.assert_array_equal(got16[name].view(np.uint16), want.astype(np.float16).view(np.uint16))
        self.assertEqual(read_st(os.path.join(out32, "model.safetensors"))[1]["source_dtype"], "F16")

    def test_bf16_source(self):
        src_bits = {k: bf16_rne_reference(v) for k, v in GOLDEN_ARRAYS.items()}
        src = self.snapshot("src-bf16", {k: ("BF16", GOLDEN_ARRAYS[k].shape, b) for k, b in src_bits.items()})
        outs = {d: self.path(f"bf16-to-{d}") for d in ("fp32", "bf16", "fp16")}
        for d, out in outs.items():
            self.convert(src, out, d)
        g = golden_unprefixed()
        widened = {}
        for out_name, (hf, t) in EXPECTED.items():
            w = bf16_to_f32(src_bits["transformer." + hf])
            widened[out_name] = np.ascontiguousarray(w.T if t else w)
        self.assert_tensors_f32(outs["fp32"], widened)  # the widened source, exactly
        _, meta, got, _, _ = read_st(os.path.join(outs["bf16"], "model.safetensors"))
        self.assertEqual(meta["source_dtype"], "BF16")
        for name, (hf, t) in EXPECTED.items():  # bf16 -> bf16 is lossless: the source's bits
            bits = src_bits["transformer." + hf]
            np.testing.assert_array_equal(got[name][2], bits.T if t else bits, err_msg=name)
        got16 = load_file(os.path.join(outs["fp16"], "model.safetensors"))
        for name, want in widened.items():
            np.testing.assert_array_equal(got16[name], want.astype(np.float16), err_msg=name)
            # within rounding of the golden itself
            ref = g[EXPECTED[name][0]]
            np.testing.assert_allclose(got16[name].astype(np.float32), ref.T if EXPECTED[name][1] else ref,
                                       rtol=2.0 ** -8 + 2.0 ** -11, atol=2.0 ** -24, err_msg=name)

    def test_round_to_nearest_even_ties(self):
        tensors = dict(GOLDEN_ARRAYS)
        bias = tensors["transformer.ln_f.bias"].copy()
        special = np.array([1 + 2.0 ** -8,        # bf16 tie -> 1.0 (even)
                            1 + 3 * 2.0 ** -8,    # bf16 tie -> 1 + 2^-6 (even)
                            -(1 + 2.0 ** -8),     # negative tie -> -1.0
                            1 + 2.0 ** -8 + 2.0 ** -20,  # just above the tie -> up
                            1 + 2.0 ** -11,       # fp16 tie -> 1.0
                            1 + 3 * 2.0 ** -11,   # fp16 tie -> 1 + 2^-9
                            65504.0, -65504.0,    # fp16's largest finite values
                            2.0 ** -25,           # half fp16's smallest subnormal: tie -> 0
                            3 * 2.0 ** -25], dtype=np.float32)  # tie -> 2 * 2^-24 (even)
        bias[:len(special)] = special
        tensors["transformer.ln_f.bias"] = bias
        src = self.snapshot("ties", tensors)
        out16, outbf = self.path("ties-fp16"), self.path("ties-bf16")
        self.convert(src, out16, "fp16")
        self.convert(src, outbf, "bf16")
        h = load_file(os.path.join(out16, "model.safetensors"))["ln_f.bias"].view(np.uint16)[:len(special)]
        b = read_st(os.path.join(outbf, "model.safetensors"))[2]["ln_f.bias"][2][:len(special)]
        self.assertEqual([hex(x) for x in b[:4]], ["0x3f80", "0x3f82", "0xbf80", "0x3f81"])
        self.assertEqual([hex(x) for x in h[4:]], ["0x3c00", "0x3c02", "0x7bff", "0xfbff", "0x0", "0x2"])

    def test_mask_buffers_are_dropped(self):
        tensors = dict(GOLDEN_ARRAYS)
        tril = np.tril(np.ones((P, P), dtype=np.float32)).reshape(1, 1, P, P)
        tensors["transformer.h.0.attn.bias"] = tril
        tensors["transformer.h.0.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
        tensors["transformer.h.1.attn.bias"] = ("BOOL", (1, 1, P, P), tril.astype(np.uint8))
        tensors["transformer.h.1.attn.masked_bias"] = np.array(-1e4, dtype=np.float32)
        src = self.snapshot("buffers", tensors)
        out = self.path("out-buffers")
        self.convert(src, out, "fp16")
        got = load_file(os.path.join(out, "model.safetensors"))
        self.assertEqual(set(got), set(EXPECTED))

    def test_lm_head_equal_to_wte_accepted(self):
        tensors = dict(GOLDEN_ARRAYS)
        tensors["lm_head.weight"] = GOLDEN_ARRAYS["transformer.wte.weight"].copy()
        src = self.snapshot("lm-head-tied", tensors)
        out = self.path("out-lm-head-tied")
        self.convert(src, out)
        self.assert_tensors_f32(out)

    def test_lm_head_different_from_wte_refused(self):
        tensors = dict(GOLDEN_ARRAYS)
        head = GOLDEN_ARRAYS["transformer.wte.weight"].copy()
        head[123, 45] += 0.5
        tensors["lm_head.weight"] = head
        src = self.snapshot("lm-head-untied", tensors)
        out = self.path("models", "lm-head-untied")
        r = run_converter("--from", src, "--out", out, "--tokenizer", TOKENIZER)
        self.assert_refused(r, out, "lm_head", "wte")

    def test_fp16_overflow_refused(self):
        tensors = dict(GOLDEN_ARRAYS)
        w = tensors["transformer.h.0.mlp.c_fc.weight"].copy()
        w[3, 7] = 70000.0
        tensors["transformer.h.0.mlp.c_fc.weight"] = w
        src = self.snapshot("overflow", tensors)
        out = self.path("models", "overflow")
        r = run_converter("--from", src, "--out", out, "--tokenizer", TOKENIZER, "--dtype", "fp16")
        self.assert_refused(r, out, "h.0.mlp.fc.weight", "fp16")
        for dtype in ("fp32", "bf16"):  # representable there
            self.convert(src, self.path(f"overflow-{dtype}"), dtype)


class TestRounding(unittest.TestCase):
    """The converter's float32 -> bfloat16 rounding, called directly, on the bit patterns the
    command line never reaches (it refuses non-finite weights)."""

    @classmethod
    def setUpClass(cls):
        import importlib.util
        spec = importlib.util.spec_from_file_location("convert_weights", CONVERTER)
        cls.cw = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(cls.cw)

    def test_bf16_matches_reference_on_random_bits(self):
        rng = np.random.default_rng(7)
        u = rng.integers(0, 2 ** 32, size=200000, dtype=np.uint64).astype(np.uint32)
        u = u[(u & 0x7F800000) != 0x7F800000]  # finite values of every exponent
        x = u.view(np.float32)
        got = self.cw.f32_to_bf16_bits(x)
        np.testing.assert_array_equal(got, bf16_rne_reference(x))

    def test_bf16_nan_and_inf(self):
        u = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFFFFFFFF, 0x7F800000, 0xFF800000, 0x7F7FFFFF],
                     dtype=np.uint32)
        got = self.cw.f32_to_bf16_bits(u.view(np.float32))
        self.assertTrue(np.isnan(bf16_to_f32(got[:4])).all())  # NaNs stay NaN, sign kept
        self.assertEqual([int(g) >> 15 for g in got[:4]], [0, 1, 0, 1])
        self.assertEqual([hex(int(g)) for g in got[4:]], ["0x7f80", "0xff80", "0x7f80"])


class TestRefusals(ConverterTestCase):
    """Checkpoints that contradict their config: refused before anything is written."""

    def refused(self, src, *needles, extra=()):
        out = self.path("models", os.path.basename(src))
        r = run_converter("--from", src, "--out", out, "--tokenizer", TOKENIZER, *extra)
        return self.assert_refused(r, out, *needles)

    def test_config_n_embd_changed(self):
        self.refused(self.snapshot("n-embd-64", config={"n_embd": 64}, link_weights=True),
                     "has shape", "implies")

    def test_config_n_layer_smaller(self):
        self.refused(self.snapshot("n-layer-1", config={"n_layer": 1}, link_weights=True),
                     "unexpected tensor", "h.1.")

    def test_n_embd_not_divisible_by_n_head(self):
        self.refused(self.snapshot("n-head-3", config={"n_head": 3}, link_weights=True), "n_head")

    def test_unsupported_activation(self):
        self.refused(self.snapshot("relu", config={"activation_function": "relu"}, link_weights=True),
                     "activation_function", "relu")

    def test_one_weight_with_wrong_shape(self):
        tensors = dict(GOLDEN_ARRAYS)
        tensors["transformer.h.1.mlp.c_fc.weight"] = np.ascontiguousarray(tensors["transformer.h.1.mlp.c_fc.weight"].T)
        self.refused(self.snapshot("wrong-shape", tensors), "transformer.h.1.mlp.c_fc.weight", "[512, 128]",
                     "[128, 512]")

    def test_missing_tensor(self):
        tensors = dict(GOLDEN_ARRAYS)
        del tensors["transformer.h.1.ln_2.bias"]
        self.refused(self.snapshot("missing", tensors), "h.1.ln_2.bias", "missing")

    def test_unknown_extra_tensor(self):
        tensors = dict(GOLDEN_ARRAYS)
        tensors["transformer.h.0.attn.rotary"] = np.zeros(4, dtype=np.float32)
        self.refused(self.snapshot("extra", tensors), "unexpected tensor", "transformer.h.0.attn.rotary")

    def test_non_finite_weight(self):
        tensors = dict(GOLDEN_ARRAYS)
        w = tensors["transformer.h.1.attn.c_proj.weight"].copy()
        w[0, 0] = np.inf
        tensors["transformer.h.1.attn.c_proj.weight"] = w
        self.refused(self.snapshot("inf", tensors), "h.1.attn.proj.weight", "infinite")

    def test_unsupported_source_dtype(self):
        tensors = {k: (v.astype(np.float64) if k.endswith("ln_f.bias") else v) for k, v in GOLDEN_ARRAYS.items()}
        d = self.path("f64")
        os.makedirs(d)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(GOLDEN_CONFIG, f)
        save_file(tensors, os.path.join(d, "model.safetensors"))
        self.refused(d, "F64")

    def test_truncated_weight_file(self):
        d = self.snapshot("truncated", dict(GOLDEN_ARRAYS))
        path = os.path.join(d, "model.safetensors")
        os.truncate(path, os.path.getsize(path) - 1000)
        self.refused(d, "truncated")

    def test_missing_tokenizer_files(self):
        out = self.path("models", "no-tokenizer")
        r = run_converter("--from", GOLDEN, "--out", out)
        self.assert_refused(r, out, "vocab.json", "--tokenizer")
        empty = self.path("empty-tokenizer-dir")
        os.makedirs(empty)
        r = run_converter("--from", GOLDEN, "--out", out, "--tokenizer", empty)
        self.assert_refused(r, out, "vocab.json", empty)

    def test_out_is_the_source(self):
        src = self.snapshot("in-place", link_weights=True, tokenizer=True)
        r = run_converter("--from", src, "--out", src)
        self.assert_refused(r, None, "--out", "source")
        self.assertEqual(sorted(os.listdir(src)), ["config.json", "merges.txt", "model.safetensors", "vocab.json"])

    def test_already_converted_model(self):
        converted = self.path("models", "converted")
        self.convert(GOLDEN, converted)
        r = run_converter("--from", converted, "--out", self.path("models", "twice"))
        self.assert_refused(r, self.path("models", "twice"), "already")

    def test_missing_model_file(self):
        d = self.path("no-weights")
        os.makedirs(d)
        shutil.copyfile(os.path.join(GOLDEN, "config.json"), os.path.join(d, "config.json"))
        self.refused(d, "model.safetensors")

    def test_usage_errors(self):
        cases = [((), "--from"), (("gpt2", "--from", GOLDEN), "not both"), (("gpt3",), "unknown model"),
                 ((GOLDEN,), "use --from"), (("--from", self.path("nowhere")), "not a directory")]
        cwd = self.path("cwd-usage")
        os.makedirs(cwd)
        for args, needle in cases:
            r = run_converter(*args, cwd=cwd)
            self.assert_refused(r, None, needle)
        self.assertEqual(os.listdir(cwd), [])


class TestSources(ConverterTestCase):
    """Where the checkpoint and the tokenizer come from; default output directories."""

    def test_tokenizer_from_snapshot_and_default_out(self):
        src = self.snapshot("snap-with-tokenizer", link_weights=True, tokenizer=True)
        cwd = self.path("cwd-from")
        os.makedirs(cwd)
        r = run_converter("--from", src, "--dtype", "fp32", cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = os.path.join(cwd, "models", "snap-with-tokenizer")
        self.assert_tensors_f32(out)
        for fname in ("vocab.json", "merges.txt"):
            with open(os.path.join(out, fname), "rb") as a, open(os.path.join(TOKENIZER, fname), "rb") as b:
                self.assertEqual(a.read(), b.read())

    def fake_hub(self, name, body):
        d = self.path(name, "huggingface_hub")
        os.makedirs(d)
        with open(os.path.join(d, "__init__.py"), "w") as f:
            f.write(body)
        return os.path.dirname(d)

    def test_hub_name_without_huggingface_hub(self):
        shadow = self.fake_hub("no-hf", "raise ImportError('simulated: huggingface_hub is not installed')\n")
        cwd = self.path("cwd-no-hf")
        os.makedirs(cwd)
        r = run_converter("gpt2", cwd=cwd, env={"PYTHONPATH": shadow})
        line = self.assert_refused(r, os.path.join(cwd, "models", "gpt2"), "pip install huggingface_hub", "--from")
        self.assertIn("gpt2", line)

    FAKE_HUB = (
        "import json, os\n"
        "def snapshot_download(repo_id, allow_patterns=None, **kwargs):\n"
        "    with open(os.environ['FAKE_HF_LOG'], 'w') as f:\n"
        "        json.dump({'repo_id': repo_id, 'allow_patterns': allow_patterns, 'kwargs': sorted(kwargs)}, f)\n"
        "    if os.environ.get('FAKE_HF_FAIL'):\n"
        "        raise OSError('simulated: cannot reach huggingface.co')\n"
        "    return os.environ['FAKE_HF_SNAPSHOT']\n")

    def test_hub_download(self):
        shadow = self.fake_hub("fake-hf", self.FAKE_HUB)
        # the cache layout: <cache>/models--owner--name/snapshots/<commit>/
        snap = self.path("hub-cache", "models--openai-community--gpt2", "snapshots", "0123abcd")
        os.makedirs(os.path.dirname(snap))
        shutil.move(self.snapshot("hub-src", link_weights=True, tokenizer=True), snap)
        cwd = self.path("cwd-hub")
        os.makedirs(cwd)
        log = self.path("fake-hf.log")
        r = run_converter("gpt2", cwd=cwd, env={"PYTHONPATH": shadow, "FAKE_HF_LOG": log, "FAKE_HF_SNAPSHOT": snap})
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(log) as f:
            call = json.load(f)
        self.assertEqual(call["repo_id"], "openai-community/gpt2")
        self.assertEqual(set(call["allow_patterns"]), {"config.json", "model.safetensors", "vocab.json", "merges.txt"})
        out = os.path.join(cwd, "models", "gpt2")
        n, meta, tensors, _, _ = read_st(os.path.join(out, "model.safetensors"))
        self.assertEqual(meta["source"], "openai-community/gpt2@0123abcd")
        self.assertEqual(meta["dtype"], "fp16")  # the default
        self.assertEqual({t[0] for t in tensors.values()}, {"F16"})
        self.assertEqual(sorted(os.listdir(out)), ["config.json", "merges.txt", "model.safetensors", "vocab.json"])

    def test_hub_download_failure(self):
        shadow = self.fake_hub("fake-hf-fail", self.FAKE_HUB)
        cwd = self.path("cwd-hub-fail")
        os.makedirs(cwd)
        env = {"PYTHONPATH": shadow, "FAKE_HF_LOG": self.path("fail.log"), "FAKE_HF_FAIL": "1", "HF_HUB_OFFLINE": "1"}
        r = run_converter("distilgpt2", cwd=cwd, env=env)
        self.assert_refused(r, os.path.join(cwd, "models", "distilgpt2"), "distilbert/distilgpt2",
                            "HF_HUB_OFFLINE", "--from")


if __name__ == "__main__":
    unittest.main(verbosity=2)
