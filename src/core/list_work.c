/*
 * list_work.c: the cost of a command list from its shapes (list_work.h).
 */
#include "core/list_work.h"

#include <inttypes.h>
#include <stdio.h>

#include "core/validate.h"

static uint64_t sat_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

static uint64_t sat_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t elements(const sp_tensor *t) {
  return sat_mul(sat_mul(t->ne[0], t->ne[1]), sat_mul(t->ne[2], t->ne[3]));
}

static uint64_t cmd_flops(const sp_cmd *c) {
  switch (c->op) {
    case SP_OP_MATMUL: /* dst[N, M], K = the shared inner dimension */
      return sat_mul(2 * (uint64_t)c->src[0].ne[0], elements(&c->dst));
    case SP_OP_ATTENTION: /* dst[D, Hq, T] against C cache rows, twice */
      return sat_mul(4 * (uint64_t)c->src[1].ne[2], elements(&c->dst));
    case SP_OP_ARGMAX: return elements(&c->src[0]); /* one comparison per value */
    case SP_OP_TOPK: return sat_mul(4, elements(&c->src[0])); /* a few passes over each row */
    case SP_OP_NOP: return 0;
    default: return sat_mul(8, elements(&c->dst));
  }
}

void sp_list_work_add(sp_list_work *w, const sp_cmd *cmd) {
  w->flops = sat_add(w->flops, cmd_flops(cmd));
  const sp_tensor *slots[1 + SP_MAX_SRC] = {&cmd->dst, &cmd->src[0], &cmd->src[1], &cmd->src[2], &cmd->src[3]};
  for (int i = 0; i < 1 + SP_MAX_SRC; i++)
    if (slots[i]->dtype != SP_DTYPE_NONE) w->bytes = sat_add(w->bytes, sp_tensor_extent(slots[i]));
}

sp_status sp_list_work_check(const sp_list_work *w, uint64_t max_flops, uint64_t max_bytes,
                             uint32_t index, char *msg, size_t msg_cap) {
  if (w->flops > max_flops) {
    snprintf(msg, msg_cap,
             "list: commands 0..%" PRIu32 " need %" PRIu64 " FLOPs, over this actor's cap of %" PRIu64
             " per list (max_list_flops); split the work over several submits",
             index, w->flops, max_flops);
    return SP_E_LIMIT;
  }
  if (w->bytes > max_bytes) {
    snprintf(msg, msg_cap,
             "list: commands 0..%" PRIu32 " touch %" PRIu64 " bytes, over this actor's cap of %" PRIu64
             " per list (max_list_bytes); split the work over several submits",
             index, w->bytes, max_bytes);
    return SP_E_LIMIT;
  }
  return SP_OK;
}
