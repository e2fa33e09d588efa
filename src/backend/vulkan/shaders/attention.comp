#version 450
// attention.comp: causal grouped-query attention (attention.c's formulas),
// one workgroup per (query head h, token t): query head h reads kv head
// h / (Hq / Hkv); token t sees cache rows lo..pos[t] (lo = pos - W + 1
// with a sliding window of W rows, else 0). Scores s = (q . k) * scale;
// p = exp(s - max) * (1 / sum); with an f16 cache q and then p are rounded
// to f16 before they meet k and v, as ggml does. Three passes over the
// keys (max, sum, values), so no scratch is needed; D <= 512.
#include "common.glsl"
layout(local_size_x = 64) in;
shared float qs[512];
shared float ps[64];
shared float red[64];

float reduce(float v, bool is_max) {
  uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (t < s) red[t] = is_max ? max(red[t], red[t + s]) : red[t] + red[t + s];
    barrier();
  }
  float r = red[0];
  barrier();
  return r;
}

float score(Tensor k, uint hk, uint c, uint D, float scale) {
  uint ka = row_at(k, hk, c, 0u);
  float s = 0.0;
  if (k.dtype == DT_F16)
    for (uint i = 0u; i < D; i++) s = fma(qs[i], ld_f16(ka + 2u * i), s);
  else
    for (uint i = 0u; i < D; i++) s = fma(qs[i], ld_f32(ka + 4u * i), s);
  return s * scale;
}

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), q = tensor(1u), k = tensor(2u), v = tensor(3u), p = tensor(4u);
  uint Hq = d.ne1, T = d.ne2, g = group_id();
  if (g >= Hq * T) return;
  uint h = g % Hq, t = g / Hq, D = q.ne0, C = k.ne2, hk = h / (Hq / k.ne1), tid = gl_LocalInvocationID.x;
  int pos = ld_i32(p.off + 4u * t);
  if (pos < 0 || uint(pos) >= C) return; // check.comp stopped the list
  uint window = param_u(1u), hi = uint(pos);
  uint lo = window != 0u && hi >= window ? hi - window + 1u : 0u;
  float scale = param_f(0u);
  bool f16 = k.dtype == DT_F16;
  uint qa = row_at(q, h, t, 0u);
  for (uint i = tid; i < D; i += 64u) {
    float x = ld_f32(qa + 4u * i);
    qs[i] = f16 ? round_f16(x) : x;
  }
  barrier();
  float m = -1.0 / 0.0;
  for (uint c = lo + tid; c <= hi; c += 64u) m = max(m, score(k, hk, c, D, scale));
  float mx = reduce(m, true);
  float l = 0.0;
  for (uint c = lo + tid; c <= hi; c += 64u) l += exp(score(k, hk, c, D, scale) - mx);
  float inv = 1.0 / reduce(l, false);
  float acc[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  for (uint c0 = lo; c0 <= hi; c0 += 64u) {
    uint c = c0 + tid;
    float pr = 0.0;
    if (c <= hi) {
      pr = exp(score(k, hk, c, D, scale) - mx) * inv;
      if (f16) pr = round_f16(pr);
    }
    ps[tid] = pr;
    barrier();
    uint n = min(64u, hi - c0 + 1u);
    for (uint j = 0u; j < 8u; j++) {
      uint i = tid + 64u * j;
      if (i >= D) break;
      float a = acc[j];
      for (uint cc = 0u; cc < n; cc++) {
        uint va = row_at(v, hk, c0 + cc, 0u);
        float vv = f16 ? ld_f16(va + 2u * i) : ld_f32(va + 4u * i);
        precise float pv = ps[cc] * vv;
        a = a + pv;
      }
      acc[j] = a;
    }
    barrier();
  }
  uint ya = row_at(d, h, t, 0u);
  for (uint j = 0u; j < 8u; j++) {
    uint i = tid + 64u * j;
    if (i < D) st_f32(ya + 4u * i, acc[j]);
  }
}
