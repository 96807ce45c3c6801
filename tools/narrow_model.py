#!/usr/bin/env python3
"""Writes an fp16 or bf16 copy of an fp32 gpt2-gen model directory, with the Python standard
library only: the same bytes as tools/convert_weights.py --dtype fp16|bf16 gives from the model's
source (tests/test_gpu_check.py compares them). Why: tools/gpu_check.sh runs where numpy may be
missing, and the bundle that carries the tiny models there must stay under 64 MiB, so it carries
tiny-fp32 alone and makes tiny-fp16 and tiny-bf16 from it (~10 s; they would take 23 MB packed).

    python3 tools/narrow_model.py IN_DIR OUT_DIR fp16|bf16

Copies config.json (and vocab.json / merges.txt where present). Every value rounds to nearest
even, as numpy's astype(float16) and convert_weights.py's bf16 rounding do; a value beyond the
format's range is refused (one line, exit status 1), as convert_weights.py refuses it.
"""
import json
import math
import os
import shutil
import struct
import sys

FORMATS = {"fp16": ("F16", 2), "bf16": ("BF16", 2)}
# |x| from which a value rounds to Inf: fp16's max + half an ulp, bf16's likewise.
LIMITS = {"fp16": 65520.0, "bf16": 3.3961775292304611e38}


def fail(msg):
    print(f"narrow_model: {msg}", file=sys.stderr)
    sys.exit(1)


def narrow(name, data, dtype):
    """fp32 little-endian bytes -> the format's little-endian bytes, rounded to nearest even."""
    values = struct.unpack(f"<{len(data) // 4}f", data)
    if any(map(math.isnan, values)) or (values and max(map(abs, values)) >= LIMITS[dtype]):
        fail(f"tensor \"{name}\" holds a NaN or values beyond {dtype}'s range: convert it with --dtype fp32")
    if dtype == "fp16":
        return struct.pack(f"<{len(values)}e", *values)  # struct rounds half to even
    # bf16: the upper 16 bits of u + 0x7FFF + (bit 16 of u), for all values at once on one big
    # integer (lanes of 32 bits: for |x| below the limit no carry leaves its lane).
    lanes = len(data) // 4
    u = int.from_bytes(data, "little")
    bit16 = (u >> 16) & int.from_bytes(b"\x01\x00\x00\x00" * lanes, "little")
    r = (u + int.from_bytes(b"\xff\x7f\x00\x00" * lanes, "little") + bit16).to_bytes(len(data), "little")
    out = bytearray(2 * lanes)
    out[0::2], out[1::2] = r[2::4], r[3::4]
    return bytes(out)


def main(argv):
    if len(argv) != 3 or argv[2] not in FORMATS:
        fail("usage: narrow_model.py IN_DIR OUT_DIR fp16|bf16")
    src, out, dtype = argv
    st_dtype, elem = FORMATS[dtype]
    with open(os.path.join(src, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    meta = header.pop("__metadata__", {})
    if meta.get("dtype") != "fp32" or any(t["dtype"] != "F32" for t in header.values()):
        fail(f"{src}: not an fp32 gpt2-gen model (metadata dtype {meta.get('dtype')!r})")
    new = {"__metadata__": dict(meta, dtype=dtype)}
    offset, parts = 0, []
    for name in sorted(header):  # convert_weights.py's order: sorted by name, back to back
        t = header[name]
        begin, end = t["data_offsets"]
        nbytes = (end - begin) // 4 * elem
        new[name] = {"dtype": st_dtype, "shape": t["shape"], "data_offsets": [offset, offset + nbytes]}
        parts.append(narrow(name, body[begin:end], dtype))
        offset += nbytes
    hbytes = json.dumps(new, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)) + hbytes)
        for p in parts:
            f.write(p)
    for fname in ("config.json", "vocab.json", "merges.txt"):
        if os.path.exists(os.path.join(src, fname)):
            shutil.copyfile(os.path.join(src, fname), os.path.join(out, fname))


if __name__ == "__main__":
    main(sys.argv[1:])
