#!/usr/bin/env python3
"""test_quant_ref.py OUT: random valid blocks of every issue-15 quant type and
PyPI gguf's reference dequantization of them (gguf.quants.dequantize), for
tests/test_quant_dequant.c to hold the CPU backend's get_rows decoder to,
bit for bit.

"Valid": every byte random except the f16 scale fields (d, dmin, Q5_1's m),
which get finite values of either sign across the f16 range, zeros and
subnormals included; a block of any other bytes is a legal block. Exits 77
(skipped) when numpy or gguf is missing.

OUT format, per type: u32 samepage dtype, u32 blocks, u32 block bytes,
u32 block elements, the block bytes, then blocks * elements f32 values
(all little-endian).
"""
import struct
import sys

try:
    import numpy as np
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize
except ImportError as e:
    print(f"SKIP: needs numpy and gguf ({e})")
    sys.exit(77)

# samepage dtype (include/samepage_abi.h), ggml type, block bytes, block
# elements, offsets of the f16 scale fields in a block.
TYPES = [
    (8, Q.Q5_0, 22, 32, [0]),
    (9, Q.Q5_1, 24, 32, [0, 2]),
    (10, Q.Q2_K, 84, 256, [80, 82]),
    (11, Q.Q3_K, 110, 256, [108]),
    (12, Q.Q4_K, 144, 256, [0, 2]),
    (13, Q.Q5_K, 176, 256, [0, 2]),
    (14, Q.Q6_K, 210, 256, [208]),
    (15, Q.IQ4_NL, 18, 32, [0]),
    (16, Q.IQ4_XS, 136, 256, [0]),
]
BLOCKS = 64


def scale_values(rng, n):
    """n finite f16 scales: mostly ordinary, some tiny, huge, subnormal or zero."""
    v = rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-6, 4, n)
    special = rng.integers(0, 8, n)
    v = np.where(special == 0, 0.0, v)
    v = np.where(special == 1, rng.uniform(-1, 1, n) * 6e-5, v)  # subnormal
    v = np.where(special == 2, rng.uniform(-65504, 65504, n), v)
    return v.astype(np.float16)


def blocks_of(rng, nbytes, scale_offsets):
    raw = rng.integers(0, 256, (BLOCKS, nbytes), dtype=np.uint8)
    for off in scale_offsets:
        raw[:, off:off + 2] = scale_values(rng, BLOCKS).view(np.uint8).reshape(BLOCKS, 2)
    return raw


def main():
    rng = np.random.default_rng(15)
    with open(sys.argv[1], "wb") as out:
        for dtype, qtype, nbytes, elems, scale_offsets in TYPES:
            raw = blocks_of(rng, nbytes, scale_offsets)
            ref = dequantize(raw, qtype).astype(np.float32, copy=False)
            assert ref.shape == (BLOCKS, elems), (qtype, ref.shape)
            out.write(struct.pack("<4I", dtype, BLOCKS, nbytes, elems))
            out.write(raw.tobytes())
            out.write(ref.astype("<f4").tobytes())
    print(f"wrote {len(TYPES)} types x {BLOCKS} blocks")


if __name__ == "__main__":
    main()
