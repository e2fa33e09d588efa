// quant.glsl: weight blocks of every dtype unpacked into integers, one
// 32-element slice at a time, in the form of src/backend/cpu/quant_blocks.h:
//   w[e] = d * sc[e / 16] * q[e]                  (no min)
//   w[e] = d * q[e] + m                           (Q4_1, Q5_1: MIN_ADD)
//   w[e] = d * sc[e / 16] * q[e] - m * mn[e / 16] (Q2_K, Q4_K, Q5_K: MIN_SUB)
// with sc = 1 for the 32-element types. Byte layouts are ggml's. Blocks are
// the weight operand's: every load goes through weight_base (wld_*, common.glsl).

#define MIN_NONE 0u
#define MIN_ADD 1u
#define MIN_SUB 2u

const int iq4nl_levels[16] = int[16](-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);

uint block_elems(uint dt) { return dt >= DT_Q2_K && dt != DT_IQ4_NL ? 256u : 32u; }

uint block_bytes(uint dt) {
  switch (dt) {
  case DT_Q8_0: return 34u;
  case DT_Q4_0: return 18u;
  case DT_Q4_1: return 20u;
  case DT_Q5_0: return 22u;
  case DT_Q5_1: return 24u;
  case DT_Q2_K: return 84u;
  case DT_Q3_K: return 110u;
  case DT_Q4_K: return 144u;
  case DT_Q5_K: return 176u;
  case DT_Q6_K: return 210u;
  case DT_IQ4_NL: return 18u;
  default: return 136u; // IQ4_XS
  }
}

uint min_kind(uint dt) {
  if (dt == DT_Q4_1 || dt == DT_Q5_1) return MIN_ADD;
  if (dt == DT_Q2_K || dt == DT_Q4_K || dt == DT_Q5_K) return MIN_SUB;
  return MIN_NONE;
}

struct Slice {
  int q[32];
  int sc[2];
  int mn[2];
  float d, m;
};

// Blocks are 2-byte aligned (every block size is even): bytes are read in
// pairs, half the loads of reading them one by one.
void q4_nibbles(uint qs, int bias, inout Slice s) {
  for (uint j = 0u; j < 16u; j += 2u) {
    uint p = wld_u16(qs + j);
    s.q[j] = int(p & 15u) - bias;
    s.q[j + 1u] = int((p >> 8) & 15u) - bias;
    s.q[j + 16u] = int((p >> 4) & 15u) - bias;
    s.q[j + 17u] = int(p >> 12) - bias;
  }
}

void q5_nibbles(uint qh4, uint qs, int bias, inout Slice s) {
  uint qh = wld_u16(qh4) | wld_u16(qh4 + 2u) << 16;
  for (uint j = 0u; j < 16u; j += 2u) {
    uint p = wld_u16(qs + j);
    for (uint k = 0u; k < 2u; k++) {
      uint b = (p >> (8u * k)) & 255u;
      s.q[j + k] = int((b & 15u) | ((qh >> (j + k)) & 1u) << 4) - bias;
      s.q[j + k + 16u] = int((b >> 4) | ((qh >> (j + k + 16u)) & 1u) << 4) - bias;
    }
  }
}

void iq4_nibbles(uint qs, inout Slice s) {
  for (uint j = 0u; j < 16u; j += 2u) {
    uint p = wld_u16(qs + j);
    s.q[j] = iq4nl_levels[p & 15u];
    s.q[j + 1u] = iq4nl_levels[(p >> 8) & 15u];
    s.q[j + 16u] = iq4nl_levels[(p >> 4) & 15u];
    s.q[j + 17u] = iq4nl_levels[p >> 12];
  }
}

// 32 bytes from a (2-byte aligned) into bytes[0..31] of the slice's q, unsigned.
void bytes32(uint a, inout Slice s) {
  for (uint j = 0u; j < 32u; j += 2u) {
    uint p = wld_u16(a + j);
    s.q[j] = int(p & 255u), s.q[j + 1u] = int(p >> 8);
  }
}

int q3_k_scale(uint sc, uint i) {
  uint low = i < 8u ? wld_u8(sc + i) & 15u : wld_u8(sc + i - 8u) >> 4;
  uint high = (wld_u8(sc + 8u + i % 4u) >> (2u * (i / 4u))) & 3u;
  return int(low | high << 4) - 32;
}

void k4_scale_min(uint q, uint j, out int sc, out int mn) {
  if (j < 4u) {
    sc = int(wld_u8(q + j) & 63u);
    mn = int(wld_u8(q + j + 4u) & 63u);
  } else {
    sc = int((wld_u8(q + j + 4u) & 15u) | (wld_u8(q + j - 4u) >> 6) << 4);
    mn = int((wld_u8(q + j + 4u) >> 4) | (wld_u8(q + j) >> 6) << 4);
  }
}

// Slice t of the block at guest byte address a.
void unpack_slice(uint dt, uint a, uint t, out Slice s) {
  s.sc[0] = 1, s.sc[1] = 1, s.mn[0] = 0, s.mn[1] = 0, s.m = 0.0;
  if (dt == DT_Q8_0) {
    s.d = wld_f16(a);
    bytes32(a + 2u, s);
    for (uint e = 0u; e < 32u; e++) s.q[e] = (s.q[e] ^ 128) - 128; // int8
  } else if (dt == DT_Q4_0) {
    s.d = wld_f16(a);
    q4_nibbles(a + 2u, 8, s);
  } else if (dt == DT_Q4_1) {
    s.d = wld_f16(a), s.m = wld_f16(a + 2u);
    q4_nibbles(a + 4u, 0, s);
  } else if (dt == DT_Q5_0) {
    s.d = wld_f16(a);
    q5_nibbles(a + 2u, a + 6u, 16, s);
  } else if (dt == DT_Q5_1) {
    s.d = wld_f16(a), s.m = wld_f16(a + 2u);
    q5_nibbles(a + 4u, a + 8u, 0, s);
  } else if (dt == DT_IQ4_NL) {
    s.d = wld_f16(a);
    iq4_nibbles(a + 2u, s);
  } else if (dt == DT_Q2_K) {
    s.d = wld_f16(a + 80u), s.m = wld_f16(a + 82u);
    uint qs = a + 16u + 32u * (t / 4u), shift = 2u * (t % 4u);
    bytes32(qs, s);
    for (uint e = 0u; e < 32u; e++) s.q[e] = (s.q[e] >> shift) & 3;
    uint s0 = wld_u8(a + 2u * t), s1 = wld_u8(a + 2u * t + 1u);
    s.sc[0] = int(s0 & 15u), s.sc[1] = int(s1 & 15u), s.mn[0] = int(s0 >> 4), s.mn[1] = int(s1 >> 4);
  } else if (dt == DT_Q3_K) {
    s.d = wld_f16(a + 108u);
    uint qs = a + 32u + 32u * (t / 4u), shift = 2u * (t % 4u);
    bytes32(qs, s);
    for (uint e = 0u; e < 32u; e += 2u) {
      uint hm = wld_u16(a + e) >> t;
      s.q[e] = ((s.q[e] >> shift) & 3) - ((hm & 1u) != 0u ? 0 : 4);
      s.q[e + 1u] = ((s.q[e + 1u] >> shift) & 3) - (((hm >> 8) & 1u) != 0u ? 0 : 4);
    }
    s.sc[0] = q3_k_scale(a + 96u, 2u * t), s.sc[1] = q3_k_scale(a + 96u, 2u * t + 1u);
  } else if (dt == DT_Q4_K || dt == DT_Q5_K) {
    bool five = dt == DT_Q5_K;
    s.d = wld_f16(a), s.m = wld_f16(a + 2u);
    uint qs = a + (five ? 48u : 16u) + 32u * (t / 2u), shift = 4u * (t % 2u);
    bytes32(qs, s);
    for (uint e = 0u; e < 32u; e += 2u) {
      uint h = five ? wld_u16(a + 16u + e) >> t : 0u;
      s.q[e] = ((s.q[e] >> shift) & 15) | int(h & 1u) << 4;
      s.q[e + 1u] = ((s.q[e + 1u] >> shift) & 15) | int((h >> 8) & 1u) << 4;
    }
    int sc, mn;
    k4_scale_min(a + 4u, t, sc, mn);
    s.sc[0] = sc, s.sc[1] = sc, s.mn[0] = mn, s.mn[1] = mn;
  } else if (dt == DT_Q6_K) {
    s.d = wld_f16(a + 208u);
    uint h = t / 4u, u = t % 4u;
    uint ql = a + 64u * h + 32u * (u % 2u), qh = a + 128u + 32u * h;
    bytes32(ql, s);
    for (uint e = 0u; e < 32u; e += 2u) {
      uint hp = wld_u16(qh + e) >> (2u * u);
      s.q[e] = (((s.q[e] >> (4u * (u / 2u))) & 15) | int(hp & 3u) << 4) - 32;
      s.q[e + 1u] = (((s.q[e + 1u] >> (4u * (u / 2u))) & 15) | int((hp >> 8) & 3u) << 4) - 32;
    }
    s.sc[0] = wld_i8(a + 192u + 2u * t), s.sc[1] = wld_i8(a + 192u + 2u * t + 1u);
  } else { // IQ4_XS
    s.d = wld_f16(a);
    uint scales_h = wld_u8(a + 2u) | wld_u8(a + 3u) << 8;
    int ls = int(((wld_u8(a + 4u + t / 2u) >> (4u * (t % 2u))) & 15u) | ((scales_h >> (2u * t)) & 3u) << 4);
    iq4_nibbles(a + 8u + 16u * t, s);
    s.sc[0] = ls - 32, s.sc[1] = ls - 32;
  }
}
