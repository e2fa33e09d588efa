#!/usr/bin/env python3
"""vocab_only.py IN.gguf OUT.gguf: copies a GGUF's header and key/value
metadata (the tokenizer's vocabulary, merges, token types and ids) into a
new GGUF with no tensors, so the tokenizer fuzz target can travel in a
packed campaign folder (scripts/fuzz --build-only) without the weights:
SmolLM2-135M is 98 MB, its vocabulary about 2 MB.

Only the layout is read (GGUF v2/v3: magic, version, tensor count, kv
count, then typed key/value pairs); values are copied byte for byte.
"""
import struct
import sys

# Fixed sizes of the scalar value types (GGUF type ids).
SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
STRING, ARRAY = 8, 9


def skip_value(buf, at, vtype):
    if vtype in SCALAR:
        return at + SCALAR[vtype]
    if vtype == STRING:
        (n,) = struct.unpack_from("<Q", buf, at)
        return at + 8 + n
    if vtype == ARRAY:
        etype, count = struct.unpack_from("<IQ", buf, at)
        at += 12
        if etype in SCALAR:
            return at + count * SCALAR[etype]
        for _ in range(count):
            at = skip_value(buf, at, etype)
        return at
    sys.exit(f"vocab_only: unknown value type {vtype} at byte {at}")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1], "rb") as f:
        buf = f.read()
    magic, version, _n_tensors, n_kv = struct.unpack_from("<4sIQQ", buf, 0)
    if magic != b"GGUF" or version not in (2, 3):
        sys.exit(f"vocab_only: {sys.argv[1]} is not a GGUF v2/v3 file")
    at = 24
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", buf, at)
        at += 8 + klen
        (vtype,) = struct.unpack_from("<I", buf, at)
        at = skip_value(buf, at + 4, vtype)
    with open(sys.argv[2], "wb") as f:
        f.write(struct.pack("<4sIQQ", b"GGUF", version, 0, n_kv))
        f.write(buf[24:at])


main()
