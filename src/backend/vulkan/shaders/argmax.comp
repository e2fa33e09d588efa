#version 450
// argmax.comp: the index of the largest value of each row, one workgroup
// per row: the first of equal values; NaN never wins (a row of NaN gives 0).
#include "common.glsl"
layout(local_size_x = 256) in;
shared float sv[256];
shared uint si[256];

// Whether (v, i) beats (bv, bi).
bool beats(float v, uint i, float bv, uint bi) {
  if (isnan(v)) return false;
  if (isnan(bv)) return true;
  return v > bv || (v == bv && i < bi);
}

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), a = tensor(1u);
  uint r = group_id();
  if (r >= a.ne1) return;
  uint t = gl_LocalInvocationID.x, xa = row_flat(a, r);
  float bv = uintBitsToFloat(0x7fc00000u);
  uint bi = 0xffffffffu;
  for (uint i = t; i < a.ne0; i += 256u) {
    float v = ld_f32(a.base, xa + 4u * i);
    if (beats(v, i, bv, bi)) bv = v, bi = i;
  }
  sv[t] = bv, si[t] = bi;
  barrier();
  for (uint s = 128u; s > 0u; s >>= 1) {
    if (t < s && beats(sv[t + s], si[t + s], sv[t], si[t])) sv[t] = sv[t + s], si[t] = si[t + s];
    barrier();
  }
  if (t == 0u) st_i32(d.base, d.off + 4u * r, isnan(sv[0]) ? 0 : int(si[0]));
}
