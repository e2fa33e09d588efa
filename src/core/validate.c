/*
 * validate.c: the command-list validator (rules in samepage_abi.h).
 *
 * Everything here is arithmetic on untrusted numbers, so every product and
 * sum is computed in 64 bits with explicit overflow checks, and every
 * failure names the field that caused it.
 */
#include "core/validate.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/dtype.h"
#include "core/op_rules.h"

/* Writes "cmd[i].<field>: <detail>" into msg and returns st. */
static sp_status reject(sp_status st, char *msg, size_t cap, uint32_t index, const char *field,
                        const char *detail) {
  snprintf(msg, cap, "cmd[%" PRIu32 "].%s: %s", index, field, detail);
  return st;
}

sp_status sp_validate_header(const sp_validate_ctx *ctx, const sp_cmd_list_header *hdr,
                             uint32_t *count, char *msg, size_t cap) {
  if (ctx->list_bytes < sizeof *hdr) {
    snprintf(msg, cap, "list_bytes: %" PRIu64 " is shorter than the 16-byte header",
             ctx->list_bytes);
    return SP_E_LIST;
  }
  if (hdr->magic != SP_CMD_LIST_MAGIC) {
    snprintf(msg, cap, "header.magic: 0x%08" PRIx32 " is not \"SPCL\"", hdr->magic);
    return SP_E_LIST;
  }
  if (hdr->version != SP_ABI_VERSION) {
    snprintf(msg, cap, "header.version: %u is not supported (host speaks %d)", hdr->version,
             SP_ABI_VERSION);
    return SP_E_LIST;
  }
  if (hdr->cmd_size != sizeof(sp_cmd)) {
    snprintf(msg, cap, "header.cmd_size: %u must be %zu", hdr->cmd_size, sizeof(sp_cmd));
    return SP_E_LIST;
  }
  if (hdr->dropped != 0) {
    snprintf(msg, cap,
             "header.dropped: %" PRIu32 " command(s) did not fit in the list after its %" PRIu32
             " (its storage was full); nothing ran. Size the list for every command it will hold",
             hdr->dropped, hdr->count);
    return SP_E_LIMIT;
  }
  if (hdr->count > ctx->max_cmds) {
    snprintf(msg, cap, "header.count: %" PRIu32 " commands exceeds the limit of %" PRIu32,
             hdr->count, ctx->max_cmds);
    return SP_E_LIMIT;
  }
  uint64_t expect = sizeof *hdr + (uint64_t)hdr->count * sizeof(sp_cmd);
  if (ctx->list_bytes != expect) {
    snprintf(msg, cap,
             "list_bytes: %" PRIu64 " does not match header.count %" PRIu32 " (expected %" PRIu64 ")",
             ctx->list_bytes, hdr->count, expect);
    return SP_E_LIST;
  }
  *count = hdr->count;
  return SP_OK;
}

static bool is_empty_tensor(const sp_tensor *t) {
  static const sp_tensor zero;
  return memcmp(t, &zero, sizeof zero) == 0;
}

uint64_t sp_tensor_extent(const sp_tensor *t) {
  const sp_dtype_info *info = sp_dtype_get(t->dtype);
  uint64_t extent = sp_dtype_row_bytes(info, t->ne[0]);
  for (int d = 1; d < 4; d++) extent += (uint64_t)(t->ne[d] - 1) * t->nb[d - 1];
  return extent;
}

/* Fills packed strides and computes the extent. Fails on overflow. */
static bool normalize_strides(sp_tensor *t, const sp_dtype_info *info, uint64_t *extent) {
  uint64_t span = sp_dtype_row_bytes(info, t->ne[0]); /* bytes of dims < d */
  uint64_t total = span;
  for (int d = 1; d < 4; d++) {
    uint64_t stride = t->nb[d - 1] ? t->nb[d - 1] : span;
    uint64_t step, next_span;
    if (__builtin_mul_overflow(stride, (uint64_t)(t->ne[d] - 1), &step) ||
        __builtin_add_overflow(total, step, &total))
      return false;
    if (__builtin_mul_overflow(stride, (uint64_t)t->ne[d], &next_span)) return false;
    /* A stride only matters when ne > 1, and then it must fit 32 bits. */
    if (t->ne[d] > 1 && stride > UINT32_MAX) return false;
    t->nb[d - 1] = stride <= UINT32_MAX ? (uint32_t)stride : 0;
    span = next_span;
  }
  *extent = total;
  return true;
}

/* Generic checks of one used tensor slot; normalizes it in place. */
static sp_status check_tensor(const sp_validate_ctx *ctx, sp_tensor *t, uint32_t index,
                              const char *field, char *msg, size_t cap) {
  char detail[200];
  const sp_dtype_info *info = sp_dtype_get(t->dtype);
  if (t->dtype == SP_DTYPE_NONE)
    return reject(SP_E_DTYPE, msg, cap, index, field, "required tensor is missing (dtype none)");
  if (!info) {
    snprintf(detail, sizeof detail, "unknown dtype %" PRIu32, t->dtype);
    return reject(SP_E_DTYPE, msg, cap, index, field, detail);
  }
  if (t->reserved) return reject(SP_E_PARAM, msg, cap, index, field, "reserved must be 0");
  for (int d = 0; d < 4; d++) {
    if (t->ne[d] == 0) {
      snprintf(detail, sizeof detail, "ne[%d] is 0 (extents start at 1)", d);
      return reject(SP_E_SHAPE, msg, cap, index, field, detail);
    }
  }
  if (t->ne[0] % info->block_elems) {
    snprintf(detail, sizeof detail, "ne[0] = %" PRIu32 " is not a multiple of the %s block (%u)",
             t->ne[0], info->name, info->block_elems);
    return reject(SP_E_SHAPE, msg, cap, index, field, detail);
  }
  if (t->offset % info->align || t->nb[0] % info->align || t->nb[1] % info->align ||
      t->nb[2] % info->align) {
    snprintf(detail, sizeof detail, "offset 0x%" PRIx32 " or a stride is not %u-byte aligned for %s",
             t->offset, info->align, info->name);
    return reject(SP_E_ALIGN, msg, cap, index, field, detail);
  }
  uint64_t extent;
  if (!normalize_strides(t, info, &extent)) {
    return reject(SP_E_SHAPE, msg, cap, index, field, "extent overflows 64 bits or 32-bit strides");
  }
  if (extent > ctx->committed || t->offset > ctx->committed - extent) {
    snprintf(detail, sizeof detail,
             "offset 0x%" PRIx32 " + %" PRIu64 " bytes is outside committed memory (%" PRIu64 " bytes)",
             t->offset, extent, ctx->committed);
    return reject(SP_E_BOUNDS, msg, cap, index, field, detail);
  }
  return SP_OK;
}

static bool ranges_overlap(uint64_t a, uint64_t a_len, uint64_t b, uint64_t b_len) {
  return a < b + b_len && b < a + a_len;
}

static bool same_tensor(const sp_tensor *a, const sp_tensor *b) {
  return memcmp(a, b, sizeof *a) == 0;
}

/* A destination's rows and planes must not overlap each other. */
static bool dst_self_overlaps(const sp_tensor *t) {
  uint64_t span = sp_dtype_row_bytes(sp_dtype_get(t->dtype), t->ne[0]);
  for (int d = 1; d < 4; d++) {
    if (t->ne[d] > 1 && t->nb[d - 1] < span) return true;
    span = t->ne[d] > 1 ? (uint64_t)t->nb[d - 1] * t->ne[d] : span;
  }
  return false;
}

static sp_status check_aliasing(const sp_validate_ctx *ctx, const sp_cmd *cmd,
                                const sp_op_rule *rule, uint32_t index, char *msg, size_t cap) {
  const sp_tensor *dst = &cmd->dst;
  uint64_t dst_len = sp_tensor_extent(dst);
  if (ranges_overlap(dst->offset, dst_len, ctx->list_addr, ctx->list_bytes))
    return reject(SP_E_ALIAS, msg, cap, index, "dst", "overlaps the command list itself");
  if (dst_self_overlaps(dst))
    return reject(SP_E_ALIAS, msg, cap, index, "dst", "strides make rows overlap");
  for (unsigned i = 0; i < rule->n_src; i++) {
    const sp_tensor *src = &cmd->src[i];
    if (src->dtype == SP_DTYPE_NONE) continue; /* an empty optional slot */
    if (!ranges_overlap(dst->offset, dst_len, src->offset, sp_tensor_extent(src))) continue;
    if ((rule->inplace_mask >> i & 1) && same_tensor(dst, src)) continue;
    char field[16];
    snprintf(field, sizeof field, "src[%u]", i);
    return reject(SP_E_ALIAS, msg, cap, index, field,
                  (rule->inplace_mask >> i & 1)
                      ? "overlaps dst without being the identical tensor (in place)"
                      : "overlaps dst (this op cannot run in place)");
  }
  return SP_OK;
}

static sp_status check_slots(const sp_validate_ctx *ctx, sp_cmd *cmd, const sp_op_rule *rule,
                             uint32_t index, char *msg, size_t cap) {
  sp_status st;
  if (rule->has_dst) {
    if ((st = check_tensor(ctx, &cmd->dst, index, "dst", msg, cap))) return st;
  } else if (!is_empty_tensor(&cmd->dst)) {
    return reject(SP_E_PARAM, msg, cap, index, "dst", "must be empty for this op");
  }
  for (unsigned i = 0; i < SP_MAX_SRC; i++) {
    char field[16];
    snprintf(field, sizeof field, "src[%u]", i);
    bool optional = rule->optional_mask >> i & 1;
    if (i < rule->n_src && !(optional && is_empty_tensor(&cmd->src[i]))) {
      if ((st = check_tensor(ctx, &cmd->src[i], index, field, msg, cap))) return st;
    } else if (!is_empty_tensor(&cmd->src[i])) {
      return reject(SP_E_PARAM, msg, cap, index, field, "must be empty (all zero) for this op");
    }
  }
  for (unsigned i = rule->n_params; i < SP_MAX_PARAMS; i++) {
    if (cmd->param[i]) {
      char field[16];
      snprintf(field, sizeof field, "param[%u]", i);
      return reject(SP_E_PARAM, msg, cap, index, field, "unused by this op, must be 0");
    }
  }
  return SP_OK;
}

sp_status sp_validate_cmd(const sp_validate_ctx *ctx, sp_cmd *cmd, uint32_t index, char *msg,
                          size_t cap) {
  const sp_op_rule *rule = sp_op_rule_get(cmd->op);
  char detail[200];
  if (!rule) {
    snprintf(detail, sizeof detail, "unknown op %" PRIu32, cmd->op);
    return reject(SP_E_OP, msg, cap, index, "op", detail);
  }
  if (cmd->flags) return reject(SP_E_PARAM, msg, cap, index, "flags", "must be 0");
  sp_status st = check_slots(ctx, cmd, rule, index, msg, cap);
  if (st) return st;
  if ((st = rule->check(cmd, detail, sizeof detail))) {
    snprintf(msg, cap, "cmd[%" PRIu32 "] (%s).%s", index, rule->name, detail);
    return st;
  }
  if (rule->has_dst) return check_aliasing(ctx, cmd, rule, index, msg, cap);
  return SP_OK;
}

sp_status sp_validate_frozen(const sp_range *frozen, uint32_t n, const sp_cmd *cmd, uint32_t index,
                             char *msg, size_t cap) {
  if (cmd->dst.dtype == SP_DTYPE_NONE) return SP_OK;
  uint64_t dst_len = sp_tensor_extent(&cmd->dst);
  for (uint32_t f = 0; f < n; f++) {
    if (!ranges_overlap(cmd->dst.offset, dst_len, frozen[f].addr, frozen[f].len)) continue;
    char detail[160];
    snprintf(detail, sizeof detail, "overlaps the frozen (immutable) range [0x%" PRIx64 ", +%" PRIu64 ")",
             frozen[f].addr, frozen[f].len);
    return reject(SP_E_ALIAS, msg, cap, index, "dst", detail);
  }
  return SP_OK;
}

sp_status sp_validate_device_local(const sp_range *local, uint32_t n, const sp_cmd *cmd, uint32_t index,
                                   char *msg, size_t cap) {
  static const char *names[1 + SP_MAX_SRC] = {"dst", "src[0]", "src[1]", "src[2]", "src[3]"};
  const sp_tensor *slots[1 + SP_MAX_SRC] = {&cmd->dst, &cmd->src[0], &cmd->src[1], &cmd->src[2], &cmd->src[3]};
  for (int i = 0; i < 1 + SP_MAX_SRC && n; i++) {
    if (slots[i]->dtype == SP_DTYPE_NONE) continue;
    uint64_t at = slots[i]->offset, len = sp_tensor_extent(slots[i]);
    for (uint32_t r = 0; r < n; r++) {
      bool inside = at >= local[r].addr && at + len <= local[r].addr + local[r].len;
      if (inside || !ranges_overlap(at, len, local[r].addr, local[r].len)) continue;
      char detail[200];
      snprintf(detail, sizeof detail,
               "[0x%" PRIx64 ", +%" PRIu64 ") straddles the boundary of the device-local range [0x%" PRIx64 ", +%" PRIu64
               "): a tensor must lie wholly inside or wholly outside it",
               at, len, local[r].addr, local[r].len);
      return reject(SP_E_BOUNDS, msg, cap, index, names[i], detail);
    }
  }
  return SP_OK;
}

sp_status sp_validate_tensor(const sp_validate_ctx *ctx, sp_tensor *t, const char *field, char *msg, size_t cap) {
  return check_tensor(ctx, t, 0, field, msg, cap);
}
