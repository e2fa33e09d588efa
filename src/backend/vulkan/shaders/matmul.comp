#version 450
// matmul.comp: dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T, one
// workgroup per output dst[m][n]; the weight dtype W is specialization
// constant 0 (one pipeline per dtype, vk_pipelines.c).
//
// Float weights (f32, f16, bf16): a plain dot. Quantized weights follow
// the CPU's numerics contract (src/backend/cpu/kernels.h, points 3 and 4):
// each 32-element block of the activation row is quantized to int8 once
// per command (quantize.comp, into the binding's scratch),
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

// dot(weight row at wa, activation row at xa) over the 32-element blocks
// first, first + step, ... (float weights: elements). Quantized weights
// read the row's activation blocks from scratch, from block xb on
// (quantize.comp: 12 words a block).
float row_dot(uint wa, uint xa, uint xb, uint K, uint first, uint step) {
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

void main() {
  if (stopped()) return;
  Tensor d = tensor(0u), w = tensor(1u), x = tensor(2u);
  uint N = d.ne0, M = d.ne1, K = w.ne0, t = gl_LocalInvocationID.x, g = group_id();
  if (SPLIT == 0u) { // an invocation per output: 64 outputs of one row m per workgroup
    uint tiles = (N + 63u) / 64u;
    if (g >= tiles * M) return;
    uint n = g % tiles * 64u + t, m = g / tiles;
    if (n >= N) return;
    float acc = row_dot(w.off + n * w.nb0, x.off + m * x.nb0, m * (K / 32u), K, 0u, 1u);
    st_f32(d.off + m * d.nb0 + 4u * n, acc);
    return;
  }
  if (g >= N * M) return; // a workgroup per output, its invocations over the blocks
  uint n = g % N, m = g / N;
  red[t] = row_dot(w.off + n * w.nb0, x.off + m * x.nb0, m * (K / 32u), K, t, 64u);
  barrier();
  for (uint s = 32u; s > 0u; s >>= 1) {
    if (t < s) red[t] += red[t + s];
    barrier();
  }
  if (t == 0u) st_f32(d.off + m * d.nb0 + 4u * n, red[0]);
}
