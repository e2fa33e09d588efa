#version 450
// rows.comp: rmsnorm and softmax, one workgroup per row (llm_ops.c).
//  rmsnorm: y = x * (1 / sqrt(mean(x^2) + eps)) * w
//  softmax: y = exp(x * scale - max) / sum
#include "common.glsl"
layout(local_size_x = 256) in;
shared float red[256];
shared ACC red_acc[256];

// Sums in ACC (double where the device has it, as the CPU sums these).
ACC reduce_sum(ACC v) {
  uint t = gl_LocalInvocationID.x;
  red_acc[t] = v;
  barrier();
  for (uint s = 128u; s > 0u; s >>= 1) {
    if (t < s) red_acc[t] += red_acc[t + s];
    barrier();
  }
  ACC r = red_acc[0];
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
    ACC s = 0.0;
    for (uint i = t; i < n; i += 256u) {
      float x = ld_f32(a.base, xa + 4u * i);
      precise float x2 = x * x;
      s += ACC(x2);
    }
    ACC sum = reduce_sum(s);
    precise float mean = float(sum / ACC(n)) + param_f(0u);
    // 1.0f / sqrtf(mean): through ACC, whose rounding to float is the
    // float operation's (no driver shortcut for sqrt or division)
    precise ACC root = ACC(float(sqrt(ACC(mean))));
    float scale = float(ACC(1.0) / root);
    for (uint i = t; i < n; i += 256u) {
      precise float y = ld_f32(a.base, xa + 4u * i) * scale * ld_f32(w.base, w.off + 4u * i);
      st_f32(d.base, ya + 4u * i, y);
    }
    return;
  }
  float sc = param_f(0u);
  float m = -1.0 / 0.0;
  for (uint i = t; i < n; i += 256u) m = max(m, ld_f32(a.base, xa + 4u * i) * sc);
  float mx = reduce_max(m);
  ACC s = 0.0;
  for (uint i = t; i < n; i += 256u) {
    precise float y = ld_f32(a.base, xa + 4u * i) * sc;
    s += ACC(exp_f(y - mx));
  }
  float inv = float(ACC(1.0) / reduce_sum(s));
  barrier();
  for (uint i = t; i < n; i += 256u) {
    precise float y = ld_f32(a.base, xa + 4u * i) * sc;
    precise float e = exp_f(y - mx) * inv;
    st_f32(d.base, ya + 4u * i, e);
  }
}
