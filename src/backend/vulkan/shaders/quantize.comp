#version 450
// quantize.comp: a matmul's activation rows src1[f32: K, M] as int8
// blocks of 32 in the binding's scratch, once per command, before
// matmul.comp reads them (the CPU's contract, src/backend/cpu/kernels.h
// point 4): amax = max |x| over the non-NaN elements, d = amax / 127
// rounded to f16 (NaN if any x is NaN), q = round-half-even(x * 127 /
// amax) clamped to [-127, 127] (0 where NaN), s = d * sum(q) rounded to
// f16. One invocation per block; block i (row m, block b: i = m * K / 32
// + b) is 12 words: d, s, sum(q[0..15]), sum(q[16..31]), then q packed
// four to a word.
#include "common.glsl"
layout(local_size_x = 64) in;

void main() {
  if (stopped()) return;
  Tensor x = tensor(2u);
  uint nb = x.ne0 / 32u, i = group_id() * 64u + gl_LocalInvocationID.x;
  if (i >= nb * x.ne1) return;
  uint m = i / nb, b = i % nb, xa = x.off + m * x.nb0 + 128u * b;
  float xs[32];
  float amax = 0.0;
  bool has_nan = false;
  for (uint e = 0u; e < 32u; e++) {
    xs[e] = ld_f32(x.base, xa + 4u * e);
    if (isnan(xs[e])) has_nan = true;
    else amax = max(amax, abs(xs[e]));
  }
  float id = amax > 0.0 ? 127.0 / amax : 0.0;
  int sum0 = 0, sum1 = 0;
  uint words[8] = uint[8](0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u);
  for (uint e = 0u; e < 32u; e++) {
    precise float v = xs[e] * id;
    v = isnan(v) ? 0.0 : clamp(roundEven(v), -127.0, 127.0);
    int q = int(v);
    if (e < 16u) sum0 += q;
    else sum1 += q;
    words[e / 4u] |= (uint(q) & 255u) << (8u * (e % 4u));
  }
  precise float d = has_nan ? uintBitsToFloat(0x7fc00000u) : amax / 127.0;
  precise float ds = d * float(sum0 + sum1);
  uint w = 12u * i;
  sc_st(w, floatBitsToUint(round_f16(d)));
  sc_st(w + 1u, floatBitsToUint(round_f16(ds)));
  sc_st(w + 2u, uint(sum0));
  sc_st(w + 3u, uint(sum1));
  for (uint j = 0u; j < 8u; j++) sc_st(w + 4u + j, words[j]);
}
