#version 450
// topk.comp: the K best indices of each row, largest first, one workgroup
// per row, in the order of core/topk_rank.h: a value's key (monotonic
// bits, -0 as +0, NaN lowest), then the smaller index. Pass k finds the
// best rank below pass k - 1's (ranks are unique), so K passes over the row.
#include "common.glsl"
layout(local_size_x = 256) in;
shared uint shi[256];
shared uint slo[256];

uint topk_key(float x) {
  if (isnan(x)) return 0u;
  if (x == 0.0) x = 0.0;
  uint u = floatBitsToUint(x);
  return (u & 0x80000000u) != 0u ? ~u : u | 0x80000000u;
}

bool less(uint ah, uint al, uint bh, uint bl) { return ah < bh || (ah == bh && al < bl); }

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), a = tensor(1u);
  uint r = group_id();
  if (r >= a.ne1) return;
  uint t = gl_LocalInvocationID.x, xa = row_flat(a, r), ya = row_flat(d, r), n = a.ne0;
  uint ph = 0xffffffffu, pl = 0xffffffffu; // the previous pass's rank
  for (uint k = 0u; k < d.ne0; k++) {
    uint bh = 0u, bl = 0u;
    bool found = false;
    for (uint i = t; i < n; i += 256u) {
      uint h = topk_key(ld_f32(a.base, xa + 4u * i)), l = ~i;
      if (less(h, l, ph, pl) && (!found || less(bh, bl, h, l))) bh = h, bl = l, found = true;
    }
    shi[t] = found ? bh : 0u, slo[t] = found ? bl : 0u;
    barrier();
    for (uint s = 128u; s > 0u; s >>= 1) {
      if (t < s && less(shi[t], slo[t], shi[t + s], slo[t + s])) shi[t] = shi[t + s], slo[t] = slo[t + s];
      barrier();
    }
    ph = shi[0], pl = slo[0];
    if (t == 0u) st_i32(d.base, ya + 4u * k, int(~pl));
    barrier();
  }
}
