#version 450
// elementwise.comp: add, mul, scale, swiglu, geglu, softcap and copy, one
// element per invocation, with the CPU's formulas (elementwise.c,
// llm_ops.c, activations.c). Rows pair up over dims 1..3; add and mul
// broadcast src1's only row.
#include "common.glsl"
layout(local_size_x = 256) in;

float gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.79788456080286535587989211986876, coef_a = 0.044715;
  return 0.5 * x * (1.0 + tanh(sqrt_2_over_pi * x * (1.0 + coef_a * x * x)));
}

void main() {
  if (stopped()) return;
  uint op = cmd_op();
  Tensor d = tensor(0u), a = tensor(1u), b = tensor(2u);
  uint id = group_id() * 256u + gl_LocalInvocationID.x;
  if (id >= rows(d) * d.ne0) return;
  uint r = id / d.ne0, i = id % d.ne0;
  if (op == OP_COPY) {
    float v = ld_float(a.dtype, a.base, row_flat(a, r) + i * float_size(a.dtype));
    st_float(d.dtype, d.base, row_flat(d, r) + i * float_size(d.dtype), v);
    return;
  }
  float x = ld_f32(a.base, row_flat(a, r) + 4u * i);
  uint da = row_flat(d, r) + 4u * i;
  precise float y;
  if (op == OP_SCALE) {
    y = x * param_f(0u);
  } else if (op == OP_SOFTCAP) {
    float cap = param_f(0u);
    float inv = 1.0 / cap;
    y = tanh(x * inv) * cap;
  } else {
    bool broadcast = (op == OP_ADD || op == OP_MUL) && b.ne1 == 1u && b.ne2 == 1u && b.ne3 == 1u;
    float z = ld_f32(b.base, row_flat(b, broadcast ? 0u : r) + 4u * i);
    if (op == OP_ADD) y = x + z;
    else if (op == OP_MUL) y = x * z;
    else if (op == OP_SWIGLU) {
      precise float den = 1.0 + exp_f(-x);
      y = x / den * z;
    }
    else { // GEGLU: ggml's f16 table of gelu values (activations.c)
      if (x <= -10.0) y = 0.0;
      else if (x >= 10.0) y = x * z;
      else y = round_f16(gelu_tanh(round_f16(x))) * z;
    }
  }
  st_f32(d.base, da, y);
}
