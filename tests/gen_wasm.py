#!/usr/bin/env python3
"""gen_wasm.py KIND OUT [N [M]] [nonce]: writes a hostile WebAssembly module to OUT.

Generated at test time so no big binary is committed. Every module exports
"_start" (function 0), so `samepage exec` would run it.

  funcs N        N functions of 9 bytes each ("i32.const 1; drop; nop"
                 padding): compilation cost per function, tiny body
  locals N M     N functions each declaring M i64 locals (wasmparser takes up
                 to 50000 per function) and reading the last one
  loop_start     a start function (the wasm `start` section, run during
                 instantiation) that loops forever
  fake_count     a function section declaring 4 billion functions in 0 bytes
                 (a count the bytes cannot hold)
  table_grow N   a funcref table grown by N elements (table.grow); traps
                 (unreachable) if the grow is refused (returns -1)
  two_memories   a module declaring two linear memories of one page each

"nonce" appends a custom section of random bytes, so Wasmtime's cache of
compiled modules has never seen the module.
"""
import os
import sys


def leb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def section(sid, payload):
    return bytes([sid]) + leb(len(payload)) + payload


def vec(items):
    return leb(len(items)) + b"".join(items)


HEADER = b"\0asm" + bytes([1, 0, 0, 0])
TYPE_VOID = section(1, vec([b"\x60\x00\x00"]))  # one type: [] -> []
EXPORT_START = section(7, vec([b"\x06_start\x00\x00"]))


def module(bodies):
    funcs = section(3, vec([b"\x00"] * len(bodies)))
    code = section(10, vec([leb(len(b)) + b for b in bodies]))
    return HEADER + TYPE_VOID + funcs + EXPORT_START + code


def sleb(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if (n == 0 and not b & 0x40) or (n == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def table_grow(n):
    table = section(4, vec([b"\x70\x00\x01"]))  # funcref, min 1, no max
    body = (b"\x00" + b"\xd0\x70" + b"\x41" + sleb(n) + b"\xfc\x0f\x00"  # ref.null func; i32.const n; table.grow 0
            + b"\x41\x7f\x46" + b"\x04\x40\x00\x0b" + b"\x0b")   # i32.const -1; i32.eq; if unreachable end; end
    funcs_ = section(3, vec([b"\x00"]))
    code = section(10, vec([leb(len(body)) + body]))
    return HEADER + TYPE_VOID + funcs_ + table + EXPORT_START + code


def two_memories():
    memories = section(5, vec([b"\x00\x01", b"\x00\x01"]))  # two memories, min 1 page, no max
    body = b"\x00\x0b"
    return HEADER + TYPE_VOID + section(3, vec([b"\x00"])) + memories + EXPORT_START + section(10, vec([leb(len(body)) + body]))


def funcs(n):
    body = b"\x00" + b"\x41\x01\x1a" + b"\x01" * 4 + b"\x0b"  # no locals; i32.const 1; drop; nop x4; end
    return module([body] * n)


def locals_(n, m):
    # one declaration of m i64 locals; local.get m-1; drop; end
    body = b"\x01" + leb(m) + b"\x7e" + b"\x20" + leb(m - 1) + b"\x1a" + b"\x0b"
    return module([body] * n)


def loop_start():
    body = b"\x00" + b"\x03\x40" + b"\x0c\x00" + b"\x0b" + b"\x0b"  # loop; br 0; end; end
    start = section(8, leb(0))
    funcs_sec = section(3, vec([b"\x00"]))
    code = section(10, vec([leb(len(body)) + body]))
    return HEADER + TYPE_VOID + funcs_sec + EXPORT_START + start + code


def fake_count():
    funcs_sec = bytes([3]) + leb(5) + leb(0xFFFFFFFF)
    return HEADER + TYPE_VOID + funcs_sec


def main():
    kind, out = sys.argv[1], sys.argv[2]
    nums = [int(a) for a in sys.argv[3:] if a != "nonce"]
    data = {"funcs": lambda: funcs(*nums), "locals": lambda: locals_(*nums),
            "loop_start": loop_start, "fake_count": fake_count, "table_grow": lambda: table_grow(*nums),
            "two_memories": two_memories}[kind]()
    if "nonce" in sys.argv[3:]:
        data += section(0, b"\x05nonce" + os.urandom(16))
    with open(out, "wb") as f:
        f.write(data)


if __name__ == "__main__":
    main()
