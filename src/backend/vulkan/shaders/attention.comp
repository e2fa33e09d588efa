#version 450
// attention.comp: causal grouped-query attention with the CPU's numerics
// (src/backend/cpu/attention.c), one workgroup per (query head h, token
// t): query head h reads kv head h / (Hq / Hkv); token t sees cache rows
// lo..pos[t] (lo = pos - W + 1 with a sliding window of W rows, else 0).
//
// As the CPU does: keys are cut into chunks of 128 from lo; a score is
// the table dot (8 fused lanes, elements i = l mod 8, reduced in a fixed
// tree) times scale; chunk c has its max m_c, e = exp(s - m_c) and
// l_c = sum(e) in double; with M the max of the m_c and
// S = sum_c exp(m_c - M) * l_c (double), p = e * (exp(m_c - M) * (float)(1 / S));
// with an f16 cache q and then p are rounded to f16; a chunk's p.V is
// acc = acc + p * v in key order, and the chunks' sums are added in
// chunk order. exp is the CPU's attn_exp (in double, nearly correctly
// rounded) where the device has 64-bit floats; built with SP_NO_FLOAT64
// (vulkan.cmake) it is the device's exp. Three sweeps over the keys (the
// max, the sums, the values) recompute the scores, so no scratch is needed.
#include "common.glsl"
layout(local_size_x = 64) in;
#define CHUNK 128u
shared float qs[512];
shared float ps[CHUNK]; // a chunk's scores, then e, then p
shared float red[64];
shared float chunk_max;

// attention.c's attn_exp (common.glsl: exp_f, in double where the device
// has 64-bit floats)
float attn_exp(float x) { return exp_f(x); }

float reduce_max(float v) {
  uint t = gl_LocalInvocationID.x;
  red[t] = v;
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (t < s) red[t] = max(red[t], red[t + s]);
    barrier();
  }
  float r = red[0];
  barrier();
  return r;
}

// The table dot of q (shared) and a k row, times scale.
float score(Tensor k, uint hk, uint c, uint D, float scale) {
  uint ka = row_at(k, hk, c, 0u);
  float lanes[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  for (uint i = 0u; i < D; i++) {
    float kv = k.dtype == DT_F16 ? ld_f16(k.base, ka + 2u * i) : ld_f32(k.base, ka + 4u * i);
    lanes[i & 7u] = fmaf(kv, qs[i], lanes[i & 7u]);
  }
  precise float sum = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
  precise float s = sum * scale;
  return s;
}

// Chunk [c0, c0 + n): its scores into ps, and its max into chunk_max.
void chunk_scores(Tensor k, uint hk, uint c0, uint n, uint D, float scale) {
  uint t = gl_LocalInvocationID.x;
  float m = -1.0 / 0.0;
  for (uint c = t; c < n; c += 64u) {
    ps[c] = score(k, hk, c0 + c, D, scale);
    m = max(m, ps[c]);
  }
  m = reduce_max(m); // barriers: ps is complete
  if (t == 0u) chunk_max = m;
  barrier();
}

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), q = tensor(1u), k = tensor(2u), v = tensor(3u), p = tensor(4u);
  uint Hq = d.ne1, T = d.ne2, g = group_id();
  if (g >= Hq * T) return;
  uint h = g % Hq, t = g / Hq, D = q.ne0, C = k.ne2, hk = h / (Hq / k.ne1), tid = gl_LocalInvocationID.x;
  int pos = ld_i32(p.base, p.off + 4u * t);
  if (pos < 0 || uint(pos) >= C) return; // check.comp stopped the list
  uint window = param_u(1u), hi = uint(pos);
  uint lo = window != 0u && hi >= window ? hi - window + 1u : 0u;
  float scale = param_f(0u);
  bool f16 = k.dtype == DT_F16;
  uint qa = row_at(q, h, t, 0u);
  for (uint i = tid; i < D; i += 64u) {
    float x = ld_f32(q.base, qa + 4u * i);
    qs[i] = f16 ? round_f16(x) : x;
  }
  barrier();
  // sweep 1: M, the largest score
  float M = -1.0 / 0.0;
  for (uint c0 = lo; c0 <= hi; c0 += CHUNK) {
    chunk_scores(k, hk, c0, min(CHUNK, hi - c0 + 1u), D, scale);
    M = max(M, chunk_max);
  }
  // sweep 2: S = sum over chunks of exp(m_c - M) * l_c (thread 0 sums in
  // the CPU's order: eight lanes, a fixed tree)
  ACC S = 0.0;
  for (uint c0 = lo; c0 <= hi; c0 += CHUNK) {
    uint n = min(CHUNK, hi - c0 + 1u);
    chunk_scores(k, hk, c0, n, D, scale);
    float m = chunk_max;
    for (uint c = tid; c < n; c += 64u) ps[c] = attn_exp(ps[c] - m);
    barrier();
    if (tid == 0u) {
      ACC l8[8] = ACC[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
      for (uint c = 0u; c < n; c++) l8[c & 7u] += ACC(ps[c]);
      precise ACC l = ((l8[0] + l8[4]) + (l8[2] + l8[6])) + ((l8[1] + l8[5]) + (l8[3] + l8[7]));
      precise ACC w = ACC(attn_exp(m - M)) * l;
      S = S + w;
    }
    barrier();
  }
  if (tid == 0u) red[0] = float(ACC(1.0) / S);
  barrier();
  float inv = red[0];
  barrier();
  // sweep 3: the probabilities meet the values, chunk by chunk
  float total[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  for (uint c0 = lo; c0 <= hi; c0 += CHUNK) {
    uint n = min(CHUNK, hi - c0 + 1u);
    chunk_scores(k, hk, c0, n, D, scale);
    float m = chunk_max;
    precise float factor = attn_exp(m - M) * inv;
    for (uint c = tid; c < n; c += 64u) {
      precise float pr = attn_exp(ps[c] - m) * factor;
      ps[c] = f16 ? round_f16(pr) : pr;
    }
    barrier();
    for (uint j = 0u; j < 8u; j++) {
      uint i = tid + 64u * j;
      if (i >= D) break;
      float a = 0.0;
      for (uint cc = 0u; cc < n; cc++) {
        uint va = row_at(v, hk, c0 + cc, 0u);
        float vv = f16 ? ld_f16(v.base, va + 2u * i) : ld_f32(v.base, va + 4u * i);
        precise float pv = ps[cc] * vv;
        a = a + pv;
      }
      precise float sum = c0 == lo ? a : total[j] + a;
      total[j] = sum;
    }
    barrier();
  }
  uint ya = row_at(d, h, t, 0u);
  for (uint j = 0u; j < 8u; j++) {
    uint i = tid + 64u * j;
    if (i < D) st_f32(d.base, ya + 4u * i, total[j]);
  }
}
