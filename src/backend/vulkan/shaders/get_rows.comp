#version 450
// get_rows.comp: dst[f32: K, M] row m = row src1[m] of src0[W: K, V],
// dequantized with the CPU's float operations (llm_ops.c, quant_blocks.h);
// one workgroup per row. check.comp ran first; an index out of range here
// (rewritten since) is skipped, never used as an address. The table src0
// is read through weight_base (wld_*: src0's slot base).
#include "common.glsl"
#include "quant.glsl"
layout(local_size_x = 64) in;

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), w = tensor(1u), idx = tensor(2u);
  uint r = group_id();
  if (r >= d.ne1) return;
  weight_base = w.base;
  int id = ld_i32(idx.base, idx.off + 4u * r);
  if (id < 0 || uint(id) >= w.ne1) return;
  uint wa = w.off + uint(id) * w.nb0, ya = d.off + r * d.nb0, k = d.ne0, t = gl_LocalInvocationID.x;
  uint dt = w.dtype;
  if (dt <= DT_BF16) {
    for (uint i = t; i < k; i += 64u) st_f32(d.base, ya + 4u * i, wld_float(dt, wa + i * float_size(dt)));
    return;
  }
  uint S = block_elems(dt) / 32u, bb = block_bytes(dt), mk = min_kind(dt);
  for (uint b = t; b < k / 32u; b += 64u) {
    Slice s;
    unpack_slice(dt, wa + (b / S) * bb, b % S, s);
    for (uint e = 0u; e < 32u; e++) {
      precise float v;
      if (dt == DT_Q8_0) v = s.d * float(s.q[e]);
      else if (dt == DT_Q4_0) v = s.d * float(s.q[e] + 8) + (-8.0 * s.d);
      else if (dt == DT_Q4_1) v = s.d * float(s.q[e]) + s.m;
      else {
        uint hh = e / 16u;
        precise float dl = S == 1u ? s.d : s.d * float(s.sc[hh]);
        precise float ml = mk == MIN_SUB ? s.m * float(s.mn[hh]) : 0.0;
        v = dl * float(s.q[e]);
        if (mk == MIN_ADD) v = v + s.m;
        else if (mk == MIN_SUB) v = v - ml;
      }
      st_f32(d.base, ya + 4u * (32u * b + e), v);
    }
  }
}
