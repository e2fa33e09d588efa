#version 450
// rows.comp: rmsnorm and softmax, one workgroup per row (llm_ops.c).
//  rmsnorm: y = x * (1 / sqrt(mean(x^2) + eps)) * w
//  softmax: y = exp(x * scale - max) / sum
#include "common.glsl"
layout(local_size_x = 256) in;
shared float red[256];

float reduce_sum(float v) {
  uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier();
  for (uint s = 128u; s > 0u; s >>= 1) {
    if (t < s) red[t] += red[t + s];
    barrier();
  }
  float r = red[0];
  barrier();
  return r;
}

float reduce_max(float v) {
  uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier();
  for (uint s = 128u; s > 0u; s >>= 1) {
    if (t < s) red[t] = max(red[t], red[t + s]);
    barrier();
  }
  float r = red[0];
  barrier();
  return r;
}

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), a = tensor(1u), w = tensor(2u);
  uint r = group_id();
  if (r >= rows(d)) return;
  uint n = d.ne0, t = gl_LocalInvocationID.x;
  uint xa = row_flat(a, r), ya = row_flat(d, r);
  if (cmd_op() == OP_RMSNORM) {
    float s = 0.0;
    for (uint i = t; i < n; i += 256u) {
      float x = ld_f32(xa + 4u * i);
      s += x * x;
    }
    float sum = reduce_sum(s);
    float scale = 1.0 / sqrt(sum / float(n) + param_f(0u));
    for (uint i = t; i < n; i += 256u) {
      precise float y = ld_f32(xa + 4u * i) * scale * ld_f32(w.off + 4u * i);
      st_f32(ya + 4u * i, y);
    }
    return;
  }
  float sc = param_f(0u);
  float m = -1.0 / 0.0;
  for (uint i = t; i < n; i += 256u) m = max(m, ld_f32(xa + 4u * i) * sc);
  float mx = reduce_max(m);
  float s = 0.0;
  for (uint i = t; i < n; i += 256u) s += exp(ld_f32(xa + 4u * i) * sc - mx);
  float inv = 1.0 / reduce_sum(s);
  barrier();
  for (uint i = t; i < n; i += 256u) {
    float e = exp(ld_f32(xa + 4u * i) * sc - mx);
    st_f32(ya + 4u * i, e * inv);
  }
}
