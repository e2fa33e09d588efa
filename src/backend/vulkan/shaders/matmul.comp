#version 450
// matmul.comp: dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T, one
// workgroup per output dst[m][n]; the weight dtype W is specialization
// constant 0 (one pipeline per dtype, vk_pipelines.c). The weight src0 is
// read through weight_base (wld_*: src0's slot base).
//
// Float weights (f32, f16, bf16): a plain dot. Quantized weights follow
// the CPU's numerics contract (src/backend/cpu/kernels.h, points 3 and 4):
// each 32-element block of the activation row is quantized to int8 once
// per command (quantize.comp, into the binding's scratch),
// the block's exact integer partials sum(q_w * q_x) per half (times the
// weight's sub-block scale) meet the scale d_w * d_x in float, and mins
// enter as the CPU's do. With SPLIT 0 the float operations are the CPU's
// too (row_dot_exact); with SPLIT 1 only their order differs.
#include "common.glsl"
#include "quant.glsl"
layout(local_size_x = 64) in;
layout(constant_id = 0) const uint WDT = 1u;
// 1: a workgroup per output, reduced in shared memory (GPUs; only the
// order of float sums differs from the CPU's); 0: an invocation per output
// (CPU drivers such as lavapipe, where a workgroup and its barriers cost
// more than the dot itself), the CPU's bits exactly (row_dot_exact)
layout(constant_id = 1) const uint SPLIT = 1u;
shared float red[64];

// dot(weight row at wa, activation row at xa) over the 32-element blocks
// first, first + step, ... (float weights: elements). Quantized weights
// read the row's activation blocks from scratch, from block xb on
// (quantize.comp: 12 words a block).
float row_dot(uint wa, uint64_t xbase, uint xa, uint xb, uint K, uint first, uint step) {
  float acc = 0.0;
  if (WDT <= DT_BF16) {
    uint fs = float_size(WDT);
    for (uint k = first; k < K; k += step) acc = fma(wld_float(WDT, wa + k * fs), ld_f32(xbase, xa + 4u * k), acc);
    return acc;
  }
  uint S = block_elems(WDT) / 32u, bb = block_bytes(WDT), mk = min_kind(WDT);
  float lanes = 0.0, mins = 0.0, madd = 0.0;
  for (uint b = first; b < K / 32u; b += step) {
    Slice s;
    unpack_slice(WDT, wa + (b / S) * bb, b % S, s);
    uint xw = 12u * (xb + b);
    float dx = uintBitsToFloat(sc_ld(xw)), sx = uintBitsToFloat(sc_ld(xw + 1u));
    int x0 = int(sc_ld(xw + 2u)), x1 = int(sc_ld(xw + 3u));
    int p0 = 0, p1 = 0;
    for (uint j = 0u; j < 4u; j++) {
      int lo = int(sc_ld(xw + 4u + j)), hi = int(sc_ld(xw + 8u + j));
      for (uint i = 0u; i < 4u; i++) {
        p0 += s.q[4u * j + i] * bitfieldExtract(lo, int(8u * i), 8);
        p1 += s.q[16u + 4u * j + i] * bitfieldExtract(hi, int(8u * i), 8);
      }
    }
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

float lanes8_sum(float a[8]) {
  precise float r = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
  return r;
}

// The CPU's dot bit for bit (kernels.h, points 2 and 3): eight lanes over
// the row, fused multiply-adds in the contract's places, the fixed tree.
// One invocation computes the whole row (SPLIT 0).
float row_dot_exact(uint wa, uint xb, uint64_t xbase, uint xa, uint K) {
  float lanes[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  if (WDT <= DT_BF16) {
    uint fs = float_size(WDT);
    for (uint k = 0u; k < K; k++) lanes[k & 7u] = fmaf(wld_float(WDT, wa + k * fs), ld_f32(xbase, xa + 4u * k), lanes[k & 7u]);
    return lanes8_sum(lanes);
  }
  float min_lanes[8] = float[8](0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
  float madd = 0.0;
  uint S = block_elems(WDT) / 32u, bb = block_bytes(WDT), mk = min_kind(WDT);
  for (uint b = 0u; b < K / 32u; b++) {
    Slice s;
    unpack_slice(WDT, wa + (b / S) * bb, b % S, s);
    uint xw = 12u * (xb + b);
    float dx = uintBitsToFloat(sc_ld(xw)), sx = uintBitsToFloat(sc_ld(xw + 1u));
    precise float sd = s.d * dx;
    precise float sm = s.m * dx;
    for (uint l = 0u; l < 8u; l++) {
      int word = int(sc_ld(xw + 4u + l));
      int p = 0, xs = 0;
      for (uint i = 0u; i < 4u; i++) {
        int xq = bitfieldExtract(word, int(8u * i), 8);
        p += s.q[4u * l + i] * xq, xs += xq;
      }
      lanes[l] = fmaf(sd, float(s.sc[l / 4u] * p), lanes[l]);
      if (mk == MIN_SUB) min_lanes[l] = fmaf(sm, float(s.mn[l / 4u] * xs), min_lanes[l]);
    }
    if (mk == MIN_ADD) madd = fmaf(s.m, sx, madd);
  }
  precise float sum = lanes8_sum(lanes);
  if (mk == MIN_ADD) sum = sum + madd;
  else if (mk == MIN_SUB) sum = sum - lanes8_sum(min_lanes);
  return sum;
}

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), w = tensor(1u), x = tensor(2u);
  weight_base = w.base;
  uint N = d.ne0, M = d.ne1, K = w.ne0, t = gl_LocalInvocationID.x, g = group_id();
  if (SPLIT == 0u) { // an invocation per output: 64 outputs of one row m per workgroup
    uint tiles = (N + 63u) / 64u;
    if (g >= tiles * M) return;
    uint n = g % tiles * 64u + t, m = g / tiles;
    if (n >= N) return;
    float acc = row_dot_exact(w.off + n * w.nb0, m * (K / 32u), x.base, x.off + m * x.nb0, K);
    st_f32(d.base, d.off + m * d.nb0 + 4u * n, acc);
    return;
  }
  if (g >= N * M) return; // a workgroup per output, its invocations over the blocks
  uint n = g % N, m = g / N;
  red[t] = row_dot(w.off + n * w.nb0, x.base, x.off + m * x.nb0, m * (K / 32u), K, t, 64u);
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (t < s) red[t] += red[t + s];
    barrier();
  }
  if (t == 0u) st_f32(d.base, d.off + m * d.nb0 + 4u * n, red[0]);
}
