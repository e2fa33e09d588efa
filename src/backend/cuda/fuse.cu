/*
 * fuse.cu: the fusion planner (see fuse.h). Host code only.
 *
 * Every rule below states when the fused launch is equivalent to the
 * commands one by one. The fused kernels compute each element with the
 * same arithmetic as the single ones, so equivalence is about aliasing: a
 * fused launch reads all its inputs before (or while) it writes, where the
 * separate commands would have seen each other's writes.
 */
#include "backend/cuda/fuse.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_common.cuh"

extern "C" {
#include "core/dtype.h"
}

#define SP_FUSE_MAX_NORM 8192 /* rmsnorm rows up to 1024 threads x 8 values */

uint64_t sp_cu_extent(const sp_tensor *t) {
  uint64_t e = sp_dtype_row_bytes(sp_dtype_get(t->dtype), t->ne[0]);
  for (int d = 1; d < 4; d++) e += (uint64_t)(t->ne[d] - 1) * t->nb[d - 1];
  return e;
}

static bool same(const sp_tensor *a, const sp_tensor *b) { return !memcmp(a, b, sizeof *a); }

static bool disjoint(const sp_tensor *a, const sp_tensor *b) {
  if (!a->dtype || !b->dtype) return true;
  uint64_t ae = sp_cu_extent(a), be = sp_cu_extent(b);
  return (uint64_t)a->offset + ae <= b->offset || (uint64_t)b->offset + be <= a->offset;
}

/* In place or apart: the two ways an elementwise op may alias its source. */
static bool same_or_disjoint(const sp_tensor *a, const sp_tensor *b) { return same(a, b) || disjoint(a, b); }

/* f32 rows one after another, no third or fourth dimension. */
static bool dense_rows(const sp_tensor *t) {
  return t->dtype == SP_DTYPE_F32 && t->ne[2] == 1 && t->ne[3] == 1 && t->nb[0] == (uint64_t)t->ne[0] * 4;
}

static bool same_shape(const sp_tensor *a, const sp_tensor *b) { return !memcmp(a->ne, b->ne, sizeof a->ne); }

/* cmd is a matmul that quantizes its input, and that input is y. */
static bool quantizing_matmul_of(const sp_cmd *cmd, const sp_tensor *y) {
  return cmd->op == SP_OP_MATMUL && sp_cu_matmul_quantizes(cmd->src[0].dtype, cmd->src[1].ne[1]) &&
         same(&cmd->src[1], y) && dense_rows(y) && y->ne[0] % SP_CU_QK == 0;
}

static bool next_quantizes(const sp_cmd *cmds, uint32_t j, uint32_t count, const sp_tensor *y) {
  return j < count && quantizing_matmul_of(&cmds[j], y);
}

/* b may run together with a: neither writes what the other reads or writes. */
static bool independent(const sp_cmd *a, const sp_cmd *b) {
  if (!disjoint(&a->dst, &b->dst)) return false;
  for (int s = 0; s < SP_MAX_SRC; s++)
    if (!disjoint(&a->dst, &b->src[s]) || !disjoint(&b->dst, &a->src[s])) return false;
  return true;
}

/* ---- matrix-vector groups ---- */

static bool joins_group(const sp_cmd *first, const sp_cmd *c, const sp_cmd *members, uint32_t n) {
  if (c->op != SP_OP_MATMUL || !same(&c->src[1], &first->src[1]) || c->src[0].dtype != first->src[0].dtype)
    return false;
  if (!disjoint(&c->dst, &c->src[1])) return false;
  for (uint32_t k = 0; k < n; k++)
    if (!disjoint(&c->dst, &members[k].dst) || !disjoint(&c->dst, &members[k].src[0]) ||
        !disjoint(&members[k].dst, &c->src[0]))
      return false;
  return true;
}

static sp_cu_fusion plan_matmul(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  sp_cu_fusion f = {SP_FUSE_NONE, 1, false, false};
  const sp_cmd *first = &cmds[i];
  if (!sp_cu_matmul_quantizes(first->src[0].dtype, first->src[1].ne[1]) || !disjoint(&first->dst, &first->src[1]))
    return f;
  uint32_t n = 1;
  while (n < SP_CU_MAX_GROUP && i + n < count && joins_group(first, &cmds[i + n], first, n)) n++;
  if (n == 1) return f;
  f.kind = SP_FUSE_MATMUL_GROUP, f.count = n, f.paired = true;
  for (uint32_t k = 1; k < n; k++) f.paired = f.paired && cmds[i + k].src[0].ne[1] == first->src[0].ne[1];
  return f;
}

/* ---- norms and gates that feed a matmul ---- */

static bool norm_fits(const sp_cmd *norm) {
  const sp_tensor *y = &norm->dst, *x = &norm->src[0];
  return dense_rows(y) && dense_rows(x) && same_shape(x, y) && y->ne[0] <= SP_FUSE_MAX_NORM &&
         same_or_disjoint(y, x) && disjoint(y, &norm->src[1]);
}

static sp_cu_fusion plan_add_rmsnorm(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  sp_cu_fusion f = {SP_FUSE_NONE, 1, false, false};
  const sp_cmd *add = &cmds[i], *norm = i + 1 < count ? &cmds[i + 1] : NULL;
  if (!norm || norm->op != SP_OP_RMSNORM || !same(&norm->src[0], &add->dst) || !norm_fits(norm)) return f;
  const sp_tensor *x = &add->dst, *a = &add->src[0], *b = &add->src[1];
  if (!dense_rows(a) || !dense_rows(b) || !same_shape(a, x) || !same_shape(b, x)) return f;
  if (!same_or_disjoint(x, a) || !disjoint(x, b)) return f;
  if (!disjoint(&norm->dst, x) || !disjoint(&norm->dst, a) || !disjoint(&norm->dst, b) || !disjoint(&norm->src[1], x))
    return f;
  f.kind = SP_FUSE_ADD_RMSNORM, f.count = 2;
  f.quantize = next_quantizes(cmds, i + 2, count, &norm->dst);
  return f;
}

/* Gemma's post-norm: p = rmsnorm(p) in place, x = x + p, y = rmsnorm(x)
 * (cmds[i + 1, i + 3) an add-then-rmsnorm): p's norm touches nothing the
 * other two read or write except p, which the add reads after it. */
static bool norm_feeds_add(const sp_cmd *cmds, uint32_t i, const sp_cu_fusion *rest) {
  const sp_cmd *pre = &cmds[i], *add = &cmds[i + 1], *norm = &cmds[i + 2];
  const sp_tensor *p = &pre->dst;
  if (rest->kind != SP_FUSE_ADD_RMSNORM || !same(p, &pre->src[0]) || !same(p, &add->src[1])) return false;
  if (!same_shape(p, &add->dst)) return false;
  const sp_tensor *others[] = {&add->dst, &add->src[0], &norm->dst, &norm->src[1]};
  for (size_t k = 0; k < sizeof others / sizeof others[0]; k++)
    if (!disjoint(p, others[k]) || !disjoint(&pre->src[1], others[k])) return false;
  return disjoint(&pre->src[1], p);
}

/* Two norms in a row (a layer's q and k heads), rows of one width, the
 * second not feeding a matmul (that one wants its quantizing launch). */
static bool norm_pair(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  const sp_cmd *a = &cmds[i], *b = i + 1 < count ? &cmds[i + 1] : NULL;
  return b && b->op == SP_OP_RMSNORM && norm_fits(b) && a->dst.ne[0] == b->dst.ne[0] && independent(a, b) &&
         !next_quantizes(cmds, i + 2, count, &b->dst);
}

static sp_cu_fusion plan_rmsnorm(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  sp_cu_fusion f = {SP_FUSE_NONE, 1, false, false};
  if (!norm_fits(&cmds[i])) return f;
  if (i + 2 < count && cmds[i + 1].op == SP_OP_ADD) {
    sp_cu_fusion rest = plan_add_rmsnorm(cmds, i + 1, count);
    if (norm_feeds_add(cmds, i, &rest)) {
      f.kind = SP_FUSE_NORM_ADD_RMSNORM, f.count = 3, f.quantize = rest.quantize;
      return f;
    }
  }
  if (norm_pair(cmds, i, count)) {
    f.kind = SP_FUSE_RMSNORM_PAIR, f.count = 2;
    return f;
  }
  f.kind = SP_FUSE_RMSNORM;
  f.quantize = next_quantizes(cmds, i + 1, count, &cmds[i].dst);
  return f;
}

static sp_cu_fusion plan_gate(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  sp_cu_fusion f = {SP_FUSE_NONE, 1, false, false};
  const sp_cmd *c = &cmds[i];
  const sp_tensor *y = &c->dst, *g = &c->src[0], *u = &c->src[1];
  if (!next_quantizes(cmds, i + 1, count, y)) return f;
  if (!dense_rows(g) || !dense_rows(u) || !same_shape(g, y) || !same_shape(u, y)) return f;
  if (!same_or_disjoint(y, g) || !disjoint(y, u)) return f;
  f.kind = SP_FUSE_GATE, f.quantize = true;
  return f;
}

/* Attention whose output [D, Hq, T] the next matmul reads as [D * Hq, T]. */
static sp_cu_fusion plan_attention(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  sp_cu_fusion f = {SP_FUSE_NONE, 1, false, false};
  const sp_tensor *d = &cmds[i].dst, *k = &cmds[i].src[1], *v = &cmds[i].src[2];
  uint32_t D = d->ne[0], Hq = d->ne[1], T = d->ne[2];
  uintptr_t bits = (uintptr_t)(k->offset | k->nb[0] | k->nb[1] | v->offset | v->nb[0] | v->nb[1]);
  if (D % 64 || !sp_cu_attention_fast(k->dtype, v->dtype, k->ne[0], bits)) return f;
  if (d->dtype != SP_DTYPE_F32 || d->ne[3] != 1 || d->nb[0] != (uint64_t)D * 4 || d->nb[1] != (uint64_t)D * Hq * 4)
    return f;
  const sp_cmd *next = i + 1 < count ? &cmds[i + 1] : NULL;
  if (!next || next->op != SP_OP_MATMUL || !sp_cu_matmul_quantizes(next->src[0].dtype, next->src[1].ne[1])) return f;
  const sp_tensor *x = &next->src[1];
  if (x->offset != d->offset || !dense_rows(x) || x->ne[0] != D * Hq || x->ne[1] != T) return f;
  f.kind = SP_FUSE_ATTENTION, f.quantize = true;
  return f;
}

/* ---- independent pairs and groups ---- */

static sp_cu_fusion plan_pair(const sp_cmd *cmds, uint32_t i, uint32_t count, sp_cu_fusion_kind kind) {
  sp_cu_fusion f = {SP_FUSE_NONE, 1, false, false};
  const sp_cmd *a = &cmds[i], *b = i + 1 < count ? &cmds[i + 1] : NULL;
  if (!b || b->op != a->op || !same(&a->src[1], &b->src[1]) || !independent(a, b)) return f;
  if (a->op == SP_OP_ROPE) {
    if (!same(&a->src[2], &b->src[2]) || memcmp(a->param, b->param, sizeof a->param)) return f;
    if (!same_or_disjoint(&a->dst, &a->src[0]) || !same_or_disjoint(&b->dst, &b->src[0])) return f;
    if (a->dst.ne[0] != b->dst.ne[0] || a->dst.ne[2] != b->dst.ne[2] || a->dst.ne[3] != 1 || b->dst.ne[3] != 1) return f;
  }
  f.kind = kind, f.count = 2;
  return f;
}

/* After a rope pair (q, k) at i: set_rows of k's rows and then of v's rows
 * into f16 caches, at the ropes' positions, touching nothing the pair
 * touches except k, which it reads as [D * Hk, T] after the rotation. */
static bool cache_writes_follow(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  if (i + 3 >= count) return false;
  const sp_cmd *q = &cmds[i], *k = &cmds[i + 1], *ks = &cmds[i + 2], *vs = &cmds[i + 3];
  if (ks->op != SP_OP_SET_ROWS || vs->op != SP_OP_SET_ROWS) return false;
  if (!same(&ks->src[1], &q->src[1]) || !same(&vs->src[1], &q->src[1])) return false;
  const sp_tensor *kd = &k->dst, *kx = &ks->src[0], *vx = &vs->src[0];
  uint32_t D = kd->ne[0], width = D * kd->ne[1], T = kd->ne[2];
  if (kd->nb[0] != (uint64_t)D * 4 || kd->nb[1] != (uint64_t)width * 4) return false; /* k dense */
  if (kx->offset != kd->offset || !dense_rows(kx) || kx->ne[0] != width || kx->ne[1] != T) return false;
  if (!dense_rows(vx) || vx->ne[0] != width || vx->ne[1] != T) return false;
  for (const sp_cmd *s = ks; s <= vs; s++)
    if (s->dst.dtype != SP_DTYPE_F16 || s->dst.ne[0] != width || s->dst.ne[2] != 1 || s->dst.ne[3] != 1) return false;
  const sp_tensor *reads[] = {&q->src[0], &k->src[0], &q->src[1], &q->src[2], vx, &q->dst, &k->dst};
  for (const sp_cmd *s = ks; s <= vs; s++)
    for (size_t r = 0; r < sizeof reads / sizeof reads[0]; r++)
      if (!disjoint(&s->dst, reads[r])) return false;
  return disjoint(&ks->dst, &vs->dst) && disjoint(vx, &q->dst) && disjoint(vx, &k->dst);
}

/* dst += src1, in place, src1 one dense f32 row as wide as dst's rows. */
static bool adds_bias_row(const sp_cmd *c) {
  const sp_tensor *d = &c->dst, *b = &c->src[1];
  return c->op == SP_OP_ADD && same(d, &c->src[0]) && d->dtype == SP_DTYPE_F32 && d->nb[0] >= (uint64_t)d->ne[0] * 4 &&
         dense_rows(b) && b->ne[1] == 1 && b->ne[0] == d->ne[0] && disjoint(d, b);
}

/* Consecutive bias adds (a layer's q, k and v) none of which touches what
 * another writes; anything else: the add's own plan. */
static sp_cu_fusion plan_add(const sp_cmd *cmds, uint32_t i, uint32_t count) {
  sp_cu_fusion f = plan_add_rmsnorm(cmds, i, count);
  if (f.kind != SP_FUSE_NONE || !adds_bias_row(&cmds[i])) return f;
  uint32_t n = 1;
  for (; n < SP_CU_MAX_BIAS && i + n < count && adds_bias_row(&cmds[i + n]); n++) {
    bool apart = true;
    for (uint32_t k = 0; k < n; k++) apart = apart && independent(&cmds[i + k], &cmds[i + n]);
    if (!apart) break;
  }
  if (n > 1) f.kind = SP_FUSE_BIAS_ROWS, f.count = n;
  return f;
}

sp_cu_fusion sp_cu_fuse_plan(const sp_cmd *cmds, uint32_t i, uint32_t count, bool enabled) {
  sp_cu_fusion none = {SP_FUSE_NONE, 1, false, false};
  if (!enabled) return none;
  switch (cmds[i].op) {
  case SP_OP_MATMUL: return plan_matmul(cmds, i, count);
  case SP_OP_ADD: return plan_add(cmds, i, count);
  case SP_OP_RMSNORM: return plan_rmsnorm(cmds, i, count);
  case SP_OP_SWIGLU:
  case SP_OP_GEGLU: return plan_gate(cmds, i, count);
  case SP_OP_ATTENTION: return plan_attention(cmds, i, count);
  case SP_OP_ROPE: {
    sp_cu_fusion f = plan_pair(cmds, i, count, SP_FUSE_ROPE_PAIR);
    if (f.kind == SP_FUSE_ROPE_PAIR && cache_writes_follow(cmds, i, count)) f.kind = SP_FUSE_ROPE_CACHE, f.count = 4;
    return f;
  }
  case SP_OP_SET_ROWS: return plan_pair(cmds, i, count, SP_FUSE_SET_ROWS_PAIR);
  default: return none;
  }
}
