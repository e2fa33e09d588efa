#version 450
// set_rows.comp: dst[X: K, R] row src1[m] = src0[f32: K, M] row m, as X in
// {f32, f16, bf16}; one workgroup per source row. check.comp ran first; an
// index out of range here (rewritten since) is skipped.
#include "common.glsl"
layout(local_size_x = 64) in;

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), x = tensor(1u), idx = tensor(2u);
  uint r = group_id();
  if (r >= x.ne1) return;
  int id = ld_i32(idx.base, idx.off + 4u * r);
  if (id < 0 || uint(id) >= d.ne1) return;
  uint xa = x.off + r * x.nb0, ya = d.off + uint(id) * d.nb0;
  for (uint i = gl_LocalInvocationID.x; i < d.ne0; i += 64u)
    st_float(d.dtype, d.base, ya + i * float_size(d.dtype), ld_f32(x.base, xa + 4u * i));
}
