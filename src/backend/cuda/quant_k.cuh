/*
 * quant_k.cuh: the issue-15 weight types (Q5_0, Q5_1, the K-quants Q2_K..Q6_K,
 * IQ4_NL, IQ4_XS) on the GPU: their block sizes, an exact dequantization of
 * 8 consecutive elements (get_rows, prompt expansion to f16, the simple
 * matrix-vector kernel), and the integer dot products of the fast decode
 * kernels for Q5_0, Q4_K and Q6_K (the types of a Q4_K_M file).
 *
 * Block layouts are ggml's (ggml-common.h). Dequantization is exact float
 * math in the order of the reference dequantizer (PyPI gguf, which the
 * CPU backend matches bit for bit): every product and sum is rounded on its
 * own (__fmul_rn, __fadd_rn, __fsub_rn), never contracted into an FMA.
 *
 * Blocks are only 2-byte aligned (22-, 24-, 84-, 110-, 210-byte blocks, and
 * the validator asks no more of any quantized tensor), so multi-byte fields
 * are read in 16-bit halves.
 */
#ifndef SP_CUDA_QUANT_K_CUH
#define SP_CUDA_QUANT_K_CUH

#include "backend/cuda/cuda_common.cuh"

#define SP_CU_QK_K 256 /* elements per K-quant super-block */
/* Not a dtype: sp_cu_deq8's Q5_1 without its min (d * q), for products
 * that add the min once per block (mmv_deq_kernel). */
#define SP_CU_Q5_1_NO_MIN 1009

/* Whether dt is one of the issue-15 types handled here. */
static inline __host__ __device__ bool sp_cu_is_kq(uint32_t dt) {
  return dt >= SP_DTYPE_Q5_0 && dt <= SP_DTYPE_IQ4_XS;
}

/* Elements per block of dt (an issue-15 type). */
static inline __host__ __device__ constexpr uint32_t sp_cu_kq_elems(uint32_t dt) {
  return dt == SP_DTYPE_Q5_0 || dt == SP_DTYPE_Q5_1 || dt == SP_CU_Q5_1_NO_MIN || dt == SP_DTYPE_IQ4_NL ? 32
                                                                                                  : SP_CU_QK_K;
}

/* Bytes per block of dt (an issue-15 type). */
static inline __host__ __device__ constexpr uint32_t sp_cu_kq_bytes(uint32_t dt) {
  return dt == SP_DTYPE_Q5_0     ? 22
         : dt == SP_DTYPE_Q5_1 || dt == SP_CU_Q5_1_NO_MIN ? 24
         : dt == SP_DTYPE_Q2_K   ? 84
         : dt == SP_DTYPE_Q3_K   ? 110
         : dt == SP_DTYPE_Q4_K   ? 144
         : dt == SP_DTYPE_Q5_K   ? 176
         : dt == SP_DTYPE_Q6_K   ? 210
         : dt == SP_DTYPE_IQ4_NL ? 18
                                 : 136;
}

/* Four bytes at a 2-byte aligned address. */
static __device__ __forceinline__ uint32_t sp_cu_ld32_a2(const uint8_t *p) {
  const uint16_t *h = (const uint16_t *)p;
  return (uint32_t)__ldg(h) | ((uint32_t)__ldg(h + 1) << 16);
}

static __device__ __forceinline__ float sp_cu_ldh(const uint8_t *p) {
  return sp_cu_half(__ldg((const unsigned short *)p));
}

/* IQ4's 16 non-linear levels (ggml's kvalues_iq4nl: -127 -104 -83 -65 -49
 * -35 -22 -10 1 13 25 38 53 69 89 113), packed as bytes into two words so
 * that a lookup is a shift in registers, not a memory access. */
static __device__ __forceinline__ int sp_cu_iq4_level(uint32_t i) {
  const uint64_t lo = 0xF6EADDCFBFAD9881ull, hi = 0x7159453526190D01ull;
  return (int)(int8_t)(uint8_t)((i < 8 ? lo : hi) >> (8 * (i & 7)));
}

/* Four levels for the four nibbles (bytes 0x0N) of v, as int8 bytes. */
static __device__ __forceinline__ int sp_cu_iq4_levels4(uint32_t v) {
  uint32_t r = 0;
#pragma unroll
  for (int k = 0; k < 4; k++) r |= (uint32_t)(uint8_t)sp_cu_iq4_level((v >> (8 * k)) & 0x0f) << (8 * k);
  return (int)r;
}

/* Q4_K/Q5_K: the 6-bit scale and min of sub-block j (0..7) from the 12
 * packed bytes at s (ggml's get_scale_min_k4). */
static __device__ __forceinline__ void sp_cu_k4_scale_min(const uint8_t *s, uint32_t j, uint32_t *sc, uint32_t *m) {
  if (j < 4) {
    *sc = s[j] & 63, *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

/* Q3_K: the signed 6-bit scale of 16-element group i (0..15). */
static __device__ __forceinline__ int sp_cu_k3_scale(const uint8_t *s, uint32_t i) {
  uint32_t low = i < 8 ? s[i] & 0x0f : s[i - 8] >> 4;
  uint32_t high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (int)(low | (high << 4)) - 32;
}

/* Elements e0 .. e0 + 7 (e0 a multiple of 8 inside the block) of the block
 * at blk, dequantized exactly as the reference does. */
template <int DT>
static __device__ __forceinline__ void sp_cu_deq8(const uint8_t *blk, uint32_t e0, float *o) {
  if (DT == SP_DTYPE_Q5_0 || DT == SP_DTYPE_Q5_1 || DT == SP_CU_Q5_1_NO_MIN) {
    const bool one = DT != SP_DTYPE_Q5_0, no_min = DT == SP_CU_Q5_1_NO_MIN;
    float d = sp_cu_ldh(blk), m = one ? sp_cu_ldh(blk + 2) : 0.0f;
    uint32_t qh = sp_cu_ld32_a2(blk + (one ? 4 : 2));
    const uint8_t *qs = blk + (one ? 8 : 6);
#pragma unroll
    for (int t = 0; t < 8; t++) {
      uint32_t e = e0 + t, nib = e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4;
      int q = (int)(nib | (((qh >> e) & 1) << 4));
      o[t] = !one ? __fmul_rn(d, (float)(q - 16)) : no_min ? __fmul_rn(d, (float)q) : __fadd_rn(__fmul_rn(d, (float)q), m);
    }
  } else if (DT == SP_DTYPE_Q2_K) {
    uint32_t sc = blk[e0 / 16], half = e0 / 128, j = e0 % 128 / 32, l0 = e0 % 32;
    float dl = __fmul_rn(sp_cu_ldh(blk + 80), (float)(sc & 0x0f));
    float ml = __fmul_rn(sp_cu_ldh(blk + 82), (float)(sc >> 4));
    const uint8_t *q = blk + 16 + half * 32 + l0;
#pragma unroll
    for (int t = 0; t < 8; t++) o[t] = __fsub_rn(__fmul_rn(dl, (float)((q[t] >> (2 * j)) & 3)), ml);
  } else if (DT == SP_DTYPE_Q3_K) {
    uint32_t half = e0 / 128, j = e0 % 128 / 32, l0 = e0 % 32, bit = 1u << (half * 4 + j);
    float dl = __fmul_rn(sp_cu_ldh(blk + 108), (float)sp_cu_k3_scale(blk + 96, e0 / 16));
    const uint8_t *q = blk + 32 + half * 32 + l0, *hm = blk + l0;
#pragma unroll
    for (int t = 0; t < 8; t++) {
      int v = (int)((q[t] >> (2 * j)) & 3) - (hm[t] & bit ? 0 : 4);
      o[t] = __fmul_rn(dl, (float)v);
    }
  } else if (DT == SP_DTYPE_Q4_K || DT == SP_DTYPE_Q5_K) {
    const bool five = DT == SP_DTYPE_Q5_K;
    uint32_t j = e0 / 32, l0 = e0 % 32, sc, mn;
    sp_cu_k4_scale_min(blk + 4, j, &sc, &mn);
    float dl = __fmul_rn(sp_cu_ldh(blk), (float)sc), ml = __fmul_rn(sp_cu_ldh(blk + 2), (float)mn);
    const uint8_t *q = blk + (five ? 48 : 16) + j / 2 * 32 + l0, *qh = blk + 16 + l0;
#pragma unroll
    for (int t = 0; t < 8; t++) {
      uint32_t v = j & 1 ? q[t] >> 4 : q[t] & 0x0f;
      if (five) v |= ((qh[t] >> j) & 1) << 4;
      o[t] = __fsub_rn(__fmul_rn(dl, (float)v), ml);
    }
  } else if (DT == SP_DTYPE_Q6_K) {
    uint32_t half = e0 / 128, k = e0 % 128 / 32, l0 = e0 % 32;
    float dl = __fmul_rn(sp_cu_ldh(blk + 208), (float)(int8_t)blk[192 + e0 / 16]);
    const uint8_t *ql = blk + half * 64 + (k & 1) * 32 + l0, *qh = blk + 128 + half * 32 + l0;
#pragma unroll
    for (int t = 0; t < 8; t++) {
      uint32_t lo = k >= 2 ? ql[t] >> 4 : ql[t] & 0x0f;
      int v = (int)(lo | (((qh[t] >> (2 * k)) & 3) << 4)) - 32;
      o[t] = __fmul_rn(dl, (float)v);
    }
  } else if (DT == SP_DTYPE_IQ4_NL) {
    float d = sp_cu_ldh(blk);
    const uint8_t *qs = blk + 2;
#pragma unroll
    for (int t = 0; t < 8; t++) {
      uint32_t e = e0 + t, nib = e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4;
      o[t] = __fmul_rn(d, (float)sp_cu_iq4_level(nib));
    }
  } else { /* IQ4_XS */
    uint32_t ib = e0 / 32, l0 = e0 % 32, sh = __ldg((const unsigned short *)(blk + 2));
    int ls = (int)(((blk[4 + ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4)) - 32;
    float dl = __fmul_rn(sp_cu_ldh(blk), (float)ls);
    const uint8_t *qs = blk + 8 + ib * 16 + l0 % 16;
#pragma unroll
    for (int t = 0; t < 8; t++) o[t] = __fmul_rn(dl, (float)sp_cu_iq4_level(l0 < 16 ? qs[t] & 0x0f : qs[t] >> 4));
  }
}

/* Elements i .. i + 7 (i a multiple of 8) of a row of dt. */
template <int DT>
static __device__ __forceinline__ void sp_cu_row8(const uint8_t *row, uint32_t i, float *o) {
  const uint32_t QE = sp_cu_kq_elems(DT);
  sp_cu_deq8<DT>(row + (size_t)(i / QE) * sp_cu_kq_bytes(DT), i % QE, o);
}

/* The same with the type known only at run time (get_rows). */
static __device__ __forceinline__ void sp_cu_row8_any(const uint8_t *row, uint32_t dt, uint32_t i, float *o) {
  switch (dt) {
  case SP_DTYPE_Q5_0: sp_cu_row8<SP_DTYPE_Q5_0>(row, i, o); break;
  case SP_DTYPE_Q5_1: sp_cu_row8<SP_DTYPE_Q5_1>(row, i, o); break;
  case SP_DTYPE_Q2_K: sp_cu_row8<SP_DTYPE_Q2_K>(row, i, o); break;
  case SP_DTYPE_Q3_K: sp_cu_row8<SP_DTYPE_Q3_K>(row, i, o); break;
  case SP_DTYPE_Q4_K: sp_cu_row8<SP_DTYPE_Q4_K>(row, i, o); break;
  case SP_DTYPE_Q5_K: sp_cu_row8<SP_DTYPE_Q5_K>(row, i, o); break;
  case SP_DTYPE_Q6_K: sp_cu_row8<SP_DTYPE_Q6_K>(row, i, o); break;
  case SP_DTYPE_IQ4_NL: sp_cu_row8<SP_DTYPE_IQ4_NL>(row, i, o); break;
  default: sp_cu_row8<SP_DTYPE_IQ4_XS>(row, i, o); break;
  }
}

/* ---- integer dot products for the fast decode kernels ---- */

/* A unit is the slice of a weight row that four lanes share in the
 * matrix-vector kernel: a 32-element block (Q5_0), a pair of sub-blocks
 * whose nibbles share bytes (Q4_K: 64 elements), or half a super-block
 * whose low and high bits share bytes (Q6_K: 128 elements). */
template <int DT> struct kq_unit {
  static const uint32_t ELEMS = DT == SP_DTYPE_Q4_K ? 64 : DT == SP_DTYPE_Q6_K ? 128 : 32;
  static const uint32_t XB = ELEMS / SP_CU_QK; /* activation blocks per unit */
};

/* The activation ints and scales one lane needs for unit u:
 * Q4_K and Q6_K lanes take 8 consecutive values of each activation block
 * of the unit, Q5_0 lanes 4 low-nibble and 4 high-nibble partners. */
template <int DT> struct kq_x {
  int2 x[kq_unit<DT>::XB];
  float dx[kq_unit<DT>::XB];
};

template <int DT>
static __device__ __forceinline__ kq_x<DT> sp_cu_kq_load_x(const int8_t *xr, const float *xdr, uint32_t u,
                                                           uint32_t sub) {
  kq_x<DT> r;
  const uint32_t XB = kq_unit<DT>::XB;
#pragma unroll
  for (uint32_t a = 0; a < XB; a++) {
    uint32_t b = u * XB + a;
    const int8_t *xb = xr + (size_t)b * SP_CU_QK;
    if (DT == SP_DTYPE_Q5_0) r.x[a] = make_int2(*(const int *)(xb + sub * 4), *(const int *)(xb + 16 + sub * 4));
    else r.x[a] = *(const int2 *)(xb + sub * 8);
    r.dx[a] = xdr[b];
  }
  return r;
}

/* The bits b0..b3 of n as bit 4 of bytes 0..3 (Q5_0's fifth bits). */
static __device__ __forceinline__ int sp_cu_spread4(uint32_t n) {
  return (int)(((n & 1) << 4) | ((n & 2) << 11) | ((n & 4) << 18) | ((n & 8) << 25));
}

/* This lane's part of unit u of a weight row with the activations. */
template <int DT>
static __device__ __forceinline__ float sp_cu_kq_dot(const uint8_t *wrow, uint32_t u, const kq_x<DT> &x,
                                                     uint32_t sub) {
  static_assert(DT == SP_DTYPE_Q5_0 || DT == SP_DTYPE_Q4_K || DT == SP_DTYPE_Q6_K, "no integer dot for this type");
  if (DT == SP_DTYPE_Q5_0) {
    const uint8_t *blk = wrow + (size_t)u * 22;
    uint32_t qh = sp_cu_ld32_a2(blk + 2), v = sp_cu_ld32_a2(blk + 6 + sub * 4);
    int lo = (int)(v & 0x0f0f0f0fu) | sp_cu_spread4(qh >> (4 * sub));
    int hi = (int)((v >> 4) & 0x0f0f0f0fu) | sp_cu_spread4(qh >> (16 + 4 * sub));
    int sumi = __dp4a(lo, x.x[0].x, __dp4a(hi, x.x[0].y, 0));
    int sumx = __dp4a(0x01010101, x.x[0].x, __dp4a(0x01010101, x.x[0].y, 0));
    return sp_cu_ldh(blk) * x.dx[0] * (float)(sumi - 16 * sumx);
  }
  if (DT == SP_DTYPE_Q4_K) {
    /* unit u: sub-blocks j = 2p (low nibbles) and 2p + 1 (high) */
    const uint8_t *blk = wrow + (size_t)(u / 4) * 144;
    uint32_t p = u % 4;
    uint32_t a = __ldg((const unsigned short *)(blk + 4 + 2 * p));     /* bytes j, j+1 */
    uint32_t b = __ldg((const unsigned short *)(blk + 8 + 2 * p));     /* bytes j+4, j+5 */
    uint32_t c = p >= 2 ? __ldg((const unsigned short *)(blk + 2 * p)) : 0; /* bytes j-4, j-3 */
    float acc = 0, d = sp_cu_ldh(blk), dmin = sp_cu_ldh(blk + 2);
    const uint8_t *q = blk + 16 + p * 32 + sub * 8;
    /* 144-byte blocks keep the row's alignment: on an 8-byte aligned
     * tensor (GGUF aligns tensor data to 32) every lane's quants are one
     * 8-byte load, and for dense rows the branch goes one way everywhere */
    uint32_t w0, w1;
    if (((uintptr_t)q & 7) == 0) {
      uint2 v = __ldg((const uint2 *)q);
      w0 = v.x, w1 = v.y;
    } else {
      w0 = sp_cu_ld32_a2(q), w1 = sp_cu_ld32_a2(q + 4);
    }
#pragma unroll
    for (uint32_t h = 0; h < 2; h++) {
      uint32_t ab = (a >> (8 * h)) & 0xff, bb = (b >> (8 * h)) & 0xff, cb = (c >> (8 * h)) & 0xff;
      uint32_t sc = p < 2 ? ab & 63 : (bb & 0x0f) | ((cb >> 6) << 4);
      uint32_t mn = p < 2 ? bb & 63 : (bb >> 4) | ((ab >> 6) << 4);
      int q0 = (int)((h ? w0 >> 4 : w0) & 0x0f0f0f0fu), q1 = (int)((h ? w1 >> 4 : w1) & 0x0f0f0f0fu);
      int sumi = __dp4a(q0, x.x[h].x, __dp4a(q1, x.x[h].y, 0));
      /* the min term from the exact sum of the activation ints, as the
       * CPU's (not the f16-rounded scaled sum Q4_1 uses) */
      int sumx = __dp4a(0x01010101, x.x[h].x, __dp4a(0x01010101, x.x[h].y, 0));
      acc += x.dx[h] * (d * (float)((int)sc * sumi) - dmin * (float)((int)mn * sumx));
    }
    return acc;
  }
  /* Q6_K: unit u is half hh of a super-block; this lane takes l = sub * 8
   * .. + 7 of its four 32-element quarters (shared ql and qh bytes) */
  const uint8_t *blk = wrow + (size_t)(u / 2) * 210;
  uint32_t hh = u % 2;
  const uint8_t *ql = blk + hh * 64 + sub * 8, *qh = blk + 128 + hh * 32 + sub * 8;
  const int8_t *sc = (const int8_t *)(blk + 192 + hh * 8 + sub / 2);
  int sumi[4] = {0, 0, 0, 0};
#pragma unroll
  for (uint32_t w = 0; w < 2; w++) { /* bytes 4w .. 4w + 3 of the lane's 8 */
    uint32_t la = sp_cu_ld32_a2(ql + 4 * w), lb = sp_cu_ld32_a2(ql + 32 + 4 * w), hb = sp_cu_ld32_a2(qh + 4 * w);
#pragma unroll
    for (uint32_t k = 0; k < 4; k++) {
      uint32_t lo = ((k & 1 ? lb : la) >> (k >= 2 ? 4 : 0)) & 0x0f0f0f0fu;
      uint32_t hi = ((hb >> (2 * k)) & 0x03030303u) << 4;
      int q = (int)__vsub4(lo | hi, 0x20202020u); /* q - 32 per byte, as int8 */
      sumi[k] = __dp4a(q, w ? x.x[k].y : x.x[k].x, sumi[k]);
    }
  }
  float acc = 0;
#pragma unroll
  for (uint32_t k = 0; k < 4; k++) acc += (float)sc[2 * k] * x.dx[k] * (float)sumi[k];
  return sp_cu_ldh(blk + 208) * acc;
}

#endif
