#!/usr/bin/env python3
"""make_bad_gguf.py GOOD.gguf OUTDIR: writes a corpus of corrupted GGUFs.

Each file is named <must|may>_<case>.gguf: "must" files have to be refused
with an error; "may" files are wrong but could be loadable (garbage weights),
so only "no crash" is required. Cases: truncation at every section boundary
(header, each metadata pair, each tensor record, the padding, the data),
huge counts, huge string and array lengths, unknown and wrong value types,
bad alignment, bad dimensions and tensor types, lying and misaligned data
offsets, and wrong versions."""
import os
import struct
import sys

good = open(sys.argv[1], "rb").read()
out = sys.argv[2]
os.makedirs(out, exist_ok=True)

SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def read_string(at):
    (n,) = struct.unpack_from("<Q", good, at)
    return good[at + 8:at + 8 + n].decode("utf-8", "replace"), at + 8 + n


def skip_value(t, at):
    if t in SCALAR:
        return at + SCALAR[t]
    if t == 8:
        return read_string(at)[1]
    if t == 9:
        et, n = struct.unpack_from("<IQ", good, at)
        at += 12
        for _ in range(n):
            at = skip_value(et, at)
        return at
    raise ValueError("type %d" % t)


version, n_tensors, n_kv = struct.unpack_from("<IQQ", good, 4)
at = 24
kvs = []  # (start, key, type_at, type, value_at, end)
for _ in range(n_kv):
    start = at
    key, at = read_string(at)
    (t,) = struct.unpack_from("<I", good, at)
    end = skip_value(t, at + 4)
    kvs.append((start, key, at, t, at + 4, end))
    at = end
tensors = []  # (start, dims_at, n_dims, type_at, offset_at, end)
for _ in range(n_tensors):
    start = at
    _, at = read_string(at)
    (nd,) = struct.unpack_from("<I", good, at)
    dims_at = at + 4
    type_at = dims_at + 8 * nd
    offset_at = type_at + 4
    at = offset_at + 8
    tensors.append((start, dims_at, nd, type_at, offset_at, at))
info_end = at
alignment = 32
for (s, key, ta, t, va, e) in kvs:
    if key == "general.alignment":
        (alignment,) = struct.unpack_from("<I", good, va)
data_start = (info_end + alignment - 1) // alignment * alignment


def emit(kind, name, data):
    with open(os.path.join(out, "%s_%s.gguf" % (kind, name)), "wb") as f:
        f.write(data)


def patch(fmt, where, *values):
    b = bytearray(good)
    struct.pack_into(fmt, b, where, *values)
    return bytes(b)


# Truncations at every section boundary (and inside some sections).
cuts = {0, 4, 8, 16, 23, 24, info_end, data_start, (info_end + data_start) // 2 + 1,
        data_start + 1, (data_start + len(good)) // 2, len(good) - 1}
for (s, key, ta, t, va, e) in kvs:
    cuts.update({s, s + 4, ta, va, (va + e) // 2})
for (s, da, nd, ta, oa, e) in tensors:
    cuts.update({s, da, ta, oa, oa + 4})
for c in sorted(cuts):
    if c < len(good):
        emit("must", "truncated_at_%d" % c, good[:c])

# The header.
emit("must", "version_1", patch("<I", 4, 1))
emit("must", "version_4", patch("<I", 4, 4))
emit("must", "bad_magic", b"GGUG" + good[4:])
for name, v in (("n_tensors_2p63", 1 << 63), ("n_tensors_2p32", 1 << 32), ("n_tensors_plus1", n_tensors + 1),
                ("n_tensors_max", (1 << 64) - 1)):
    emit("must", name, patch("<Q", 8, v))
for name, v in (("n_kv_2p63", 1 << 63), ("n_kv_max", (1 << 64) - 1), ("n_kv_plus1", n_kv + 1)):
    emit("must", name, patch("<Q", 16, v))
emit("may", "n_tensors_minus1", patch("<Q", 8, n_tensors - 1))
emit("must", "n_tensors_0", patch("<Q", 8, 0))
emit("must", "n_kv_0", patch("<Q", 16, 0))

# Metadata: lengths, types.
first = kvs[0]
emit("must", "key_len_huge", patch("<Q", first[0], 1 << 62))
emit("must", "key_len_file", patch("<Q", first[0], len(good)))
for (s, key, ta, t, va, e) in kvs:
    if t == 8:
        emit("must", "string_len_huge_" + key.replace(".", "_"), patch("<Q", va, 1 << 62))
        emit("must", "string_len_past_end_" + key.replace(".", "_"), patch("<Q", va, len(good) - va))
        break
arrays = [k for k in kvs if k[3] == 9]
for (s, key, ta, t, va, e) in arrays[:3]:
    k = key.replace(".", "_")
    emit("must", "array_count_huge_" + k, patch("<Q", va + 4, 1 << 62))
    emit("must", "array_count_2p32_" + k, patch("<Q", va + 4, 1 << 32))
    emit("must", "array_elem_type_99_" + k, patch("<I", va, 99))
    emit("must", "array_of_arrays_" + k, patch("<I", va, 9))
    (et,) = struct.unpack_from("<I", good, va)
    emit("must" if et == 8 else "may", "array_elem_type_swapped_" + k, patch("<I", va, 6 if et == 8 else 8))
for i, (s, key, ta, t, va, e) in enumerate(kvs[:40]):
    emit("must", "kv_type_99_%d" % i, patch("<I", ta, 99))
    if t != 8:
        emit("may", "kv_type_string_%d" % i, patch("<I", ta, 8))
    elif i % 3 == 0:
        emit("may", "kv_type_u32_%d" % i, patch("<I", ta, 4))
for (s, key, ta, t, va, e) in kvs:
    if key.endswith("block_count") or key.endswith("embedding_length") or key.endswith("head_count"):
        k = key.replace(".", "_")
        emit("must", k + "_0", patch("<I", va, 0))
        emit("must", k + "_huge", patch("<I", va, 0xFFFFFFFF))

# Tensor records.
for i, (s, da, nd, ta, oa, e) in enumerate(tensors[:4] + tensors[-2:]):
    emit("must", "t%d_n_dims_5" % i, patch("<I", da - 4, 5))
    emit("must", "t%d_n_dims_huge" % i, patch("<I", da - 4, 0xFFFFFFFF))
    emit("must", "t%d_dim0_huge" % i, patch("<Q", da, 1 << 40))
    emit("must", "t%d_dim0_0" % i, patch("<Q", da, 0))
    if nd >= 2:
        emit("must", "t%d_dims_overflow" % i, patch("<QQ", da, 1 << 32, 1 << 32))
    emit("must", "t%d_type_99" % i, patch("<I", ta, 99))
    (tt,) = struct.unpack_from("<I", good, ta)
    emit("may", "t%d_type_swapped" % i, patch("<I", ta, 0 if tt != 0 else 1))
    emit("must", "t%d_offset_past_end" % i, patch("<Q", oa, len(good)))
    emit("must", "t%d_offset_huge" % i, patch("<Q", oa, (1 << 64) - 32))
    (off,) = struct.unpack_from("<Q", good, oa)
    emit("must", "t%d_offset_misaligned" % i, patch("<Q", oa, off + 1))
    emit("may", "t%d_offset_overlaps_t0" % i, patch("<Q", oa, 0))
    emit("must", "t%d_name_len_huge" % i, patch("<Q", s, 1 << 62))

# Alignment.
for (s, key, ta, t, va, e) in kvs:
    if key == "general.alignment":
        for v in (0, 3, 1 << 30):
            emit("must", "alignment_%d" % v, patch("<I", va, v))
print("wrote %d files to %s" % (len(os.listdir(out)), out))
