#!/usr/bin/env python3
"""make_seeds.py OUTDIR SYNTH_GGUF_TOOL: writes the seed corpora of the fuzz
targets into OUTDIR/{validate,gguf,tokenizer}.

 - validate: one valid list per op (and a few invalid ones), laid out as
   fuzz_validate.c reads them: a 16-byte header, 240-byte commands, and the
   tensors in the same 64 KiB image (indices and positions included).
 - gguf: tiny synthetic models of every weight type from tools/synth_gguf,
   plus truncations of one at each section.
 - tokenizer: text in several scripts, special tokens, invalid UTF-8, and
   id sequences for the decoder.
"""
import os
import struct
import subprocess
import sys

out, synth = sys.argv[1], sys.argv[2]
for d in ("validate", "gguf", "tokenizer"):
    os.makedirs(os.path.join(out, d), exist_ok=True)


def write(kind, name, data):
    with open(os.path.join(out, kind, name), "wb") as f:
        f.write(data)


# ---- validate ----
F32, F16, BF16, Q8_0, Q4_0, Q4_1, I32 = 1, 2, 3, 4, 5, 6, 7
NONE = (0, 0, (0, 0, 0, 0), (0, 0, 0))


def tensor(offset, dtype, ne):
    ne = tuple(ne) + (1,) * (4 - len(ne))
    return (offset, dtype, ne, (0, 0, 0))


def pack_tensor(t):
    off, dt, ne, nb = t
    return struct.pack("<II4I3II", off, dt, *ne, *nb, 0)


def cmd(op, dst, srcs=(), params=()):
    srcs = list(srcs) + [NONE] * (4 - len(srcs))
    params = list(params) + [0] * (8 - len(params))
    b = struct.pack("<II", op, 0) + pack_tensor(dst) + b"".join(pack_tensor(s) for s in srcs)
    return b + struct.pack("<8I", *params)


def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def image(cmds, fill=b""):
    head = struct.pack("<IHHII", 0x4C435053, 1, 240, len(cmds), 0) + b"".join(cmds)
    # Data after the list: small floats and small valid indices (0..3).
    body = bytearray(head)
    while len(body) < 8192:
        body += struct.pack("<I", 2) if len(body) % 64 < 32 else struct.pack("<f", 0.5)
    return bytes(body)


A, B, C, D, IDX = 4096, 5120, 6144, 7168, 4096 + 64  # 1 KiB regions; indices read as i32 "2"
seeds = {
    "matmul": [cmd(1, tensor(C, F32, (8, 4)), [tensor(A, F32, (16, 8)), tensor(B, F32, (16, 4))])],
    "matmul_q8": [cmd(1, tensor(C, F32, (2, 1)), [tensor(A, Q8_0, (32, 2)), tensor(B, F32, (32, 1))])],
    "matmul_q4_1": [cmd(1, tensor(C, F32, (2, 1)), [tensor(A, Q4_1, (32, 2)), tensor(B, F32, (32, 1))])],
    "add": [cmd(2, tensor(C, F32, (16, 4)), [tensor(A, F32, (16, 4)), tensor(B, F32, (16, 1))])],
    "mul_inplace": [cmd(3, tensor(A, F32, (16, 4)), [tensor(A, F32, (16, 4)), tensor(B, F32, (16, 4))])],
    "scale": [cmd(4, tensor(C, F32, (64,)), [tensor(A, F32, (64,))], [f32bits(2.0)])],
    "get_rows": [cmd(5, tensor(C, F32, (8, 2)), [tensor(A, F32, (8, 4)), tensor(IDX, I32, (2,))])],
    "rmsnorm": [cmd(6, tensor(C, F32, (16, 2)), [tensor(A, F32, (16, 2)), tensor(B, F32, (16,))], [f32bits(1e-5)])],
    "rope": [cmd(7, tensor(C, F32, (8, 2, 2)), [tensor(A, F32, (8, 2, 2)), tensor(IDX, I32, (2,))],
                 [8, f32bits(10000.0), 0, f32bits(1.0)])],
    "attention": [cmd(8, tensor(C, F32, (8, 2, 2)), [tensor(A, F32, (8, 2, 2)), tensor(B, F32, (8, 1, 4)),
                                                     tensor(D, F32, (8, 1, 4)), tensor(IDX, I32, (2,))],
                      [f32bits(0.35)])],
    "attention_f16": [cmd(8, tensor(C, F32, (8, 2, 2)), [tensor(A, F32, (8, 2, 2)), tensor(B, F16, (8, 1, 4)),
                                                         tensor(D, F16, (8, 1, 4)), tensor(IDX, I32, (2,))],
                          [f32bits(0.35)])],
    "set_rows": [cmd(9, tensor(C, F16, (8, 4)), [tensor(A, F32, (8, 2)), tensor(IDX, I32, (2,))])],
    "swiglu": [cmd(10, tensor(C, F32, (16, 2)), [tensor(A, F32, (16, 2)), tensor(B, F32, (16, 2))])],
    "softmax": [cmd(11, tensor(C, F32, (16, 2)), [tensor(A, F32, (16, 2))], [f32bits(1.0)])],
    "copy_bf16": [cmd(12, tensor(C, BF16, (16, 2)), [tensor(A, F32, (16, 2))])],
    "nop": [cmd(0, NONE)],
    "bad_op": [cmd(99, NONE)],
    "dst_over_list": [cmd(4, tensor(0, F32, (16,)), [tensor(A, F32, (16,))], [f32bits(1.0)])],
}
seeds["layer"] = seeds["rmsnorm"] + seeds["matmul"] + seeds["rope"] + seeds["attention"] + seeds["swiglu"]
for name, cmds in seeds.items():
    write("validate", name, image(cmds))

# ---- gguf ----
small = ["--vocab", "300", "--embd", "32", "--layers", "1", "--heads", "2", "--ff", "64", "--ctx", "64"]
first = None
for t in ("f32", "f16", "q8_0", "q4_0", "q4_1"):
    path = os.path.join(out, "gguf", "synth_" + t)
    subprocess.run([synth, "--out", path, "--type", t] + small, check=True, stdout=subprocess.DEVNULL)
    first = first or path
with open(first, "rb") as f:
    model = f.read()
for cut in (4, 8, 16, 24, 40, 100, 400, 1000, 3000, len(model) // 2, len(model) - 1):
    if cut < len(model):
        write("gguf", "truncated_%d" % cut, model[:cut])

# ---- tokenizer ----
texts = [
    "Hello, world! How are you today?",
    "def f(x):\n    return x ** 2  # 1234567890\n",
    "<|im_start|>user\nWrite a haiku<|im_end|>\n<|im_start|>assistant\n",
    "caf\u00e9 na\u00efve \u00fcber \u65e5\u672c\u8a9e \ud55c\uad6d\uc5b4 \u0440\u0443\u0441\u0441\u043a\u0438\u0439 \U0001F600\U0001F680",
    "   leading and trailing spaces   \t\r\n\n\n",
    "don't won't I'm we've they'll she'd",
    "a" * 300,
    "1" * 50 + " " + "!?" * 40,
]
for i, t in enumerate(texts):
    raw = t.encode("utf-8")
    write("tokenizer", "text_%d" % i, b"\x00" + raw)
    write("tokenizer", "text_special_%d" % i, b"\x02" + raw)
write("tokenizer", "bad_utf8", b"\x00" + b"\xff\xfe\xc3\x28\xe2\x82\xf0\x9f\x98" + b"ok")
write("tokenizer", "ids", b"\x01" + struct.pack("<8i", 0, 1, 2, 100, 1000, 49151, -1, 2**31 - 1))
write("tokenizer", "ids_special", b"\x03" + struct.pack("<6i", 1, 2, 0, 17, 198, 30))
