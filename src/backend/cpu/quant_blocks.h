/*
 * quant_blocks.h: the GGUF quant types of issue 15 (Q5_0, Q5_1, Q2_K..Q6_K,
 * IQ4_NL, IQ4_XS) unpacked into integers, in element order.
 *
 * Each block (32 or 256 elements, ggml's byte layout) becomes 32-element
 * slices, one per sp_q8_act activation block, holding the integer weights
 * and their integer sub-block scales and mins:
 *
 *   w[e] = d * sc[e / 16] * q[e]                (Q5_0, Q3_K, Q6_K, IQ4_NL, IQ4_XS)
 *   w[e] = d * q[e] + m                         (Q5_1)
 *   w[e] = d * sc[e / 16] * q[e] - m * mn[e / 16] (Q2_K, Q4_K, Q5_K; m = dmin)
 *
 * (sc = 1 for the 32-element types). The generic dots and get_rows'
 * dequantization both read this form, so one decoder per type serves both;
 * the SIMD tables decode the types they speed up on their own. Header
 * only (static functions): the NEON cross-check (tests/
 * test_cpu_kernels_neon.sh) builds a fixed list of kernel sources.
 */
#ifndef SP_CPU_QUANT_BLOCKS_H
#define SP_CPU_QUANT_BLOCKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/fp16.h"
#include "backend/cpu/kernels.h"
#include "core/dtype.h"

#define SP_QUANT_MAX_SLICES 8 /* 256-element blocks */

/* How a type's min enters a weight (see above). */
typedef enum sp_quant_min {
  SP_QUANT_MIN_NONE,
  SP_QUANT_MIN_ADD, /* + m (Q5_1) */
  SP_QUANT_MIN_SUB, /* - dmin * mn (Q2_K, Q4_K, Q5_K) */
} sp_quant_min;

/* 32 consecutive weights. */
typedef struct sp_quant_slice {
  int8_t q[SP_QK];
  int16_t sc[2]; /* scales of elements 0..15 and 16..31 */
  int16_t mn[2]; /* mins of the same halves (SP_QUANT_MIN_SUB types; else 0) */
} sp_quant_slice;

typedef struct sp_quant_block {
  float d, m; /* super-block scale; m: Q5_1's min, a K type's dmin, else 0 */
  int slices; /* 1 or 8 */
  sp_quant_slice s[SP_QUANT_MAX_SLICES];
} sp_quant_block;

/* The generic table's dots of these types (kernels_generic.c), for the
 * SIMD tables to point at where they have no faster loop of their own. */
#define SP_GENERIC_DOT(name) \
  void sp_cpu_generic_dot_##name(int64_t k, const void *w, const void *x, size_t xs, int nx, float *out);
SP_GENERIC_DOT(q5_0)
SP_GENERIC_DOT(q5_1)
SP_GENERIC_DOT(q2_k)
SP_GENERIC_DOT(q3_k)
SP_GENERIC_DOT(q4_k)
SP_GENERIC_DOT(q5_k)
SP_GENERIC_DOT(q6_k)
SP_GENERIC_DOT(iq4_nl)
SP_GENERIC_DOT(iq4_xs)
#undef SP_GENERIC_DOT

/* The table entries every SIMD table shares with generic (the types no
 * SIMD table has a loop for yet). */
#define SP_GENERIC_BLOCK_DOTS                                                                         \
  [SP_DTYPE_Q2_K] = sp_cpu_generic_dot_q2_k, [SP_DTYPE_Q3_K] = sp_cpu_generic_dot_q3_k,              \
  [SP_DTYPE_IQ4_NL] = sp_cpu_generic_dot_iq4_nl, [SP_DTYPE_IQ4_XS] = sp_cpu_generic_dot_iq4_xs

/* ---- decoders (layouts of ggml-common.h) ---- */

/* IQ4_NL / IQ4_XS: the 16 non-linear levels a nibble indexes. */
static const int8_t sp_iq4nl_levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                           1,    13,   25,  38,  53,  69,  89,  113};

static inline float sp_quant_f16(const uint8_t *p) {
  uint16_t h;
  memcpy(&h, p, sizeof h);
  return sp_f16_to_f32(h);
}

static inline uint32_t sp_quant_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Whether this header decodes `dtype`. */
static inline bool sp_quant_block_known(uint32_t dtype) {
  switch (dtype) {
  case SP_DTYPE_Q5_0:
  case SP_DTYPE_Q5_1:
  case SP_DTYPE_Q2_K:
  case SP_DTYPE_Q3_K:
  case SP_DTYPE_Q4_K:
  case SP_DTYPE_Q5_K:
  case SP_DTYPE_Q6_K:
  case SP_DTYPE_IQ4_NL:
  case SP_DTYPE_IQ4_XS: return true;
  default: return false;
  }
}

static inline sp_quant_min sp_quant_min_kind(uint32_t dtype) {
  if (dtype == SP_DTYPE_Q5_1) return SP_QUANT_MIN_ADD;
  if (dtype == SP_DTYPE_Q2_K || dtype == SP_DTYPE_Q4_K || dtype == SP_DTYPE_Q5_K) return SP_QUANT_MIN_SUB;
  return SP_QUANT_MIN_NONE;
}

static inline void qb_set_scales(sp_quant_slice *s, int sc0, int sc1, int mn0, int mn1) {
  s->sc[0] = (int16_t)sc0;
  s->sc[1] = (int16_t)sc1;
  s->mn[0] = (int16_t)mn0;
  s->mn[1] = (int16_t)mn1;
}

/* Q5_0 / Q5_1: nibble j (low) and j + 16 (high), fifth bit from qh bit j. */
static inline void qb_unpack_q5(const uint8_t *qh4, const uint8_t *qs, int bias, sp_quant_slice *s) {
  uint32_t qh = sp_quant_u32(qh4);
  for (int j = 0; j < SP_QK / 2; j++) {
    s->q[j] = (int8_t)(((qs[j] & 0x0f) | ((qh >> j) & 1) << 4) - bias);
    s->q[j + 16] = (int8_t)(((qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - bias);
  }
  qb_set_scales(s, 1, 1, 0, 0);
}

/* IQ4_NL and one IQ4_XS sub-block: 16 bytes of nibbles indexing the levels. */
static inline void qb_unpack_iq4(const uint8_t *qs, int sc, sp_quant_slice *s) {
  for (int j = 0; j < SP_QK / 2; j++) {
    s->q[j] = sp_iq4nl_levels[qs[j] & 0x0f];
    s->q[j + 16] = sp_iq4nl_levels[qs[j] >> 4];
  }
  qb_set_scales(s, sc, sc, 0, 0);
}

/* Q2_K: 84 bytes = scales[16] (4-bit scale | 4-bit min << 4), qs[64], d,
 * dmin. Slice t = 4n + j takes bits 2j of qs[32n ..] with scales 2t, 2t + 1. */
static inline void qb_unpack_q2_k(const uint8_t *b, sp_quant_block *out) {
  const uint8_t *scales = b, *qs = b + 16;
  out->d = sp_quant_f16(b + 80);
  out->m = sp_quant_f16(b + 82);
  for (int t = 0; t < 8; t++) {
    sp_quant_slice *s = &out->s[t];
    int n = t / 4, shift = 2 * (t % 4);
    for (int e = 0; e < SP_QK; e++) s->q[e] = (int8_t)((qs[32 * n + e] >> shift) & 3);
    uint8_t s0 = scales[2 * t], s1 = scales[2 * t + 1];
    qb_set_scales(s, s0 & 0x0f, s1 & 0x0f, s0 >> 4, s1 >> 4);
  }
}

/* Q3_K's 16 six-bit scales: low nibbles in bytes 0..7 (scales 0..7 low
 * nibble, 8..15 high nibble), top two bits in bytes 8..11. Stored + 32. */
static inline int qb_q3_k_scale(const uint8_t *sc, int i) {
  int low = i < 8 ? sc[i] & 0x0f : sc[i - 8] >> 4;
  int high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (low | high << 4) - 32;
}

/* Q3_K: 110 bytes = hmask[32], qs[64], scales[12], d. A clear hmask bit
 * subtracts 4 from the 2-bit quant. */
static inline void qb_unpack_q3_k(const uint8_t *b, sp_quant_block *out) {
  const uint8_t *hmask = b, *qs = b + 32, *scales = b + 96;
  out->d = sp_quant_f16(b + 108);
  out->m = 0;
  for (int t = 0; t < 8; t++) {
    sp_quant_slice *s = &out->s[t];
    int n = t / 4, shift = 2 * (t % 4);
    for (int e = 0; e < SP_QK; e++) {
      int low = (qs[32 * n + e] >> shift) & 3;
      s->q[e] = (int8_t)(low - ((hmask[e] >> t) & 1 ? 0 : 4));
    }
    qb_set_scales(s, qb_q3_k_scale(scales, 2 * t), qb_q3_k_scale(scales, 2 * t + 1), 0, 0);
  }
}

/* Q4_K / Q5_K: the 6-bit scale and min of sub-block j from 12 bytes
 * (ggml's get_scale_min_k4 layout). */
static inline void qb_k4_scale_min(const uint8_t *q, int j, int *sc, int *mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 0x0f) | (q[j - 4] >> 6) << 4;
    *mn = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
  }
}

/* Q4_K: 144 bytes = d, dmin, scales[12], qs[128]; Q5_K: 176 bytes = d,
 * dmin, scales[12], qh[32], qs[128]. Slice t: nibble t % 2 of qs[32 (t / 2) ..],
 * (Q5_K) fifth bit = bit t of qh[e]. */
static inline void qb_unpack_q45_k(const uint8_t *b, bool five, sp_quant_block *out) {
  const uint8_t *scales = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
  out->d = sp_quant_f16(b);
  out->m = sp_quant_f16(b + 2);
  for (int t = 0; t < 8; t++) {
    sp_quant_slice *s = &out->s[t];
    int shift = 4 * (t % 2), sc, mn;
    for (int e = 0; e < SP_QK; e++) {
      int q = (qs[32 * (t / 2) + e] >> shift) & 0x0f;
      if (five) q |= ((qh[e] >> t) & 1) << 4;
      s->q[e] = (int8_t)q;
    }
    qb_k4_scale_min(scales, t, &sc, &mn);
    qb_set_scales(s, sc, sc, mn, mn);
  }
}

/* Q6_K: 210 bytes = ql[128], qh[64], int8 scales[16], d. Slice t = 4h + u:
 * nibble u / 2 of ql[64h + 32 (u % 2) ..], top two bits 2u of qh[32h ..]. */
static inline void qb_unpack_q6_k(const uint8_t *b, sp_quant_block *out) {
  const uint8_t *ql = b, *qh = b + 128;
  const int8_t *scales = (const int8_t *)(b + 192);
  out->d = sp_quant_f16(b + 208);
  out->m = 0;
  for (int t = 0; t < 8; t++) {
    sp_quant_slice *s = &out->s[t];
    int h = t / 4, u = t % 4;
    for (int e = 0; e < SP_QK; e++) {
      int low = (ql[64 * h + 32 * (u % 2) + e] >> (4 * (u / 2))) & 0x0f;
      int high = (qh[32 * h + e] >> (2 * u)) & 3;
      s->q[e] = (int8_t)((low | high << 4) - 32);
    }
    qb_set_scales(s, scales[2 * t], scales[2 * t + 1], 0, 0);
  }
}

/* IQ4_XS: 136 bytes = d, scales_h (u16), scales_l[4], qs[128]; sub-block
 * ib's 6-bit scale is nibble ib % 2 of scales_l[ib / 2] | bits 2ib of
 * scales_h << 4, stored + 32. */
static inline void qb_unpack_iq4_xs(const uint8_t *b, sp_quant_block *out) {
  unsigned scales_h = (unsigned)b[2] | (unsigned)b[3] << 8;
  out->d = sp_quant_f16(b);
  out->m = 0;
  for (int ib = 0; ib < 8; ib++) {
    int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f) | ((scales_h >> (2 * ib)) & 3) << 4;
    qb_unpack_iq4(b + 8 + 16 * ib, ls - 32, &out->s[ib]);
  }
}

/* Decodes one block of a known dtype (only 2-byte aligned: read byte-wise). */
static inline void sp_quant_unpack(uint32_t dtype, const uint8_t *blk, sp_quant_block *out) {
  out->slices = sp_dtype_get(dtype)->block_elems / SP_QK;
  switch (dtype) {
  case SP_DTYPE_Q5_0:
    out->d = sp_quant_f16(blk), out->m = 0;
    qb_unpack_q5(blk + 2, blk + 6, 16, &out->s[0]);
    break;
  case SP_DTYPE_Q5_1:
    out->d = sp_quant_f16(blk), out->m = sp_quant_f16(blk + 2);
    qb_unpack_q5(blk + 4, blk + 8, 0, &out->s[0]);
    break;
  case SP_DTYPE_IQ4_NL:
    out->d = sp_quant_f16(blk), out->m = 0;
    qb_unpack_iq4(blk + 2, 1, &out->s[0]);
    break;
  case SP_DTYPE_Q2_K: qb_unpack_q2_k(blk, out); break;
  case SP_DTYPE_Q3_K: qb_unpack_q3_k(blk, out); break;
  case SP_DTYPE_Q4_K: qb_unpack_q45_k(blk, false, out); break;
  case SP_DTYPE_Q5_K: qb_unpack_q45_k(blk, true, out); break;
  case SP_DTYPE_Q6_K: qb_unpack_q6_k(blk, out); break;
  default: qb_unpack_iq4_xs(blk, out); break;
  }
}

/* One slice in ggml's reference operations: the 32-element types multiply
 * d by the quant directly (Q5_1 then adds m); the K types first form the
 * sub-block scale d * sc (and min dmin * mn), one rounding each. */
static inline void qb_dequantize_slice(const sp_quant_block *qb, sp_quant_min mk, const sp_quant_slice *s,
                                       float *y) {
  for (int h = 0; h < 2; h++) {
    float dl = qb->slices == 1 ? qb->d : qb->d * (float)s->sc[h];
    float ml = mk == SP_QUANT_MIN_SUB ? qb->m * (float)s->mn[h] : 0.0f;
    for (int e = 16 * h; e < 16 * h + 16; e++) {
      float v = dl * (float)s->q[e];
      if (mk == SP_QUANT_MIN_ADD) v = v + qb->m;
      else if (mk == SP_QUANT_MIN_SUB) v = v - ml;
      y[e] = v;
    }
  }
}

/* n elements (a multiple of the block size) of a known dtype into f32,
 * with ggml's reference float operations (ggml-quants.c dequantize_row_*),
 * so the bits equal ggml's and PyPI gguf's. */
static inline void sp_quant_dequantize_row(uint32_t dtype, const uint8_t *src, float *dst, int64_t n) {
  const sp_dtype_info *info = sp_dtype_get(dtype);
  sp_quant_min mk = sp_quant_min_kind(dtype);
  sp_quant_block qb;
  for (int64_t b = 0; b < n / info->block_elems; b++, src += info->block_bytes) {
    sp_quant_unpack(dtype, src, &qb);
    for (int t = 0; t < qb.slices; t++, dst += SP_QK) qb_dequantize_slice(&qb, mk, &qb.s[t], dst);
  }
}

#endif
