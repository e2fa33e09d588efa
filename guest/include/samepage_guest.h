/*
 * samepage_guest.h: the guest SDK, in one header.
 *
 * A guest describes work as data: it fills a command list in its own linear
 * memory with typed helpers, then submits it with one host call. Kernels run
 * in place on the guest's bytes; when sp_submit returns, the results are
 * already in the destination tensors.
 *
 *   static float w[N * K], x[K], y[N];
 *   SP_LIST(list, 8);                             // room for 8 commands
 *   sp_matmul(&list, sp_tensor_2d(y, SP_DTYPE_F32, N, 1),
 *                    sp_tensor_2d(w, SP_DTYPE_F32, K, N),
 *                    sp_tensor_2d(x, SP_DTYPE_F32, K, 1));
 *   if (sp_submit(&list) != SP_OK) sp_die("matmul");  // prints the host's reason
 *
 * Build guests with: clang --target=wasm32-wasi -O2 -I<samepage>/include
 * -I<samepage>/guest/include. Wire format and validation rules:
 * samepage_abi.h.
 */
#ifndef SAMEPAGE_GUEST_H
#define SAMEPAGE_GUEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samepage_abi.h"

/* ---- raw imports (module "samepage") ---- */

__attribute__((import_module("samepage"), import_name("abi_version"))) int32_t
sp_import_abi_version(void);
__attribute__((import_module("samepage"), import_name("submit"))) int32_t
sp_import_submit(uint32_t list_addr, uint32_t list_bytes);
__attribute__((import_module("samepage"), import_name("last_error"))) int32_t
sp_import_last_error(uint32_t buf_addr, uint32_t buf_cap);

/* The guest address of a pointer: in wasm32 it is the pointer itself. */
static inline uint32_t sp_addr(const void *ptr) { return (uint32_t)(uintptr_t)ptr; }

/* ---- tensors ---- */

/* A packed tensor of up to 4 dims at `ptr` (extents innermost first). */
static inline sp_tensor sp_tensor_4d(const void *ptr, sp_dtype dtype, uint32_t ne0, uint32_t ne1,
                                     uint32_t ne2, uint32_t ne3) {
  sp_tensor t = {sp_addr(ptr), (uint32_t)dtype, {ne0, ne1, ne2, ne3}, {0, 0, 0}, 0};
  return t;
}

/* A packed matrix: ne1 rows of ne0 elements. */
static inline sp_tensor sp_tensor_2d(const void *ptr, sp_dtype dtype, uint32_t ne0, uint32_t ne1) {
  return sp_tensor_4d(ptr, dtype, ne0, ne1, 1, 1);
}

/* A vector of ne0 elements. */
static inline sp_tensor sp_tensor_1d(const void *ptr, sp_dtype dtype, uint32_t ne0) {
  return sp_tensor_4d(ptr, dtype, ne0, 1, 1, 1);
}

/* The same tensor with an explicit row stride in bytes (a view). */
static inline sp_tensor sp_tensor_rows(sp_tensor t, uint32_t row_stride_bytes) {
  t.nb[0] = row_stride_bytes;
  return t;
}

/* ---- command lists ---- */

/* A list builder over caller-provided storage. */
typedef struct sp_list {
  sp_cmd_list_header *header; /* followed by `capacity` commands */
  uint32_t capacity;
} sp_list;

/* Declares a list `name` with room for `cap` commands in static storage. */
#define SP_LIST(name, cap)                                                      \
  static struct {                                                               \
    sp_cmd_list_header header;                                                  \
    sp_cmd cmds[cap];                                                           \
  } name##_storage;                                                             \
  sp_list name = sp_list_init(&name##_storage.header, (cap))

/* Starts an empty list in `storage`, which must hold 16 + cap * 240 bytes. */
static inline sp_list sp_list_init(sp_cmd_list_header *storage, uint32_t cap) {
  storage->magic = SP_CMD_LIST_MAGIC;
  storage->version = SP_ABI_VERSION;
  storage->cmd_size = (uint16_t)sizeof(sp_cmd);
  storage->count = 0;
  storage->reserved = 0;
  sp_list list = {storage, cap};
  return list;
}

static inline sp_cmd *sp_list_cmds(sp_list *list) { return (sp_cmd *)(list->header + 1); }

/* Appends a zeroed command for `op`; NULL when the list is full. */
static inline sp_cmd *sp_list_push(sp_list *list, sp_op op) {
  if (list->header->count >= list->capacity) return NULL;
  sp_cmd *cmd = &sp_list_cmds(list)[list->header->count++];
  memset(cmd, 0, sizeof *cmd);
  cmd->op = (uint32_t)op;
  return cmd;
}

static inline uint32_t sp_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* ---- typed op helpers: return 0, or -1 when the list is full ---- */

/* dst[N, M] = x[K, M] . w[K, N]^T  (w: any weight dtype; x, dst: f32) */
static inline int sp_matmul(sp_list *list, sp_tensor dst, sp_tensor w, sp_tensor x) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_MATMUL);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = w, cmd->src[1] = x;
  return 0;
}

static inline int sp_binary(sp_list *list, sp_op op, sp_tensor dst, sp_tensor a, sp_tensor b) {
  sp_cmd *cmd = sp_list_push(list, op);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = a, cmd->src[1] = b;
  return 0;
}

/* dst = a + b (b may be one row, broadcast) */
static inline int sp_add(sp_list *list, sp_tensor dst, sp_tensor a, sp_tensor b) {
  return sp_binary(list, SP_OP_ADD, dst, a, b);
}

/* dst = a * b (b may be one row, broadcast) */
static inline int sp_mul(sp_list *list, sp_tensor dst, sp_tensor a, sp_tensor b) {
  return sp_binary(list, SP_OP_MUL, dst, a, b);
}

/* dst = a * s */
static inline int sp_scale(sp_list *list, sp_tensor dst, sp_tensor a, float s) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_SCALE);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = a, cmd->param[0] = sp_f32_bits(s);
  return 0;
}

/* ---- submitting ---- */

/* Submits the list, waits for it, and empties it. Returns SP_OK or a
 * negative sp_status; sp_last_error then says which field was wrong. */
static inline int32_t sp_submit(sp_list *list) {
  uint32_t bytes = (uint32_t)(sizeof(sp_cmd_list_header) + list->header->count * sizeof(sp_cmd));
  int32_t status = sp_import_submit(sp_addr(list->header), bytes);
  list->header->count = 0;
  return status;
}

/* The host's message for the last failure (static buffer). */
static inline const char *sp_last_error(void) {
  static char message[512];
  sp_import_last_error(sp_addr(message), sizeof message);
  return message;
}

/* Prints "<what>: <host message>" to stderr and exits with status 70. */
static inline void sp_die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, sp_last_error());
  exit(70);
}

#endif /* SAMEPAGE_GUEST_H */
