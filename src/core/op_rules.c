/* op_rules.c: shape and dtype relations of each op (see enum sp_op). */
#include "core/op_rules.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/dtype.h"

/* Float and block-quantized types: what matmul and get_rows read. (A type
 * the dtype table does not know yet never gets this far.) */
static bool is_weight_dtype(uint32_t dtype) {
  switch (dtype) {
  case SP_DTYPE_F32:
  case SP_DTYPE_F16:
  case SP_DTYPE_BF16:
  case SP_DTYPE_Q8_0:
  case SP_DTYPE_Q4_0:
  case SP_DTYPE_Q4_1:
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

static bool same_shape(const sp_tensor *a, const sp_tensor *b) {
  return a->ne[0] == b->ne[0] && a->ne[1] == b->ne[1] && a->ne[2] == b->ne[2] &&
         a->ne[3] == b->ne[3];
}

static bool is_2d(const sp_tensor *t) { return t->ne[2] == 1 && t->ne[3] == 1; }

static sp_status fail(sp_status st, char *msg, size_t cap, const char *text) {
  snprintf(msg, cap, "%s", text);
  return st;
}

static sp_status require_f32(const sp_tensor *t, const char *field, char *msg, size_t cap) {
  if (t->dtype == SP_DTYPE_F32) return SP_OK;
  snprintf(msg, cap, "%s.dtype: must be f32, got %s", field, sp_dtype_name(t->dtype));
  return SP_E_DTYPE;
}

static sp_status check_nop(const sp_cmd *cmd, char *msg, size_t cap) {
  (void)cmd, (void)msg, (void)cap;
  return SP_OK;
}

/* dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T */
static sp_status check_matmul(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *w = &cmd->src[0], *x = &cmd->src[1], *d = &cmd->dst;
  sp_status st;
  if (!is_weight_dtype(w->dtype)) {
    snprintf(msg, cap, "src[0].dtype: %s is not a weight dtype", sp_dtype_name(w->dtype));
    return SP_E_DTYPE;
  }
  if ((st = require_f32(x, "src[1]", msg, cap)) || (st = require_f32(d, "dst", msg, cap))) return st;
  if (!is_2d(w) || !is_2d(x) || !is_2d(d))
    return fail(SP_E_SHAPE, msg, cap, "matmul tensors must be 2-D (ne[2] = ne[3] = 1)");
  if (w->ne[0] != x->ne[0]) {
    snprintf(msg, cap, "src[1].ne[0]: %u must equal src[0].ne[0] (K = %u)", x->ne[0], w->ne[0]);
    return SP_E_SHAPE;
  }
  if (d->ne[0] != w->ne[1]) {
    snprintf(msg, cap, "dst.ne[0]: %u must equal src[0].ne[1] (N = %u)", d->ne[0], w->ne[1]);
    return SP_E_SHAPE;
  }
  if (d->ne[1] != x->ne[1]) {
    snprintf(msg, cap, "dst.ne[1]: %u must equal src[1].ne[1] (M = %u)", d->ne[1], x->ne[1]);
    return SP_E_SHAPE;
  }
  return SP_OK;
}

/* dst = src0 (op) src1; src1 has dst's shape or is one broadcast row. */
static sp_status check_binary(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *a = &cmd->src[0], *b = &cmd->src[1], *d = &cmd->dst;
  sp_status st;
  if ((st = require_f32(d, "dst", msg, cap)) || (st = require_f32(a, "src[0]", msg, cap)) ||
      (st = require_f32(b, "src[1]", msg, cap)))
    return st;
  if (!same_shape(a, d)) return fail(SP_E_SHAPE, msg, cap, "src[0].ne: must equal dst.ne");
  bool one_row = b->ne[0] == d->ne[0] && b->ne[1] == 1 && b->ne[2] == 1 && b->ne[3] == 1;
  if (!same_shape(b, d) && !one_row)
    return fail(SP_E_SHAPE, msg, cap, "src[1].ne: must equal dst.ne or be one row of dst.ne[0]");
  return SP_OK;
}

static sp_status check_scale(const sp_cmd *cmd, char *msg, size_t cap) {
  sp_status st;
  if ((st = require_f32(&cmd->dst, "dst", msg, cap)) ||
      (st = require_f32(&cmd->src[0], "src[0]", msg, cap)))
    return st;
  if (!same_shape(&cmd->src[0], &cmd->dst))
    return fail(SP_E_SHAPE, msg, cap, "src[0].ne: must equal dst.ne");
  return SP_OK;
}

static sp_status require_dtype(const sp_tensor *t, uint32_t dtype, const char *field, char *msg,
                               size_t cap) {
  if (t->dtype == dtype) return SP_OK;
  snprintf(msg, cap, "%s.dtype: must be %s, got %s", field, sp_dtype_name(dtype),
           sp_dtype_name(t->dtype));
  return SP_E_DTYPE;
}

static bool is_float_dtype(uint32_t dtype) {
  return dtype == SP_DTYPE_F32 || dtype == SP_DTYPE_F16 || dtype == SP_DTYPE_BF16;
}

static bool is_vector(const sp_tensor *t, uint32_t n) {
  return t->ne[0] == n && t->ne[1] == 1 && t->ne[2] == 1 && t->ne[3] == 1;
}

static bool f32_bits_positive(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f > 0.0f && f < 1e30f;
}

/* dst[f32: K, M] = rows idx[i32: M] of w[W: K, V] */
static sp_status check_get_rows(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *w = &cmd->src[0], *idx = &cmd->src[1], *d = &cmd->dst;
  sp_status st;
  if (!is_weight_dtype(w->dtype)) {
    snprintf(msg, cap, "src[0].dtype: %s is not a weight dtype", sp_dtype_name(w->dtype));
    return SP_E_DTYPE;
  }
  if ((st = require_f32(d, "dst", msg, cap)) || (st = require_dtype(idx, SP_DTYPE_I32, "src[1]", msg, cap)))
    return st;
  if (!is_2d(w) || !is_2d(d)) return fail(SP_E_SHAPE, msg, cap, "get_rows tensors must be 2-D");
  if (!is_vector(idx, d->ne[1])) return fail(SP_E_SHAPE, msg, cap, "src[1].ne: must be [dst.ne[1]]");
  if (d->ne[0] != w->ne[0]) return fail(SP_E_SHAPE, msg, cap, "dst.ne[0]: must equal src[0].ne[0]");
  return SP_OK;
}

/* dst[X: K, R] rows idx[i32: M] = src[f32: K, M] */
static sp_status check_set_rows(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *src = &cmd->src[0], *idx = &cmd->src[1], *d = &cmd->dst;
  sp_status st;
  if (!is_float_dtype(d->dtype))
    return fail(SP_E_DTYPE, msg, cap, "dst.dtype: must be f32, f16 or bf16");
  if ((st = require_f32(src, "src[0]", msg, cap)) || (st = require_dtype(idx, SP_DTYPE_I32, "src[1]", msg, cap)))
    return st;
  if (!is_2d(src) || !is_2d(d)) return fail(SP_E_SHAPE, msg, cap, "set_rows tensors must be 2-D");
  if (!is_vector(idx, src->ne[1])) return fail(SP_E_SHAPE, msg, cap, "src[1].ne: must be [src[0].ne[1]]");
  if (d->ne[0] != src->ne[0]) return fail(SP_E_SHAPE, msg, cap, "dst.ne[0]: must equal src[0].ne[0]");
  return SP_OK;
}

static sp_status check_rmsnorm(const sp_cmd *cmd, char *msg, size_t cap) {
  sp_status st;
  if ((st = require_f32(&cmd->dst, "dst", msg, cap)) || (st = require_f32(&cmd->src[0], "src[0]", msg, cap)) ||
      (st = require_f32(&cmd->src[1], "src[1]", msg, cap)))
    return st;
  if (!same_shape(&cmd->src[0], &cmd->dst)) return fail(SP_E_SHAPE, msg, cap, "src[0].ne: must equal dst.ne");
  if (!is_vector(&cmd->src[1], cmd->dst.ne[0])) return fail(SP_E_SHAPE, msg, cap, "src[1].ne: must be [dst.ne[0]]");
  if (!f32_bits_positive(cmd->param[0])) return fail(SP_E_PARAM, msg, cap, "param[0]: eps must be > 0");
  return SP_OK;
}

static sp_status check_rope(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *x = &cmd->src[0], *pos = &cmd->src[1], *ff = &cmd->src[2], *d = &cmd->dst;
  sp_status st;
  if ((st = require_f32(d, "dst", msg, cap)) || (st = require_f32(x, "src[0]", msg, cap)) ||
      (st = require_dtype(pos, SP_DTYPE_I32, "src[1]", msg, cap)))
    return st;
  if (!same_shape(x, d) || d->ne[3] != 1) return fail(SP_E_SHAPE, msg, cap, "src[0].ne: must equal dst.ne [D, H, T]");
  if (!is_vector(pos, d->ne[2])) return fail(SP_E_SHAPE, msg, cap, "src[1].ne: must be [T = dst.ne[2]]");
  uint32_t n_rot = cmd->param[0];
  if (n_rot == 0 || n_rot % 2 || n_rot > d->ne[0])
    return fail(SP_E_PARAM, msg, cap, "param[0]: n_rot must be even and in 2..D");
  if (!f32_bits_positive(cmd->param[1])) return fail(SP_E_PARAM, msg, cap, "param[1]: theta must be > 0");
  if (cmd->param[2] != 0 && cmd->param[2] != 2) return fail(SP_E_PARAM, msg, cap, "param[2]: mode must be 0 or 2");
  if (!f32_bits_positive(cmd->param[3])) return fail(SP_E_PARAM, msg, cap, "param[3]: freq scale must be > 0");
  if (ff->dtype != SP_DTYPE_NONE) {
    if ((st = require_f32(ff, "src[2]", msg, cap))) return st;
    if (!is_vector(ff, n_rot / 2)) return fail(SP_E_SHAPE, msg, cap, "src[2].ne: must be [n_rot / 2]");
  }
  return SP_OK;
}

static sp_status check_attention(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *q = &cmd->src[0], *k = &cmd->src[1], *v = &cmd->src[2], *pos = &cmd->src[3],
                  *d = &cmd->dst;
  sp_status st;
  if ((st = require_f32(d, "dst", msg, cap)) || (st = require_f32(q, "src[0]", msg, cap)) ||
      (st = require_dtype(pos, SP_DTYPE_I32, "src[3]", msg, cap)))
    return st;
  if (k->dtype != SP_DTYPE_F32 && k->dtype != SP_DTYPE_F16)
    return fail(SP_E_DTYPE, msg, cap, "src[1].dtype: the k cache must be f32 or f16");
  if (v->dtype != k->dtype) return fail(SP_E_DTYPE, msg, cap, "src[2].dtype: must equal src[1].dtype");
  if (!same_shape(q, d) || d->ne[3] != 1) return fail(SP_E_SHAPE, msg, cap, "src[0].ne: must equal dst.ne [D, Hq, T]");
  if (!same_shape(k, v) || k->ne[3] != 1) return fail(SP_E_SHAPE, msg, cap, "src[2].ne: must equal src[1].ne [D, Hkv, C]");
  if (k->ne[0] != q->ne[0]) return fail(SP_E_SHAPE, msg, cap, "src[1].ne[0]: head dim must equal src[0].ne[0]");
  if (q->ne[1] % k->ne[1]) return fail(SP_E_SHAPE, msg, cap, "src[0].ne[1]: Hq must be a multiple of Hkv");
  if (!is_vector(pos, q->ne[2])) return fail(SP_E_SHAPE, msg, cap, "src[3].ne: must be [T = src[0].ne[2]]");
  if (!f32_bits_positive(cmd->param[0])) return fail(SP_E_PARAM, msg, cap, "param[0]: scale must be > 0");
  /* param[1], the sliding window, is any u32: 0 is none, and a window
   * wider than the cache only reaches row 0 (the kernels clamp). */
  return SP_OK;
}

static sp_status check_swiglu(const sp_cmd *cmd, char *msg, size_t cap) {
  sp_status st;
  if ((st = require_f32(&cmd->dst, "dst", msg, cap)) || (st = require_f32(&cmd->src[0], "src[0]", msg, cap)) ||
      (st = require_f32(&cmd->src[1], "src[1]", msg, cap)))
    return st;
  if (!same_shape(&cmd->src[0], &cmd->dst) || !same_shape(&cmd->src[1], &cmd->dst))
    return fail(SP_E_SHAPE, msg, cap, "src[0].ne and src[1].ne must equal dst.ne");
  return SP_OK;
}

/* dst = gelu(src0) * src1, all f32 of one shape. */
static sp_status check_geglu(const sp_cmd *cmd, char *msg, size_t cap) {
  sp_status st;
  if ((st = require_f32(&cmd->dst, "dst", msg, cap)) || (st = require_f32(&cmd->src[0], "src[0]", msg, cap)) ||
      (st = require_f32(&cmd->src[1], "src[1]", msg, cap)))
    return st;
  if (!same_shape(&cmd->src[0], &cmd->dst)) return fail(SP_E_SHAPE, msg, cap, "src[0].ne: must equal dst.ne");
  if (!same_shape(&cmd->src[1], &cmd->dst)) return fail(SP_E_SHAPE, msg, cap, "src[1].ne: must equal dst.ne");
  return SP_OK;
}

/* dst = cap * tanh(src0 / cap). The kernels scale by 1 / cap (as ggml
 * does), so the cap must be a normal number: a NaN, infinite, zero or
 * negative one gives nothing meaningful, and a subnormal one an infinite
 * 1 / cap (then 0 * inf = NaN). */
static sp_status check_softcap(const sp_cmd *cmd, char *msg, size_t cap) {
  sp_status st = check_scale(cmd, msg, cap);
  if (st) return st;
  float c;
  memcpy(&c, &cmd->param[0], sizeof c);
  if (!isnormal(c) || !(c > 0.0f)) {
    snprintf(msg, cap, "param[0]: cap must be a finite, normal number > 0, got %g", (double)c);
    return SP_E_PARAM;
  }
  return SP_OK;
}

static sp_status check_copy(const sp_cmd *cmd, char *msg, size_t cap) {
  if (!is_float_dtype(cmd->dst.dtype) || !is_float_dtype(cmd->src[0].dtype))
    return fail(SP_E_DTYPE, msg, cap, "copy converts between f32, f16 and bf16 only");
  if (!same_shape(&cmd->src[0], &cmd->dst)) return fail(SP_E_SHAPE, msg, cap, "src[0].ne: must equal dst.ne");
  return SP_OK;
}

/* dst[i32: M] = argmax of each row of src0[f32: N, M] */
static sp_status check_argmax(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *x = &cmd->src[0], *d = &cmd->dst;
  sp_status st;
  if ((st = require_dtype(d, SP_DTYPE_I32, "dst", msg, cap)) || (st = require_f32(x, "src[0]", msg, cap))) return st;
  if (!is_2d(x)) return fail(SP_E_SHAPE, msg, cap, "src[0]: must be 2-D [N, M]");
  if (!is_vector(d, x->ne[1])) return fail(SP_E_SHAPE, msg, cap, "dst.ne: must be [M = src[0].ne[1]]");
  return SP_OK;
}

/* dst[i32: K, M] = the K best indices of each row of src0[f32: N, M] */
static sp_status check_topk(const sp_cmd *cmd, char *msg, size_t cap) {
  const sp_tensor *x = &cmd->src[0], *d = &cmd->dst;
  sp_status st;
  if ((st = require_dtype(d, SP_DTYPE_I32, "dst", msg, cap)) || (st = require_f32(x, "src[0]", msg, cap))) return st;
  if (!is_2d(x) || !is_2d(d)) return fail(SP_E_SHAPE, msg, cap, "topk tensors must be 2-D (ne[2] = ne[3] = 1)");
  if (d->ne[1] != x->ne[1]) {
    snprintf(msg, cap, "dst.ne[1]: %u must equal src[0].ne[1] (M = %u)", d->ne[1], x->ne[1]);
    return SP_E_SHAPE;
  }
  if (d->ne[0] > x->ne[0] || d->ne[0] > SP_TOPK_MAX) {
    snprintf(msg, cap, "dst.ne[0]: K = %u must be at most src[0].ne[0] (N = %u) and %u", d->ne[0], x->ne[0],
             SP_TOPK_MAX);
    return SP_E_SHAPE;
  }
  return SP_OK;
}

static const sp_op_rule op_rules[SP_OP_COUNT] = {
    [SP_OP_NOP] = {"nop", false, 0, 0, 0, 0, check_nop},
    [SP_OP_MATMUL] = {"matmul", true, 2, 0, 0, 0, check_matmul},
    [SP_OP_ADD] = {"add", true, 2, 0, 0x3, 0, check_binary},
    [SP_OP_MUL] = {"mul", true, 2, 0, 0x3, 0, check_binary},
    [SP_OP_SCALE] = {"scale", true, 1, 1, 0x1, 0, check_scale},
    [SP_OP_GET_ROWS] = {"get_rows", true, 2, 0, 0, 0, check_get_rows},
    [SP_OP_RMSNORM] = {"rmsnorm", true, 2, 1, 0x1, 0, check_rmsnorm},
    [SP_OP_ROPE] = {"rope", true, 3, 4, 0x1, 0x4, check_rope},
    [SP_OP_ATTENTION] = {"attention", true, 4, 2, 0, 0, check_attention},
    [SP_OP_SET_ROWS] = {"set_rows", true, 2, 0, 0, 0, check_set_rows},
    [SP_OP_SWIGLU] = {"swiglu", true, 2, 0, 0x3, 0, check_swiglu},
    [SP_OP_SOFTMAX] = {"softmax", true, 1, 1, 0x1, 0, check_scale},
    [SP_OP_COPY] = {"copy", true, 1, 0, 0, 0, check_copy},
    [SP_OP_ARGMAX] = {"argmax", true, 1, 0, 0, 0, check_argmax},
    [SP_OP_GEGLU] = {"geglu", true, 2, 0, 0x1, 0, check_geglu},
    [SP_OP_SOFTCAP] = {"softcap", true, 1, 1, 0x1, 0, check_softcap},
    [SP_OP_TOPK] = {"topk", true, 1, 0, 0, 0, check_topk},
};

const sp_op_rule *sp_op_rule_get(uint32_t op) {
  /* an op of the enum whose rules are not written yet is unknown */
  return op < SP_OP_COUNT && op_rules[op].check ? &op_rules[op] : NULL;
}
