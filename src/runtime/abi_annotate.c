/* abi_annotate.c: the `annotate` import (see annotations.h). */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/annotations.h"
#include "core/dtype.h"
#include "runtime/runtime_impl.h"
#include "core/validate.h"

const sp_annotation *sp_annotation_find(const sp_annotation_table *t, const char *name) {
  for (uint32_t i = 0; i < t->count; i++)
    if (!strcmp(t->items[i].name, name)) return &t->items[i];
  return NULL;
}

void sp_annotation_table_free(sp_annotation_table *t) {
  free(t->items);
  t->items = NULL, t->count = t->cap = 0;
}

bool sp_annotation_name_valid(const char *name, size_t len) {
  if (len == 0 || len > SP_ANNOTATION_NAME_MAX) return false;
  for (size_t i = 0; i < len; i++) {
    char c = name[i]; /* not strchr("._-", c): it matches a NUL (the terminator) */
    if (!isalnum((unsigned char)c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

/* Whether rows or planes of a normalized tensor overlap each other (as a
 * command's destination may not). */
static bool rows_overlap(const sp_tensor *t) {
  uint64_t span = sp_dtype_row_bytes(sp_dtype_get(t->dtype), t->ne[0]); /* bytes of dims < d */
  for (int d = 1; d < 4; d++) {
    if (t->ne[d] > 1 && t->nb[d - 1] < span) return true;
    if (t->ne[d] > 1) span = (uint64_t)t->nb[d - 1] * t->ne[d];
  }
  return false;
}

sp_status sp_annotation_check_tensor(uint64_t memory, sp_tensor *t, char *msg, size_t cap) {
  sp_validate_ctx ctx = {memory, 0, 0, 1};
  char detail[256];
  sp_status st = sp_validate_tensor(&ctx, t, "tensor", detail, sizeof detail);
  if (st) {
    const char *field = strstr(detail, "tensor: "); /* past sp_validate_tensor's "cmd[0]." */
    snprintf(msg, cap, "%s", field ? field : detail);
    return st;
  }
  if (rows_overlap(t)) {
    snprintf(msg, cap, "tensor: strides nb = [%" PRIu32 ", %" PRIu32 ", %" PRIu32 "] make rows overlap", t->nb[0],
             t->nb[1], t->nb[2]);
    return SP_E_ALIAS;
  }
  return SP_OK;
}

static sp_status annotate(sp_actor_t *actor, uint32_t name_addr, uint32_t name_len, uint32_t tensor_addr) {
  sp_region *r = actor->region;
  if (!r || (uint64_t)name_addr + name_len > r->committed || (uint64_t)tensor_addr + sizeof(sp_tensor) > r->committed)
    return sp_abi_fail(actor, SP_E_BOUNDS, "annotate: name or tensor descriptor outside committed memory");
  /* Copied out first: the checks and the table see the same bytes. */
  char key[SP_ANNOTATION_NAME_MAX + 1] = "";
  if (name_len <= SP_ANNOTATION_NAME_MAX) memcpy(key, r->base + name_addr, name_len), key[name_len] = '\0';
  if (!sp_annotation_name_valid(key, name_len))
    return sp_abi_fail(actor, SP_E_PARAM, "annotate: names are 1..%d bytes of letters, digits, '.', '_' and '-'",
                       SP_ANNOTATION_NAME_MAX);
  /* The same checks as any command's tensor (bounds, dtype, alignment),
   * and rows that do not overlap, as a destination's: tools write it. */
  sp_tensor tensor;
  memcpy(&tensor, r->base + tensor_addr, sizeof tensor);
  char msg[256];
  sp_status st = sp_annotation_check_tensor(r->committed, &tensor, msg, sizeof msg);
  if (st) return sp_abi_fail(actor, st, "annotate: %s", msg);
  sp_annotation_table *t = &actor->annotations;
  sp_annotation *slot = (sp_annotation *)sp_annotation_find(t, key);
  if (!slot) {
    if (t->count == SP_MAX_ANNOTATIONS) return sp_abi_fail(actor, SP_E_LIMIT, "annotate: at most %d names", SP_MAX_ANNOTATIONS);
    if (t->count == t->cap) {
      uint32_t cap = t->cap ? t->cap * 2 : 32;
      sp_annotation *grown = realloc(t->items, cap * sizeof *grown);
      if (!grown) return sp_abi_fail(actor, SP_E_LIMIT, "annotate: out of host memory");
      t->items = grown, t->cap = cap;
    }
    slot = &t->items[t->count++];
    memcpy(slot->name, key, name_len + 1);
  }
  slot->tensor = tensor;
  return SP_OK;
}

static wasm_trap_t *import_annotate(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  args[0].i32 = annotate(actor, (uint32_t)args[0].i32, (uint32_t)args[1].i32, (uint32_t)args[2].i32);
  return NULL;
}

wasmtime_error_t *sp_abi_annotate_define(wasmtime_linker_t *linker) {
  return sp_abi_define_func(linker, "annotate", "iii:i", import_annotate);
}
