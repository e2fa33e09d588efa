/* abi_annotate.c: the `annotate` import (see annotations.h). */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "annotations.h"
#include "runtime_impl.h"
#include "validate.h"

const sp_annotation *sp_annotation_find(const sp_annotation_table *t, const char *name) {
  for (uint32_t i = 0; i < t->count; i++)
    if (!strcmp(t->items[i].name, name)) return &t->items[i];
  return NULL;
}

void sp_annotation_table_free(sp_annotation_table *t) {
  free(t->items);
  t->items = NULL, t->count = t->cap = 0;
}

static bool valid_name(const char *name, uint32_t len) {
  if (len == 0 || len > SP_ANNOTATION_NAME_MAX) return false;
  for (uint32_t i = 0; i < len; i++)
    if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i])) return false;
  return true;
}

static sp_status annotate(sp_actor_t *actor, uint32_t name_addr, uint32_t name_len, uint32_t tensor_addr) {
  sp_region *r = actor->region;
  if (!r || (uint64_t)name_addr + name_len > r->committed || (uint64_t)tensor_addr + sizeof(sp_tensor) > r->committed)
    return sp_abi_fail(actor, SP_E_BOUNDS, "annotate: name or tensor descriptor outside committed memory");
  const char *name = (const char *)r->base + name_addr;
  if (!valid_name(name, name_len))
    return sp_abi_fail(actor, SP_E_PARAM, "annotate: names are 1..%d bytes of letters, digits, '.', '_' and '-'",
                       SP_ANNOTATION_NAME_MAX);
  /* The same checks as any command's tensor: bounds, dtype, alignment. */
  sp_tensor tensor;
  memcpy(&tensor, r->base + tensor_addr, sizeof tensor);
  char msg[256];
  sp_validate_ctx ctx = {r->committed, 0, 0, 1};
  sp_status st = sp_validate_tensor(&ctx, &tensor, "tensor", msg, sizeof msg);
  if (st) return sp_abi_fail(actor, st, "annotate: %s", msg);
  sp_annotation_table *t = &actor->annotations;
  char key[SP_ANNOTATION_NAME_MAX + 1];
  memcpy(key, name, name_len), key[name_len] = '\0';
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
