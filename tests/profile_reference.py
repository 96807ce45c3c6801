"""What `--profile` must report for a model, worked out here from its config.json alone (the
tests' independent side of src/engine/profile.cpp's decode_op_bytes): the rows of each backend's decode
step in the order they run, how often each runs per token, and the bytes each call must move.

The convention (src/app/README.md, "Profiling the decode step"): an op reads its weights once, its inputs,
and writes its outputs; the residual stream is read and written where an op accumulates into it;
activations, LayerNorm parameters and biases are fp32; what a fused kernel keeps on chip is not
counted. Each op is listed below as the tensors it touches: (elements, bytes per element)."""
import json
import math
import os

FP32 = 4
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
Q8_BLOCK = 32  # int8: one fp32 scale per 32 weights of a row


def load_config(model_dir):
    with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    return {"C": c["n_embd"], "H": c.get("n_inner") or 4 * c["n_embd"], "V": c["vocab_size"], "layers": c["n_layer"]}


def _matrix(rows, cols, dtype):
    """A weight matrix as held: its elements, and for int8 one fp32 scale per block of a row."""
    touched = [(rows * cols, BYTES[dtype])]
    if dtype == "int8":
        touched.append((rows * math.ceil(cols / Q8_BLOCK), FP32))
    return touched


def _cpu_ops(m, dtype, context):
    C, H, V = m["C"], m["H"], m["V"]
    ln_params = [(C, FP32), (C, FP32)]  # gamma, beta
    return [
        ("embedding", 1, [(C, BYTES[dtype]), (C, FP32), (C, FP32)]),  # wte row as held, wpe row, x
        # x, the norm, W, bias, q out, k and v into the fp32 rings
        ("ln_1+qkv+kv_append", m["layers"],
         [(C, FP32), *ln_params, *_matrix(3 * C, C, dtype), (3 * C, FP32), (C, FP32), (2 * C, FP32)]),
        ("attention", m["layers"], [(C, FP32), (2 * context * C, FP32), (C, FP32)]),
        ("attn_proj", m["layers"], [(C, FP32), *_matrix(C, C, dtype), (C, FP32), (C, FP32), (C, FP32)]),
        ("ln_2+fc+gelu", m["layers"], [(C, FP32), *ln_params, *_matrix(H, C, dtype), (H, FP32), (H, FP32)]),
        ("fc_proj", m["layers"], [(H, FP32), *_matrix(C, H, dtype), (C, FP32), (C, FP32), (C, FP32)]),
        ("ln_f+lm_head", 1, [(C, FP32), *ln_params, *_matrix(V, C, dtype), (V, FP32)]),  # the argmax on the way
    ]


def _cuda_ops(m, dtype, context):
    C, H, V = m["C"], m["H"], m["V"]
    t = BYTES[dtype]  # CUDA holds the matrices, wpe and the K/V rings in the compute dtype
    ln_params = [(C, FP32), (C, FP32)]
    return [
        ("embedding", 1, [(C, t), (C, t), (C, FP32)]),
        ("ln_1+qkv+kv_append", m["layers"],
         [(C, FP32), *ln_params, *_matrix(3 * C, C, dtype), (3 * C, FP32), (C, FP32), (2 * C, t)]),
        ("attention", m["layers"], [(C, FP32), (2 * context * C, t), (C, FP32)]),
        ("attn_proj", m["layers"], [(C, FP32), *_matrix(C, C, dtype), (C, FP32), (C, FP32), (C, FP32)]),
        ("ln_2+fc+gelu", m["layers"], [(C, FP32), *ln_params, *_matrix(H, C, dtype), (H, FP32), (H, FP32)]),
        ("fc_proj", m["layers"], [(H, FP32), *_matrix(C, H, dtype), (C, FP32), (C, FP32), (C, FP32)]),
        ("ln_f+lm_head", 1, [(C, FP32), *ln_params, *_matrix(V, C, dtype), (V, FP32)]),
        ("argmax", 1, [(V, FP32), (1, 4)]),
    ]


def expected_rows(model_dir, device, dtype, context):
    """[(op, calls_per_token, bytes_per_call)] in the order the decode step runs them."""
    m = load_config(model_dir)
    ops = _cpu_ops(m, dtype, context) if device == "cpu" else _cuda_ops(m, dtype, context)
    return [(name, calls, sum(n * b for n, b in touched)) for name, calls, touched in ops]
