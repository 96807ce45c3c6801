"""The gpt2-gen model format for the Python tools: every tensor's name, shape rule and the
Hugging Face tensor it comes from. The C++ side lists the same tensors, in the same order, in
src/model/model.h (for_each_model_tensor, for_each_layer_tensor).

Names differ from Hugging Face's on purpose (an unconverted checkpoint is refused instead of
being read with transposed square matrices). Linear weights are [out, in] (torch.nn.Linear's
layout); Hugging Face's Conv1D stores [in, out], so those are transposed on conversion.
"""

# __metadata__ of a converted file: {"format": FORMAT, "format_version": FORMAT_VERSION, ...}
FORMAT = "gpt2-gen"
FORMAT_VERSION = "1"

# (name in the file, shape rule, Hugging Face name without "transformer.", transposed)
# Shape rules: V = vocab_size, P = n_positions, C = n_embd, 3C = 3 * n_embd, H = n_inner.
MODEL_TENSORS = [
    ("wte", ("V", "C"), "wte.weight", False),  # also the LM head (tied)
    ("wpe", ("P", "C"), "wpe.weight", False),
    ("ln_f.weight", ("C",), "ln_f.weight", False),
    ("ln_f.bias", ("C",), "ln_f.bias", False),
]
# The tensors of block l, all named with the prefix "h.{l}." (in the file and in Hugging Face's).
LAYER_TENSORS = [
    ("ln_1.weight", ("C",), "ln_1.weight", False),
    ("ln_1.bias", ("C",), "ln_1.bias", False),
    ("attn.qkv.weight", ("3C", "C"), "attn.c_attn.weight", True),  # rows: q of all heads, then k, then v
    ("attn.qkv.bias", ("3C",), "attn.c_attn.bias", False),
    ("attn.proj.weight", ("C", "C"), "attn.c_proj.weight", True),
    ("attn.proj.bias", ("C",), "attn.c_proj.bias", False),
    ("ln_2.weight", ("C",), "ln_2.weight", False),
    ("ln_2.bias", ("C",), "ln_2.bias", False),
    ("mlp.fc.weight", ("H", "C"), "mlp.c_fc.weight", True),
    ("mlp.fc.bias", ("H",), "mlp.c_fc.bias", False),
    ("mlp.proj.weight", ("C", "H"), "mlp.c_proj.weight", True),
    ("mlp.proj.bias", ("C",), "mlp.c_proj.bias", False),
]


def dims(rule, config):
    """A shape rule as a tuple of sizes, for a config dict with the keys of config.json
    (n_inner resolved)."""
    size = {"V": config["vocab_size"], "P": config["n_positions"], "C": config["n_embd"],
            "3C": 3 * config["n_embd"], "H": config["n_inner"]}
    return tuple(size[d] for d in rule)


def tensors(config):
    """[(name, shape, hf_name, transposed)] for every tensor the config implies, in the order of
    src/model/model.h. hf_name's shape is `shape` reversed where transposed."""
    out = [(n, dims(r, config), hf, t) for n, r, hf, t in MODEL_TENSORS]
    for l in range(config["n_layer"]):
        p = f"h.{l}."
        out += [(p + n, dims(r, config), p + hf, t) for n, r, hf, t in LAYER_TENSORS]
    return out
