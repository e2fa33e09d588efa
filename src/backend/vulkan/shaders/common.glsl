// common.glsl: what every shader of the Vulkan backend shares.
//
// Guest memory is reached through device addresses: every tensor address
// is a guest offset (under 4 GiB, so 32-bit indices), added to its tensor
// slot's base, pc.slot_base[slot] (slot 0 dst, 1..4 src[0..3]): the device
// address of guest address 0 in whatever memory holds that tensor. That is
// the imported guest buffer, or where the tensor lies wholly inside a
// device-local range with a mirror or a frozen range with a device copy,
// the mirror's (copy's) address minus the range's guest start, modulo 2^64
// (vk_residency.c). Loads and stores take the base (Tensor.base) and form
// the address as a 64-bit integer sum, which wraps as the host's did. The command is the validated
// sp_cmd itself (include/samepage_abi.h), copied to a buffer at pc.cmd:
// op, flags, dst, src[4] (10 words each), param[8] (words 52..59).
// pc.status is the list's status word (vk_backend.h, sp_vk_status);
// pc.scratch the binding's scratch (matmul.comp's quantized activations).
// The weight operand's loads (quant.glsl's decoders, wld_*) go through the
// invocation's weight_base, which matmul.comp and get_rows.comp set from
// their src0's slot.
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int8 : require
#extension GL_EXT_shader_8bit_storage : require
#extension GL_EXT_shader_16bit_storage : require
#ifndef SP_NO_FLOAT64
#extension GL_ARB_gpu_shader_int64 : enable
#endif

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32s { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer U32s { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer I32s { int v[]; };
layout(buffer_reference, std430, buffer_reference_align = 2) buffer U16s { uint16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 1) buffer U8s { uint8_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer Status {
  uint code; uint cmd; int value; uint at; uint limit;
};

layout(push_constant) uniform PC {
  uint64_t slot_base[5]; // per tensor slot: guest address 0 where it lies
  uint64_t cmd;
  uint64_t status;
  uint64_t scratch; // the binding's scratch buffer (quantized activations)
  uint index;
  uint aux;
} pc;

#define DT_F32 1u
#define DT_F16 2u
#define DT_BF16 3u
#define DT_Q8_0 4u
#define DT_Q4_0 5u
#define DT_Q4_1 6u
#define DT_I32 7u
#define DT_Q5_0 8u
#define DT_Q5_1 9u
#define DT_Q2_K 10u
#define DT_Q3_K 11u
#define DT_Q4_K 12u
#define DT_Q5_K 13u
#define DT_Q6_K 14u
#define DT_IQ4_NL 15u
#define DT_IQ4_XS 16u

#define OP_MATMUL 1u
#define OP_ADD 2u
#define OP_MUL 3u
#define OP_SCALE 4u
#define OP_GET_ROWS 5u
#define OP_RMSNORM 6u
#define OP_ROPE 7u
#define OP_ATTENTION 8u
#define OP_SET_ROWS 9u
#define OP_SWIGLU 10u
#define OP_SOFTMAX 11u
#define OP_COPY 12u
#define OP_ARGMAX 13u
#define OP_GEGLU 14u
#define OP_SOFTCAP 15u
#define OP_TOPK 16u

struct Tensor {
  uint64_t base; // pc.slot_base of its slot
  uint off, dtype;
  uint ne0, ne1, ne2, ne3;
  uint nb0, nb1, nb2; // byte strides of dims 1..3
};

uint cmd_word(uint i) { return U32s(pc.cmd).v[i]; }
uint cmd_op() { return cmd_word(0); }
uint param_u(uint i) { return cmd_word(52u + i); }
float param_f(uint i) { return uintBitsToFloat(cmd_word(52u + i)); }

// slot 0 = dst, 1..4 = src[0..3]
Tensor tensor(uint slot) {
  uint b = 2u + 10u * slot;
  Tensor t;
  t.base = pc.slot_base[slot];
  t.off = cmd_word(b), t.dtype = cmd_word(b + 1u);
  t.ne0 = cmd_word(b + 2u), t.ne1 = cmd_word(b + 3u), t.ne2 = cmd_word(b + 4u), t.ne3 = cmd_word(b + 5u);
  t.nb0 = cmd_word(b + 6u), t.nb1 = cmd_word(b + 7u), t.nb2 = cmd_word(b + 8u);
  return t;
}

uint rows(Tensor t) { return t.ne1 * t.ne2 * t.ne3; }
uint row_at(Tensor t, uint i1, uint i2, uint i3) { return t.off + i1 * t.nb0 + i2 * t.nb1 + i3 * t.nb2; }
// row r counted over dims 1..3
uint row_flat(Tensor t, uint r) { return row_at(t, r % t.ne1, r / t.ne1 % t.ne2, r / t.ne1 / t.ne2); }

// The list stopped (an index out of range): every later dispatch returns.
bool stopped() { return Status(pc.status).code != 0u; }

// The workgroup's number over a 2-D grid (vk_submit.c, dispatch()).
uint group_id() { return gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x; }

// ---- tensor bytes by base and byte address ----
float ld_f32(uint64_t b, uint a) { return F32s(b + uint64_t(a)).v[0]; }
void st_f32(uint64_t b, uint a, float x) { F32s(b + uint64_t(a)).v[0] = x; }
int ld_i32(uint64_t b, uint a) { return I32s(b + uint64_t(a)).v[0]; }
void st_i32(uint64_t b, uint a, int x) { I32s(b + uint64_t(a)).v[0] = x; }
uint ld_u16(uint64_t b, uint a) { return uint(U16s(b + uint64_t(a)).v[0]); }
void st_u16(uint64_t b, uint a, uint x) { U16s(b + uint64_t(a)).v[0] = uint16_t(x); }
uint ld_u8(uint64_t b, uint a) { return uint(U8s(b + uint64_t(a)).v[0]); }
int ld_i8(uint64_t b, uint a) { return int(int8_t(U8s(b + uint64_t(a)).v[0])); }
// ---- the weight operand (matmul's and get_rows' src0) ----
uint64_t weight_base; // set by main() from the weight's slot
float wld_f32(uint a) { return ld_f32(weight_base, a); }
uint wld_u16(uint a) { return ld_u16(weight_base, a); }
uint wld_u8(uint a) { return ld_u8(weight_base, a); }
int wld_i8(uint a) { return ld_i8(weight_base, a); }

// a * b + c with one rounding, as C's fmaf: Vulkan promises no fused
// fma() (lavapipe splits it), so where the device has 64-bit floats it is
// computed in double (a * b is exact there; the sum rounds once, then to
// float: a double rounding that changes a result about once in 2^29).
#ifndef SP_NO_FLOAT64
float fmaf(float a, float b, float c) {
  precise double r = double(a) * double(b) + double(c);
  return float(r);
}

// e^x in float, from double arithmetic: the CPU attention's attn_exp
// (src/backend/cpu/attention.c: within an ulp of glibc's expf, equal to
// it on all but 0.009% of inputs) for every x: below -105 it gives 0, above
// 89 +inf, NaN stays NaN.
float exp_f(float xf) {
  const double magic = 6755399441055744.0LF; // 1.5 * 2^52: adding it rounds to an integer
  uint u = floatBitsToUint(xf);
  bool under = u > 0xc2d20000u && u <= 0xff800000u; // -inf <= x < -105
  if (!isnan(xf) && xf > 89.0) return uintBitsToFloat(0x7f800000u);
  precise double x = double(under ? uintBitsToFloat(0xc2d20000u) : xf);
  precise double t = x * 1.4426950408889634LF + magic;
  precise double n = t - magic;
  precise double r = x - n * 6.93147180369123816490e-01LF - n * 1.90821492927058770002e-10LF; // ln 2, hi + lo
  precise double p = 1.0LF / 39916800.0LF; // 1/11! ... 1/0!, Horner
  p = p * r + 1.0LF / 3628800.0LF;
  p = p * r + 1.0LF / 362880.0LF;
  p = p * r + 1.0LF / 40320.0LF;
  p = p * r + 1.0LF / 5040.0LF;
  p = p * r + 1.0LF / 720.0LF;
  p = p * r + 1.0LF / 120.0LF;
  p = p * r + 1.0LF / 24.0LF;
  p = p * r + 1.0LF / 6.0LF;
  p = p * r + 0.5LF;
  p = p * r + 1.0LF;
  p = p * r + 1.0LF;
  uint64_t sb = (doubleBitsToUint64(t) - doubleBitsToUint64(magic) + 1023ul) << 52; // 2^n
  precise double prod = p * uint64BitsToDouble(sb);
  float e = float(prod);
  return under ? 0.0 : e;
}

// sin or cos in float from double arithmetic (reduction by pi/2 in two
// parts, |r| <= pi/4, Taylor series to 1e-17): correctly rounded but for
// about one input in 2^29, as close to glibc's sinf and cosf as they are
// to the truth. For the angles of rope (|x| < 2^20).
float sincos_f(float xf, bool want_cos) {
  if (isnan(xf) || isinf(xf)) return uintBitsToFloat(0x7fc00000u);
  precise double x = double(xf);
  precise double k = roundEven(x * 0.63661977236758134308LF); // x * 2 / pi
  precise double r = (x - k * 1.57079632673412561417LF) - k * 6.07710050650619224932e-11LF;
  precise double r2 = r * r;
  precise double sp = 1.0LF / 355687428096000.0LF; // 1/17!
  sp = sp * r2 - 1.0LF / 1307674368000.0LF;
  sp = sp * r2 + 1.0LF / 6227020800.0LF;
  sp = sp * r2 - 1.0LF / 39916800.0LF;
  sp = sp * r2 + 1.0LF / 362880.0LF;
  sp = sp * r2 - 1.0LF / 5040.0LF;
  sp = sp * r2 + 1.0LF / 120.0LF;
  sp = sp * r2 - 1.0LF / 6.0LF;
  precise double sr = r + r * r2 * sp;
  precise double cp = 1.0LF / 20922789888000.0LF; // 1/16!
  cp = cp * r2 - 1.0LF / 87178291200.0LF;
  cp = cp * r2 + 1.0LF / 479001600.0LF;
  cp = cp * r2 - 1.0LF / 3628800.0LF;
  cp = cp * r2 + 1.0LF / 40320.0LF;
  cp = cp * r2 - 1.0LF / 720.0LF;
  cp = cp * r2 + 1.0LF / 24.0LF;
  cp = cp * r2 - 0.5LF;
  precise double cr = 1.0LF + r2 * cp;
  int q = (int(k) + (want_cos ? 1 : 0)) & 3; // cos(x) = sin(x + pi/2)
  double v = q == 0 ? sr : q == 1 ? cr : q == 2 ? -sr : -cr;
  return float(v);
}
float sin_f(float x) { return sincos_f(x, false); }
float cos_f(float x) { return sincos_f(x, true); }
#define ACC double
#else
float fmaf(float a, float b, float c) { return fma(a, b, c); }
float exp_f(float x) { return exp(x); }
float sin_f(float x) { return sin(x); }
float cos_f(float x) { return cos(x); }
#define ACC float
#endif

// ---- the binding's scratch, by 32-bit word ----
uint sc_ld(uint w) { return U32s(pc.scratch).v[w]; }
void sc_st(uint w, uint x) { U32s(pc.scratch).v[w] = x; }

float f16_bits_to_f32(uint h) { return unpackHalf2x16(h).x; }
float ld_f16(uint64_t b, uint a) { return f16_bits_to_f32(ld_u16(b, a)); }
float ld_bf16(uint64_t b, uint a) { return uintBitsToFloat(ld_u16(b, a) << 16); }
float wld_f16(uint a) { return f16_bits_to_f32(wld_u16(a)); }
float wld_bf16(uint a) { return uintBitsToFloat(wld_u16(a) << 16); }

// f32 -> f16 bits, round to nearest even (as sp_f32_to_f16).
uint f32_to_f16_bits(float f) {
  uint x = floatBitsToUint(f);
  uint sign = (x >> 16) & 0x8000u;
  uint ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return sign | 0x7e00u | ((ax >> 13) & 0x3ffu); // NaN
  if (ax >= 0x477ff000u) return sign | 0x7c00u;                      // overflow (rounds to inf)
  if (ax < 0x38800000u) {                                             // subnormal or zero in f16
    if (ax < 0x33000000u) return sign;                                // below half the least subnormal
    uint e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
    uint shift = 126u - e; // 14 + (112 - e) + 1 ... result = m >> (shift) with rounding
    uint r = m >> shift, rem = m & ((1u << shift) - 1u), hw = 1u << (shift - 1u);
    if (rem > hw || (rem == hw && (r & 1u) != 0u)) r++;
    return sign | r;
  }
  uint r = ((ax - 0x38000000u) >> 13);
  uint rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) != 0u)) r++;
  return sign | r;
}

// f32 -> bf16 bits, round to nearest even; NaN stays NaN (as sp_f32_to_bf16).
uint f32_to_bf16_bits(float f) {
  uint x = floatBitsToUint(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (x >> 16) | 0x40u;
  return (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
}

float round_f16(float f) { return f16_bits_to_f32(f32_to_f16_bits(f)); }

// An element of an f32, f16 or bf16 tensor at byte address a.
float ld_float(uint dt, uint64_t b, uint a) {
  if (dt == DT_F32) return ld_f32(b, a);
  if (dt == DT_F16) return ld_f16(b, a);
  return ld_bf16(b, a);
}
// An element of the weight operand (f32, f16 or bf16) at byte address a.
float wld_float(uint dt, uint a) {
  if (dt == DT_F32) return wld_f32(a);
  if (dt == DT_F16) return wld_f16(a);
  return wld_bf16(a);
}
void st_float(uint dt, uint64_t b, uint a, float x) {
  if (dt == DT_F32) st_f32(b, a, x);
  else if (dt == DT_F16) st_u16(b, a, f32_to_f16_bits(x));
  else st_u16(b, a, f32_to_bf16_bits(x));
}
uint float_size(uint dt) { return dt == DT_F32 ? 4u : 2u; }
