#version 450
// rope.comp: rotary position embedding, one workgroup per (head, token)
// row of [D, H, T] (llm_ops.c). The angle of pair i is pos * ts^i by
// repeated float multiplication, as ggml does; ts = base^(-2 / n_rot)
// comes from the host (pc.aux, powf's bits) so it equals the CPU's.
#include "common.glsl"
layout(local_size_x = 64) in;

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), x = tensor(1u), p = tensor(2u), f = tensor(3u);
  uint r = group_id();
  if (r >= d.ne1 * d.ne2) return;
  uint h = r % d.ne1, t = r / d.ne1;
  uint xa = row_at(x, h, t, 0u), ya = row_at(d, h, t, 0u);
  int pos = ld_i32(p.base, p.off + 4u * t);
  uint n_rot = param_u(0u), mode = param_u(2u), half_rot = n_rot / 2u;
  float freq_scale = param_f(3u), ts = uintBitsToFloat(pc.aux);
  uint tid = gl_LocalInvocationID.x;
  // the tail first: in place it is untouched, so only a copy moves it
  if (xa != ya)
    for (uint i = n_rot + tid; i < d.ne0; i += 64u) st_f32(d.base, ya + 4u * i, ld_f32(x.base, xa + 4u * i));
  for (uint i = tid; i < half_rot; i += 64u) {
    precise float theta = float(pos);
    for (uint j = 0u; j < i; j++) theta = theta * ts;
    precise float angle = freq_scale * theta;
    if (f.dtype != 0u) angle = angle / ld_f32(f.base, f.off + 4u * i);
    float c = cos_f(angle), s = sin_f(angle);
    uint i0 = mode == 2u ? i : 2u * i, i1 = mode == 2u ? i + half_rot : 2u * i + 1u;
    float x0 = ld_f32(x.base, xa + 4u * i0), x1 = ld_f32(x.base, xa + 4u * i1);
    precise float y0 = x0 * c - x1 * s;
    precise float y1 = x0 * s + x1 * c;
    st_f32(d.base, ya + 4u * i0, y0);
    st_f32(d.base, ya + 4u * i1, y1);
  }
}
