#!/usr/bin/env python3
"""Converts a Hugging Face GPT-2 checkpoint into a gpt2-gen model directory.

    python3 tools/convert_weights.py gpt2                      # download (huggingface_hub) -> models/gpt2/
    python3 tools/convert_weights.py --from SNAPSHOT_DIR       # a local snapshot -> models/<basename>/
    options: --out DIR   --dtype fp32|fp16|bf16 (default fp16)   --tokenizer DIR

The output directory holds:
  model.safetensors  the weights under the names and layouts of src/model/model.h (Conv1D weights
                     transposed to [out, in], "transformer." prefixes and the attention-mask
                     buffers dropped, lm_head tied to wte), one dtype, sorted by name, stored
                     contiguously, with __metadata__ {format: gpt2-gen, format_version: 1,
                     source, dtype, source_dtype};
  config.json        the hyper-parameters the engine reads (n_inner resolved);
  vocab.json, merges.txt  the tokenizer, copied byte for byte.

Everything is checked (config, tensor names, shapes, dtypes, tied head, tokenizer, values
that would overflow the chosen dtype) before the output is committed: the files are written
into a temporary directory next to the destination and renamed into place, so a failed
conversion leaves nothing behind and an existing model is replaced only after success.
Expected failures print one line, `error: ...`, to stderr and exit with status 1.
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_format  # noqa: E402 - the tensor list, shared with hf_compare.py and the fuzz corpus

# Short names -> Hugging Face hub repositories.
HUB_MODELS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
}
HUB_FILES = ["config.json", "model.safetensors", "vocab.json", "merges.txt"]
TOKENIZER_FILES = ("vocab.json", "merges.txt")
OUTPUT_FILES = {"config.json", "model.safetensors", "vocab.json", "merges.txt"}

# --dtype -> (safetensors dtype name, bytes per element)
OUT_DTYPES = {"fp32": ("F32", 4), "fp16": ("F16", 2), "bf16": ("BF16", 2)}
SOURCE_DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
# Sizes of every safetensors dtype, to validate the offsets of tensors that are dropped.
ALL_DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
                   "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
SUPPORTED_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")  # the same tanh approximation
FP16_MAX = 65504.0
MAX_HEADER_BYTES = 100 * 1000 * 1000

# Buffers (the causal mask and its fill value) that some checkpoints carry: not parameters.
BUFFER_RE = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ConvertError(Exception):
    """An expected failure: reported as one `error: ...` line, without a traceback."""


def fmt_shape(shape):
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ----------------------------------------------------------------------------------------
# Reading: config.json and the source safetensors file (parsed by hand: numpy has no bfloat16)
# ----------------------------------------------------------------------------------------

def read_json(path, what):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise ConvertError(f"{path}: not found ({what})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConvertError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise ConvertError(f"{path}: cannot read: {e.strerror}") from None


def load_config(path):
    """The source config.json, validated and resolved the way src/model/config.cpp reads it."""
    j = read_json(path, "the snapshot's config.json")
    if not isinstance(j, dict):
        raise ConvertError(f"{path}: must be a JSON object")

    def get_int(key, lo=1, hi=1 << 31):
        v = j.get(key)
        if v is None:
            raise ConvertError(f"{path}: missing key \"{key}\"")
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConvertError(f"{path}: \"{key}\" must be an integer, got {json.dumps(v)}")
        if not lo <= v <= hi:
            raise ConvertError(f"{path}: \"{key}\" = {v} is outside [{lo}, {hi}]")
        return v

    model_type = j.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ConvertError(f"{path}: model_type {json.dumps(model_type)} is not a GPT-2 model (expected \"gpt2\")")
    c = {"model_type": "gpt2"}
    c["vocab_size"] = get_int("vocab_size")
    c["n_positions"] = get_int("n_positions" if "n_positions" in j else "n_ctx")
    c["n_embd"] = get_int("n_embd")
    c["n_layer"] = get_int("n_layer")
    c["n_head"] = get_int("n_head")
    if c["n_embd"] % c["n_head"] != 0:
        raise ConvertError(f"{path}: n_embd ({c['n_embd']}) is not divisible by n_head ({c['n_head']})")
    c["n_inner"] = 4 * c["n_embd"] if j.get("n_inner") is None else get_int("n_inner")
    eps = j.get("layer_norm_epsilon", 1e-5)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 < eps <= 1.0:
        raise ConvertError(f"{path}: \"layer_norm_epsilon\" must be a number in (0, 1], got {json.dumps(eps)}")
    c["layer_norm_epsilon"] = eps
    act = j.get("activation_function", "gelu_new")
    if act not in SUPPORTED_ACTIVATIONS:
        raise ConvertError(f"{path}: activation_function {json.dumps(act)} is not supported "
                           f"(gpt2-gen implements GPT-2's gelu_new)")
    c["activation_function"] = act
    eos = j.get("eos_token_id")
    c["eos_token_id"] = c["vocab_size"] - 1 if eos is None else get_int("eos_token_id", 0, c["vocab_size"] - 1)
    for flag in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        if j.get(flag) is True:
            raise ConvertError(f"{path}: \"{flag}\": true is not supported by gpt2-gen")
    if j.get("scale_attn_weights") is False:
        raise ConvertError(f"{path}: \"scale_attn_weights\": false is not supported by gpt2-gen")
    return c


class SourceTensor:
    def __init__(self, file, name, dtype, shape, begin, end):
        self.file, self.name, self.dtype, self.shape = file, name, dtype, tuple(shape)
        self.begin, self.end = begin, end

    def numel(self):
        n = 1
        for d in self.shape:
            n *= d
        return n

    def raw(self):
        """The stored elements: float32 / float16 / uint16 (bfloat16 bits), little-endian."""
        np_dtype = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}[self.dtype]
        data = self.file.buffer()[self.begin:self.end]
        return data.view(np_dtype).reshape(self.shape)

    def to_f32(self):
        """The values widened (exactly) to float32."""
        raw = self.raw()
        if self.dtype == "F32":
            return raw
        if self.dtype == "F16":
            return raw.astype(np.float32)
        return bf16_bits_to_f32(raw)


class SourceFile:
    """A safetensors file: header parsed with json + struct, data memory-mapped."""

    def __init__(self, path):
        self.path = path
        self._buffer = None
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    raise ConvertError(f"{path}: file is {size} bytes, too short for a safetensors header")
                (n,) = struct.unpack("<Q", head)
                if n == 0 or n > MAX_HEADER_BYTES or n > size - 8:
                    raise ConvertError(f"{path}: header length {n} is impossible for a {size}-byte file "
                                       f"(not a safetensors file, or truncated?)")
                header_bytes = f.read(n)
        except FileNotFoundError:
            raise ConvertError(f"{path}: not found (the snapshot needs model.safetensors; "
                               f"pytorch_model.bin checkpoints are not supported)") from None
        except OSError as e:
            raise ConvertError(f"{path}: cannot read: {e.strerror}") from None
        self.data_start = 8 + n
        self.data_size = size - 8 - n

        def no_duplicates(pairs):
            d = {}
            for k, v in pairs:
                if k in d:
                    raise ConvertError(f"{path}: key \"{k}\" appears twice in the header")
                d[k] = v
            return d

        try:
            header = json.loads(header_bytes.decode("utf-8"), object_pairs_hook=no_duplicates)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConvertError(f"{path}: the header is not valid JSON (truncated or corrupted file?)") from None
        if not isinstance(header, dict):
            raise ConvertError(f"{path}: the header must be a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self.tensors = {}
        for name, e in header.items():
            where = f"{path}: tensor \"{name}\""
            if not isinstance(e, dict):
                raise ConvertError(f"{where}: entry is not an object")
            dtype, shape, offsets = e.get("dtype"), e.get("shape"), e.get("data_offsets")
            if dtype not in ALL_DTYPE_SIZES:
                raise ConvertError(f"{where}: unknown dtype {json.dumps(dtype)}")
            if (not isinstance(shape, list)
                    or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
                raise ConvertError(f"{where}: \"shape\" must be a list of non-negative integers")
            if (not isinstance(offsets, list) or len(offsets) != 2
                    or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
                    or offsets[0] > offsets[1]):
                raise ConvertError(f"{where}: \"data_offsets\" must be [begin, end] with 0 <= begin <= end")
            t = SourceTensor(self, name, dtype, shape, offsets[0], offsets[1])
            if t.end > self.data_size:
                raise ConvertError(f"{where}: data ends at byte {t.end} of a {self.data_size}-byte buffer "
                                   f"(truncated file?)")
            if t.end - t.begin != t.numel() * ALL_DTYPE_SIZES[dtype]:
                raise ConvertError(f"{where}: holds {t.end - t.begin} bytes but {dtype} {fmt_shape(shape)} "
                                   f"needs {t.numel() * ALL_DTYPE_SIZES[dtype]}")
            self.tensors[name] = t

    def buffer(self):
        if self._buffer is None:
            if self.data_size == 0:
                self._buffer = np.zeros(0, dtype=np.uint8)
            else:
                self._buffer = np.memmap(self.path, dtype=np.uint8, mode="r",
                                         offset=self.data_start, shape=(self.data_size,))
        return self._buffer


# ----------------------------------------------------------------------------------------
# Precision conversions (round to nearest even)
# ----------------------------------------------------------------------------------------

def bf16_bits_to_f32(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)).astype(np.uint16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if nan.any():  # adding the rounding bias could carry a NaN's payload into the sign or to inf
        rounded[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x0040)).astype(np.uint16)
    return rounded


def convert_values(name, x, dtype):
    """float32 array -> the stored array (float32, float16 or uint16 bf16 bits), refusing
    values that are not finite or that the target precision cannot represent."""
    if not np.isfinite(x).all():
        raise ConvertError(f"tensor \"{name}\" holds NaN or infinite values in the source checkpoint")
    if dtype == "fp32":
        return np.ascontiguousarray(x, dtype="<f4")
    if dtype == "fp16":
        with np.errstate(over="ignore"):
            y = np.ascontiguousarray(x, dtype="<f2")
        if not np.isfinite(y).all():
            raise ConvertError(f"tensor \"{name}\" holds values up to {float(np.abs(x).max()):g}, beyond "
                               f"fp16's range (max {FP16_MAX:g}): convert with --dtype bf16 or fp32")
        return y
    y = f32_to_bf16_bits(x).astype("<u2")
    if ((y & np.uint16(0x7F80)) == np.uint16(0x7F80)).any():
        raise ConvertError(f"tensor \"{name}\" holds values beyond bf16's range: convert with --dtype fp32")
    return y


# ----------------------------------------------------------------------------------------
# Mapping Hugging Face names and layouts to the project's (src/model/model.h)
# ----------------------------------------------------------------------------------------

def tensor_plan(c):
    """[(hf_name, hf_shape, out_name, transpose)] for every tensor the config implies."""
    return [(hf, shape[::-1] if transpose else shape, name, transpose)
            for name, shape, hf, transpose in gpt2_format.tensors(c)]


def config_summary(c):
    return (f"vocab_size={c['vocab_size']}, n_positions={c['n_positions']}, n_embd={c['n_embd']}, "
            f"n_layer={c['n_layer']}, n_inner={c['n_inner']}")


def check_tensors(src, c, config_path):
    """Matches the source tensors against the config. Returns [(out_name, SourceTensor, transpose)]."""
    path = src.path
    if isinstance(src.metadata, dict) and src.metadata.get("format") == gpt2_format.FORMAT:
        raise ConvertError(f"{path} is already a converted gpt2-gen model (from {src.metadata.get('source', '?')}); "
                           f"convert the original checkpoint instead")
    by_name = {}
    for name, t in src.tensors.items():
        short = name[len("transformer."):] if name.startswith("transformer.") else name
        if short in by_name:
            raise ConvertError(f"{path}: tensor \"{short}\" is stored twice (as \"{by_name[short].name}\" and \"{name}\")")
        by_name[short] = t
    for short in [s for s in by_name if BUFFER_RE.match(s)]:
        del by_name[short]  # the causal-mask buffers: not parameters
    lm_head = by_name.pop("lm_head.weight", None)

    plan = tensor_plan(c)
    expected = {hf for hf, _, _, _ in plan}
    missing = [hf for hf, _, _, _ in plan if hf not in by_name]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ConvertError(f"{path}: tensor \"{missing[0]}\" is missing{more}; {config_path} says "
                           f"{config_summary(c)}")
    extra = sorted(s for s in by_name if s not in expected)
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ConvertError(f"{path}: unexpected tensor \"{by_name[extra[0]].name}\"{more}; {config_path} says "
                           f"{config_summary(c)} (is the config from another model?)")
    wrong = [(hf, shape) for hf, shape, _, _ in plan if by_name[hf].shape != shape]
    if wrong:
        hf, shape = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        raise ConvertError(f"{path}: tensor \"{by_name[hf].name}\" has shape {fmt_shape(by_name[hf].shape)} "
                           f"but {config_path} ({config_summary(c)}) implies {fmt_shape(shape)}{more}")
    for hf, _, _, _ in plan:
        t = by_name[hf]
        if t.dtype not in SOURCE_DTYPES:
            raise ConvertError(f"{path}: tensor \"{t.name}\" is {t.dtype}; only F32, F16 and BF16 "
                               f"checkpoints are supported")

    if lm_head is not None:
        wte = by_name["wte.weight"]
        if lm_head.shape != wte.shape:
            raise ConvertError(f"{path}: lm_head.weight has shape {fmt_shape(lm_head.shape)} but wte is "
                               f"{fmt_shape(wte.shape)}; gpt2-gen ties the output projection to wte")
        if lm_head.dtype not in SOURCE_DTYPES:
            raise ConvertError(f"{path}: tensor \"{lm_head.name}\" is {lm_head.dtype}; only F32, F16 and "
                               f"BF16 checkpoints are supported")
        a, b = lm_head.to_f32(), wte.to_f32()
        if not np.array_equal(a, b):
            diff = int(np.count_nonzero(a != b))
            raise ConvertError(f"{path}: lm_head.weight differs from wte ({diff} of {a.size} values); "
                               f"gpt2-gen ties the output projection to the token embedding and cannot "
                               f"convert an untied head")
    return [(out, by_name[hf], transpose) for hf, _, out, transpose in plan]


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------

def write_safetensors(path, items, dtype, metadata):
    """items: [(out_name, SourceTensor, transpose)]. Writes the tensors sorted by name, back to
    back from offset 0 (the header padded with spaces to a multiple of 8 bytes). Returns
    (parameter count, file size)."""
    st_dtype, elem = OUT_DTYPES[dtype]
    items = sorted(items, key=lambda it: it[0])
    header = {"__metadata__": metadata}
    offset, n_params = 0, 0
    for out, t, transpose in items:
        shape = t.shape[::-1] if transpose else t.shape
        nbytes = t.numel() * elem
        header[out] = {"dtype": st_dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
        n_params += t.numel()
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for out, t, transpose in items:
            x = t.to_f32()
            if transpose:
                x = x.T
            y = convert_values(out, x, dtype)
            assert y.nbytes == t.numel() * elem and y.flags.c_contiguous
            f.write(memoryview(y).cast("B"))
        f.flush()
        os.fsync(f.fileno())
        size = f.tell()
    if size != 8 + len(hbytes) + offset:
        raise ConvertError(f"{path}: wrote {size} bytes, expected {8 + len(hbytes) + offset}")
    return n_params, size


def check_tokenizer(tok_dir, c, hint):
    """Checks that tok_dir holds vocab.json and merges.txt consistent with the config."""
    for fname in TOKENIZER_FILES:
        if not os.path.isfile(os.path.join(tok_dir, fname)):
            raise ConvertError(f"{tok_dir} has no {fname}{hint}")
    vocab_path = os.path.join(tok_dir, "vocab.json")
    vocab = read_json(vocab_path, "the tokenizer's vocabulary")
    if not isinstance(vocab, dict) or not vocab or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vocab.values()):
        raise ConvertError(f"{vocab_path}: must be a JSON object mapping tokens to non-negative ids")
    top = max(vocab.values())
    if top >= c["vocab_size"]:
        raise ConvertError(f"{vocab_path}: token id {top} is outside the model's vocab_size "
                           f"({c['vocab_size']}): is this the tokenizer of another model?")


def check_out_dir(out):
    """An existing --out must be a directory holding only model files (it will be replaced)."""
    if not os.path.lexists(out):
        return
    if not os.path.isdir(out) or os.path.islink(out):
        raise ConvertError(f"--out {out} exists and is not a directory; not replacing it")
    others = sorted(set(os.listdir(out)) - OUTPUT_FILES)
    if others:
        raise ConvertError(f"--out {out} exists and holds files other than a model's "
                           f"({', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
                           f"not replacing it: remove it or choose another --out")


def commit_dir(tmp, out):
    """Renames the finished temporary directory to `out`, replacing an existing model."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old-", dir=os.path.dirname(out))
    os.rmdir(old)  # only the unique name is wanted
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------

def first_line(e):
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


def download(name):
    """snapshot_download of the files the converter needs. Returns (dir, source label)."""
    repo = HUB_MODELS.get(name, name)
    try:
        import huggingface_hub
    except ImportError:
        raise ConvertError(f"downloading \"{name}\" needs the huggingface_hub package "
                           f"(pip install huggingface_hub); without it, pass --from DIR with a local "
                           f"snapshot holding config.json and model.safetensors") from None
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")
    print(f"convert_weights: fetching {repo} from the Hugging Face hub"
          f"{' cache (HF_HUB_OFFLINE is set)' if offline else ' (or its cache)'}", file=sys.stderr)
    try:
        snapshot = huggingface_hub.snapshot_download(repo_id=repo, allow_patterns=HUB_FILES)
    except Exception as e:  # network, authentication, missing cache entries, ...: all one story
        why = ("HF_HUB_OFFLINE is set and the model is not in the local cache" if offline
               else "no network access to the hub?")
        raise ConvertError(f"cannot fetch {repo} from the Hugging Face hub ({why}): "
                           f"{type(e).__name__}: {first_line(e)}; or pass --from DIR with a local "
                           f"snapshot") from None
    snapshot = str(snapshot)
    label = repo
    parent = os.path.dirname(os.path.normpath(snapshot))
    if os.path.basename(parent) == "snapshots":  # the cache layout: .../snapshots/<commit>
        label = f"{repo}@{os.path.basename(os.path.normpath(snapshot))}"
    return snapshot, label


def resolve_source(args):
    """Returns (snapshot dir, source label, default output name)."""
    if args.from_dir is not None:
        if args.model is not None:
            raise ConvertError("give either a hub model name or --from DIR, not both")
        d = args.from_dir
        if not os.path.isdir(d):
            raise ConvertError(f"--from {d}: not a directory")
        name = os.path.basename(os.path.normpath(os.path.abspath(d)))
        return d, os.path.abspath(d), name
    if args.model is None:
        raise ConvertError("give a hub model name (" + ", ".join(HUB_MODELS) + ") or --from DIR")
    name = args.model
    if name not in HUB_MODELS and os.path.exists(name):
        raise ConvertError(f"\"{name}\" is a local path: to convert a local snapshot use --from {name}")
    if name not in HUB_MODELS and not REPO_ID_RE.match(name):
        raise ConvertError(f"unknown model \"{name}\": choose one of {', '.join(HUB_MODELS)}, give a hub "
                           f"repository id (owner/name), or pass --from DIR")
    snapshot, label = download(name)
    return snapshot, label, name.rstrip("/").split("/")[-1]


# ----------------------------------------------------------------------------------------

def convert(args):
    snapshot, source_label, default_name = resolve_source(args)
    out = os.path.normpath(args.out if args.out is not None else os.path.join("models", default_name))

    config_path = os.path.join(snapshot, "config.json")
    c = load_config(config_path)
    src = SourceFile(os.path.join(snapshot, "model.safetensors"))
    items = check_tensors(src, c, config_path)
    source_dtypes = sorted({t.dtype for _, t, _ in items})

    if args.tokenizer is not None:
        tok_dir = args.tokenizer
        check_tokenizer(tok_dir, c, "")
    else:
        tok_dir = snapshot
        check_tokenizer(tok_dir, c, " (the tokenizer files): pass --tokenizer DIR, a directory holding "
                                    "GPT-2's vocab.json and merges.txt (e.g. ../shared/gpt2-tokenizer)")
    for what, d in (("the source snapshot", snapshot), ("the --tokenizer directory", tok_dir)):
        if os.path.realpath(out) == os.path.realpath(d):
            raise ConvertError(f"--out {out} is {what}; converting in place would replace it: "
                               f"choose another --out")
    check_out_dir(out)

    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        metadata = {"format": gpt2_format.FORMAT, "format_version": gpt2_format.FORMAT_VERSION, "source": source_label,
                    "dtype": args.dtype, "source_dtype": ",".join(source_dtypes)}
        n_params, size = write_safetensors(os.path.join(tmp, "model.safetensors"), items, args.dtype, metadata)
        config_out = {k: c[k] for k in ("model_type", "vocab_size", "n_positions", "n_embd", "n_layer",
                                         "n_head", "n_inner", "layer_norm_epsilon", "activation_function",
                                         "eos_token_id")}
        with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config_out, f, indent=2, sort_keys=True)
            f.write("\n")
        for fname in TOKENIZER_FILES:
            shutil.copyfile(os.path.join(tok_dir, fname), os.path.join(tmp, fname))
        commit_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"convert_weights: {source_label} -> {out}: {args.dtype}, {n_params:,} parameters, "
          f"{size:,} bytes ({source_dtypes[0] if len(source_dtypes) == 1 else source_dtypes} source)",
          file=sys.stderr)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="convert_weights.py",
        description="Convert a Hugging Face GPT-2 checkpoint (hub name or local snapshot) into a "
                    "gpt2-gen model directory (model.safetensors, config.json, vocab.json, merges.txt).")
    p.add_argument("model", nargs="?",
                   help="hub model: " + ", ".join(HUB_MODELS) + " (or a repository id owner/name); "
                        "downloaded with huggingface_hub, honouring HF_HUB_OFFLINE and the hub cache")
    p.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="a local snapshot directory holding config.json and model.safetensors")
    p.add_argument("--out", metavar="DIR",
                   help="output directory (default: models/<name>, or models/<basename of DIR> with "
                        "--from; relative to the current directory). An existing model there is "
                        "replaced once the conversion has succeeded")
    p.add_argument("--dtype", choices=sorted(OUT_DTYPES), default="fp16",
                   help="stored precision (default fp16; rounding is to nearest even)")
    p.add_argument("--tokenizer", metavar="DIR",
                   help="take vocab.json and merges.txt from DIR (needed when the snapshot has none)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        convert(args)
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
