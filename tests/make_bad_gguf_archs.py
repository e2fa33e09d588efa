#!/usr/bin/env python3
"""make_bad_gguf_archs.py GOOD.gguf OUTDIR: hostile variants of a model of
one of the issue-15 architectures (gemma3, qwen2, qwen3, phi3) with K-quant
tensors, for tests/test_hostile_files.c.

Names follow make_bad_gguf.py: <must|may>_<case>.gguf. "must" files have to
be refused with a message; "may" files only must not crash. Cases:
 - every architecture key (<arch>.*) set to 0, 1, a huge value, and for
   floats NaN, infinity and a negative value;
 - K-quant tensors whose first dimension is no multiple of 256, or whose
   type is retagged to each other quantized type;
 - Phi-3's LongRoPE factor tensors with the wrong length.
Uses PyPI's gguf package only to read the layout (the bytes are patched
here, so that values the writer would refuse can be written)."""
import os
import struct
import sys

import gguf

good_path, out = sys.argv[1], sys.argv[2]
good = open(good_path, "rb").read()
os.makedirs(out, exist_ok=True)
reader = gguf.GGUFReader(good_path)
arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
count = 0


def emit(kind, name, data):
    global count
    with open(os.path.join(out, "%s_%s.gguf" % (kind, name)), "wb") as f:
        f.write(data)
    count += 1


def patch(fmt, where, *values):
    b = bytearray(good)
    struct.pack_into(fmt, b, where, *values)
    return bytes(b)


def value_offset(field):
    """File offset of a scalar field's value (its last part)."""
    return field.offset + sum(p.nbytes for p in field.parts[:-1])


# Keys whose wrong values the loader must refuse (the rest: no crash).
MUST_ZERO = {"block_count", "embedding_length", "attention.head_count", "feed_forward_length",
             "attention.key_length", "attention.value_length", "context_length"}
MUST_HUGE = MUST_ZERO | {"attention.head_count_kv", "rope.dimension_count"}
MUST_FLOAT = {"rope.freq_base", "attention.layer_norm_rms_epsilon"}

for key, field in reader.fields.items():
    if not key.startswith(arch + "."):
        continue
    short = key[len(arch) + 1:]
    tag = key.replace(".", "_")
    t = field.types[0] if field.types else None
    at = value_offset(field)
    if t == gguf.GGUFValueType.UINT32:
        emit("must" if short in MUST_ZERO else "may", tag + "_0", patch("<I", at, 0))
        emit("may", tag + "_1", patch("<I", at, 1))
        emit("must" if short in MUST_HUGE else "may", tag + "_huge", patch("<I", at, 0xFFFFFFF0))
    elif t == gguf.GGUFValueType.FLOAT32:
        for name, v in (("nan", float("nan")), ("inf", float("inf")), ("neg", -1.0)):
            emit("must" if short in MUST_FLOAT else "may", "%s_%s" % (tag, name), patch("<f", at, v))
        emit("must" if short == "rope.freq_base" else "may", tag + "_0", patch("<f", at, 0.0))

# Tensor records: [name len u64][name][n_dims u32][dims u64 x n][type u32][offset u64]
QUANT = {gguf.GGMLQuantizationType[n]: n for n in
         ("Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS")}


def record(tensor):
    """Offsets of (dims, type) in the tensor's info record."""
    name = tensor.name.encode()
    at = good.find(struct.pack("<Q", len(name)) + name)
    assert at > 0, tensor.name
    dims_at = at + 8 + len(name) + 4
    (nd,) = struct.unpack_from("<I", good, dims_at - 4)
    return dims_at, dims_at + 8 * nd


kquants = [t for t in reader.tensors if t.tensor_type.name.endswith("_K")]
for i, t in enumerate(kquants[:3]):
    dims_at, type_at = record(t)
    emit("must", "t%d_k_dim0_not_256" % i, patch("<Q", dims_at, int(t.shape[0]) + 32))
    for q, name in QUANT.items():
        if q != t.tensor_type:
            emit("may", "t%d_retagged_%s" % (i, name), patch("<I", type_at, int(q)))
for t in reader.tensors:
    if "rope_factors" in t.name:
        dims_at, _ = record(t)
        tag = t.name.replace(".", "_")
        emit("must", tag + "_len_1", patch("<Q", dims_at, 1))
        emit("must", tag + "_len_double", patch("<Q", dims_at, int(t.shape[0]) * 2))
print("wrote %d files to %s" % (count, out))
