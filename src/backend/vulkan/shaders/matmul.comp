#version 450
// matmul.comp: dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T, one
// workgroup per output dst[m][n]; the weight dtype W is specialization
// constant 0 (one pipeline per dtype, vk_pipelines.c).
//
// Float weights (f32, f16, bf16): a plain dot. Quantized weights follow
// the CPU's numerics contract (src/backend/cpu/kernels.h, points 3 and 4):
// each 32-element block of the activation row is quantized to int8
// (d = amax / 127 rounded to f16, q = round-half-even(x * 127 / amax)),
// the block's exact integer partials sum(q_w * q_x) per half (times the
// weight's sub-block scale) meet the scale d_w * d_x in float, and mins
// enter as the CPU's do. Only the order of the float sums differs.
#include "common.glsl"
#include "quant.glsl"
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint WDT = 1u;
// 1: a workgroup per output, reduced in shared memory (GPUs); 0: an
// invocation per output (CPU drivers such as lavapipe, where a workgroup
// and its barriers cost more than the dot itself)
layout(constant_id = 1) const uint SPLIT = 1u;
shared float red[64];

// The activation block at byte address xa, quantized (kernels.h point 4).
void quantize_x(uint xa, out int xq[32], out float dx, out float sx) {
  float amax = 0.0;
  bool has_nan = false;
  float xs[32];
  for (uint e = 0u; e < 32u; e++) {
    xs[e] = ld_f32(xa + 4u * e);
    if (isnan(xs[e])) has_nan = true;
    else amax = max(amax, abs(xs[e]));
  }
  float id = amax > 0.0 ? 127.0 / amax : 0.0;
  int sum = 0;
  for (uint e = 0u; e < 32u; e++) {
    precise float v = xs[e] * id;
    v = isnan(v) ? 0.0 : clamp(roundEven(v), -127.0, 127.0);
    xq[e] = int(v);
    sum += xq[e];
  }
  precise float d = has_nan ? uintBitsToFloat(0x7fc00000u) : amax / 127.0;
  dx = round_f16(d);
  precise float ds = d * float(sum);
  sx = round_f16(ds);
}

// dot(weight row at wa, activation row at xa) over the 32-element blocks
// first, first + step, ... (float weights: elements).
float row_dot(uint wa, uint xa, uint K, uint first, uint step) {
  float acc = 0.0;
  if (WDT <= DT_BF16) {
    uint fs = float_size(WDT);
    for (uint k = first; k < K; k += step) acc = fma(ld_float(WDT, wa + k * fs), ld_f32(xa + 4u * k), acc);
    return acc;
  }
  uint S = block_elems(WDT) / 32u, bb = block_bytes(WDT), mk = min_kind(WDT);
  float lanes = 0.0, mins = 0.0, madd = 0.0;
  for (uint b = first; b < K / 32u; b += step) {
    Slice s;
    unpack_slice(WDT, wa + (b / S) * bb, b % S, s);
    int xq[32];
    float dx, sx;
    quantize_x(xa + 128u * b, xq, dx, sx);
    int p0 = 0, p1 = 0, x0 = 0, x1 = 0;
    for (uint e = 0u; e < 16u; e++) p0 += s.q[e] * xq[e], x0 += xq[e];
    for (uint e = 16u; e < 32u; e++) p1 += s.q[e] * xq[e], x1 += xq[e];
    precise float sc = s.d * dx;
    lanes = fma(sc, float(s.sc[0] * p0 + s.sc[1] * p1), lanes);
    if (mk == MIN_SUB) {
      precise float sm = s.m * dx;
      mins = fma(sm, float(s.mn[0] * x0 + s.mn[1] * x1), mins);
    } else if (mk == MIN_ADD) {
      madd = fma(s.m, sx, madd);
    }
  }
  return lanes - mins + madd;
}

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), w = tensor(1u), x = tensor(2u);
  uint N = d.ne0, M = d.ne1, K = w.ne0, t = gl_LocalInvocationID.x, g = group_id();
  if (SPLIT == 0u) { // an invocation per output: 64 outputs of one row m per workgroup
    uint tiles = (N + 63u) / 64u;
    if (g >= tiles * M) return;
    uint n = g % tiles * 64u + t, m = g / tiles;
    if (n >= N) return;
    float acc = row_dot(w.off + n * w.nb0, x.off + m * x.nb0, K, 0u, 1u);
    st_f32(d.off + m * d.nb0 + 4u * n, acc);
    return;
  }
  if (g >= N * M) return; // a workgroup per output, its invocations over the blocks
  uint n = g % N, m = g / N;
  red[t] = row_dot(w.off + n * w.nb0, x.off + m * x.nb0, K, t, 64u);
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (t < s) red[t] += red[t + s];
    barrier();
  }
  if (t == 0u) st_f32(d.off + m * d.nb0 + 4u * n, red[0]);
}
