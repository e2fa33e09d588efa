/* op_rules.c: shape and dtype relations of each op (see enum sp_op). */
#include "op_rules.h"

#include <stdio.h>

#include "dtype.h"

static bool is_weight_dtype(uint32_t dtype) {
  return dtype == SP_DTYPE_F32 || dtype == SP_DTYPE_F16 || dtype == SP_DTYPE_BF16 ||
         dtype == SP_DTYPE_Q8_0 || dtype == SP_DTYPE_Q4_0 || dtype == SP_DTYPE_Q4_1;
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

static const sp_op_rule op_rules[SP_OP_COUNT] = {
    [SP_OP_NOP] = {"nop", false, 0, 0, 0, check_nop},
    [SP_OP_MATMUL] = {"matmul", true, 2, 0, 0, check_matmul},
    [SP_OP_ADD] = {"add", true, 2, 0, 0x3, check_binary},
    [SP_OP_MUL] = {"mul", true, 2, 0, 0x3, check_binary},
    [SP_OP_SCALE] = {"scale", true, 1, 1, 0x1, check_scale},
};

const sp_op_rule *sp_op_rule_get(uint32_t op) {
  return op < SP_OP_COUNT ? &op_rules[op] : NULL;
}
