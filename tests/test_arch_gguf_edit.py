#!/usr/bin/env python3
"""test_arch_gguf_edit.py IN OUT EDIT...: a GGUF file with its metadata edited.

Makes the hostile files of tests/test_arch.sh from good synthetic ones. An
EDIT is one of
  KEY=u32:N   KEY=i32:N   KEY=f32:X   KEY=str:TEXT   set (or add) a key
  -KEY                                             delete a key
The tensor infos and data are copied unchanged; only the header grows or
shrinks, re-padded to general.alignment (tensor offsets are relative to the
data section, so they stay valid).
"""
import struct
import sys

SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_str(b, at):
    n = struct.unpack_from("<Q", b, at)[0]
    return b[at + 8:at + 8 + n], at + 8 + n


def skip_value(b, at, t):
    if t == 8:
        return read_str(b, at)[1]
    if t == 9:
        et, n = struct.unpack_from("<IQ", b, at)
        at += 12
        for _ in range(n):
            at = skip_value(b, at, et)
        return at
    return at + SIZES[t]


def encode(key, spec):
    kind, _, text = spec.partition(":")
    k = key.encode()
    head = struct.pack("<Q", len(k)) + k
    if kind == "u32":
        return head + struct.pack("<II", 4, int(text))
    if kind == "i32":
        return head + struct.pack("<Ii", 5, int(text))
    if kind == "f32":
        return head + struct.pack("<If", 6, float(text))
    if kind == "str":
        v = text.encode()
        return head + struct.pack("<IQ", 8, len(v)) + v
    raise SystemExit("unknown value kind " + kind)


def main():
    src, dst, edits = sys.argv[1], sys.argv[2], sys.argv[3:]
    b = open(src, "rb").read()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", b, 0)
    assert magic == b"GGUF", "not a GGUF file"
    at, kvs, align = 24, [], 32
    for _ in range(n_kv):
        start = at
        key, at = read_str(b, at)
        t = struct.unpack_from("<I", b, at)[0]
        at = skip_value(b, at + 4, t)
        if key == b"general.alignment":
            align = struct.unpack_from("<I", b, at - 4)[0]
        kvs.append((key.decode(), b[start:at]))
    infos_start = at
    for _ in range(n_tensors):
        _, at = read_str(b, at)
        n_dims = struct.unpack_from("<I", b, at)[0]
        at += 4 + 8 * n_dims + 4 + 8
    infos = b[infos_start:at]
    data_start = (at + align - 1) // align * align
    for e in edits:
        if e.startswith("-"):
            kvs = [kv for kv in kvs if kv[0] != e[1:]]
            continue
        key, _, spec = e.partition("=")
        raw = encode(key, spec)
        kvs = [(k, raw if k == key else r) for k, r in kvs]
        if key not in [k for k, _ in kvs]:
            kvs.append((key, raw))
    out = struct.pack("<4sIQQ", magic, version, n_tensors, len(kvs))
    out += b"".join(r for _, r in kvs) + infos
    out += b"\0" * ((-len(out)) % align)
    with open(dst, "wb") as f:
        f.write(out)
        f.write(b[data_start:])


if __name__ == "__main__":
    main()
