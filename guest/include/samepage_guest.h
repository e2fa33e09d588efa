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

__attribute__((import_module("samepage"), import_name("freeze"))) int32_t
sp_import_freeze(uint32_t addr, uint32_t len);
__attribute__((import_module("samepage"), import_name("flush"))) int32_t
sp_import_flush(uint32_t addr, uint32_t len);
__attribute__((import_module("samepage"), import_name("device_local"))) int32_t
sp_import_device_local(uint32_t addr, uint32_t len);
__attribute__((import_module("samepage"), import_name("sync"))) int32_t
sp_import_sync(uint32_t addr, uint32_t len);

__attribute__((import_module("samepage"), import_name("blob_open"))) int32_t
sp_import_blob_open(uint32_t name_addr, uint32_t name_len);
__attribute__((import_module("samepage"), import_name("blob_size"))) int64_t
sp_import_blob_size(int32_t handle);
__attribute__((import_module("samepage"), import_name("blob_read"))) int64_t
sp_import_blob_read(int32_t handle, int64_t offset, uint32_t addr, uint32_t len);
__attribute__((import_module("samepage"), import_name("blob_map"))) int32_t
sp_import_blob_map(int32_t handle, int64_t offset, uint32_t addr, int64_t len);

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

/* A list builder over caller-provided storage. A push into a full list
 * is counted in header->dropped, so the submit is refused (SP_E_LIMIT)
 * instead of running the list short; a list with capacity 0 is a
 * measuring pass: build into it, then read sp_list_wanted. */
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
  storage->dropped = 0;
  sp_list list = {storage, cap};
  return list;
}

static inline sp_cmd *sp_list_cmds(sp_list *list) { return (sp_cmd *)(list->header + 1); }

/* Appends a zeroed command for `op`; NULL when the list is full (then
 * counted as dropped). */
static inline sp_cmd *sp_list_push(sp_list *list, sp_op op) {
  if (list->header->count >= list->capacity) {
    list->header->dropped++;
    return NULL;
  }
  sp_cmd *cmd = &sp_list_cmds(list)[list->header->count++];
  memset(cmd, 0, sizeof *cmd);
  cmd->op = (uint32_t)op;
  return cmd;
}

/* Commands pushed so far, those that did not fit included: after a
 * measuring pass (capacity 0), the capacity the list needs. */
static inline uint32_t sp_list_wanted(const sp_list *list) { return list->header->count + list->header->dropped; }

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

/* dst[f32: K, M] = rows idx[i32: M] of table[W: K, V] */
static inline int sp_get_rows(sp_list *list, sp_tensor dst, sp_tensor table, sp_tensor idx) {
  return sp_binary(list, SP_OP_GET_ROWS, dst, table, idx);
}

/* dst = x / sqrt(mean(x^2) + eps) * weight, per row */
static inline int sp_rmsnorm(sp_list *list, sp_tensor dst, sp_tensor x, sp_tensor weight, float eps) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_RMSNORM);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = x, cmd->src[1] = weight, cmd->param[0] = sp_f32_bits(eps);
  return 0;
}

/* Rotary embedding of x[f32: D, H, T] at positions pos[i32: T]; mode 0 =
 * adjacent pairs, 2 = NeoX halves; freq_factors may be an empty tensor. */
static inline int sp_rope(sp_list *list, sp_tensor dst, sp_tensor x, sp_tensor pos, uint32_t n_rot,
                          float theta, uint32_t mode, float freq_scale, sp_tensor freq_factors) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_ROPE);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = x, cmd->src[1] = pos, cmd->src[2] = freq_factors;
  cmd->param[0] = n_rot, cmd->param[1] = sp_f32_bits(theta), cmd->param[2] = mode;
  cmd->param[3] = sp_f32_bits(freq_scale);
  return 0;
}

/* Causal GQA attention of q[D, Hq, T] over caches k, v [D, Hkv, C] with
 * a sliding window: query t sees cache rows max(0, pos[t] - window + 1)
 * .. pos[t] only (Gemma 3's local layers, Mistral); window 0 = no window. */
static inline int sp_attention_window(sp_list *list, sp_tensor dst, sp_tensor q, sp_tensor k, sp_tensor v,
                                      sp_tensor pos, float scale, uint32_t window) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_ATTENTION);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = q, cmd->src[1] = k, cmd->src[2] = v, cmd->src[3] = pos;
  cmd->param[0] = sp_f32_bits(scale), cmd->param[1] = window;
  return 0;
}

/* Causal GQA attention of q[D, Hq, T] over caches k, v [D, Hkv, C]: query
 * t sees cache rows 0..pos[t]. */
static inline int sp_attention(sp_list *list, sp_tensor dst, sp_tensor q, sp_tensor k, sp_tensor v,
                               sp_tensor pos, float scale) {
  return sp_attention_window(list, dst, q, k, v, pos, scale, 0);
}

/* dst rows idx[i32: M] = rows[f32: K, M], converted to dst's dtype. */
static inline int sp_set_rows(sp_list *list, sp_tensor dst, sp_tensor rows, sp_tensor idx) {
  return sp_binary(list, SP_OP_SET_ROWS, dst, rows, idx);
}

/* dst = silu(gate) * up */
static inline int sp_swiglu(sp_list *list, sp_tensor dst, sp_tensor gate, sp_tensor up) {
  return sp_binary(list, SP_OP_SWIGLU, dst, gate, up);
}

/* dst = gelu(gate) * up, GELU in its tanh form (Gemma's GeGLU) */
static inline int sp_geglu(sp_list *list, sp_tensor dst, sp_tensor gate, sp_tensor up) {
  return sp_binary(list, SP_OP_GEGLU, dst, gate, up);
}

/* dst = cap * tanh(x / cap): soft-capping (cap finite, > 0) */
static inline int sp_softcap(sp_list *list, sp_tensor dst, sp_tensor x, float cap) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_SOFTCAP);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = x, cmd->param[0] = sp_f32_bits(cap);
  return 0;
}

/* dst = softmax(x * scale) per row */
static inline int sp_softmax(sp_list *list, sp_tensor dst, sp_tensor x, float scale) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_SOFTMAX);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = x, cmd->param[0] = sp_f32_bits(scale);
  return 0;
}

/* dst[i32: M] = index of the largest value of each row of x[f32: N, M] */
static inline int sp_argmax(sp_list *list, sp_tensor dst, sp_tensor x) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_ARGMAX);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = x;
  return 0;
}

/* dst[i32: K, M] = the indices of the K largest values of each row of
 * x[f32: N, M], largest first (equal values: smaller index first) */
static inline int sp_topk(sp_list *list, sp_tensor dst, sp_tensor x) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_TOPK);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = x;
  return 0;
}

/* dst = x converted between f32, f16 and bf16 */
static inline int sp_copy(sp_list *list, sp_tensor dst, sp_tensor x) {
  sp_cmd *cmd = sp_list_push(list, SP_OP_COPY);
  if (!cmd) return -1;
  cmd->dst = dst, cmd->src[0] = x;
  return 0;
}

/* ---- annotations: naming tensors for the host's tools ---- */

__attribute__((import_module("samepage"), import_name("annotate"))) int32_t
sp_import_annotate(uint32_t name_addr, uint32_t name_len, uint32_t tensor_addr);

/* Names a tensor of guest memory (e.g. "blk.0.k_cache") so that tools such
 * as `samepage kv export` can find it in snapshots. */
static inline int32_t sp_annotate(const char *name, const sp_tensor *t) {
  return sp_import_annotate(sp_addr(name), (uint32_t)strlen(name), sp_addr(t));
}

/* ---- granted files ("blobs") ---- */

/* The handle of the file the user granted as `name` (e.g. "model"), or a
 * negative sp_status when there is none. */
static inline int32_t sp_blob_open(const char *name) {
  return sp_import_blob_open(sp_addr(name), (uint32_t)strlen(name));
}

/* Maps a whole granted file into fresh linear memory, without copying when
 * the host can map it (the pages come from the OS page cache; writing to
 * them gives the guest a private copy). Falls back to reading. Returns the
 * address, or NULL with *status set. */
static inline void *sp_blob_load(int32_t handle, uint64_t *size_out, int32_t *status) {
  int64_t size = sp_import_blob_size(handle);
  if (size < 0 || (uint64_t)size > 0xF0000000u) {
    *status = size < 0 ? (int32_t)size : SP_E_BOUNDS;
    return NULL;
  }
  uint32_t pages = (uint32_t)(((uint64_t)size + 65535) / 65536);
  int32_t old = (int32_t)__builtin_wasm_memory_grow(0, pages ? pages : 1);
  if (old < 0) {
    *status = SP_E_LIMIT;
    return NULL;
  }
  uint32_t addr = (uint32_t)old * 65536u;
  *status = size ? sp_import_blob_map(handle, 0, addr, size) : SP_OK;
  if (*status != SP_OK) {
    int64_t got = sp_import_blob_read(handle, 0, addr, (uint32_t)size);
    *status = got == size ? SP_OK : (got < 0 ? (int32_t)got : SP_E_BOUNDS);
  }
  *size_out = (uint64_t)size;
  return *status == SP_OK ? (void *)(uintptr_t)addr : NULL;
}

/* ---- immutable ranges ---- */

/* Declares [ptr, ptr + len) immutable (weights): commands may no longer
 * write it, and a discrete GPU may keep a device-resident copy. */
static inline int32_t sp_freeze(const void *ptr, uint64_t len) {
  if (len == 0 || len > 0xFFFFFFFFu) return SP_E_BOUNDS;
  return sp_import_freeze(sp_addr(ptr), (uint32_t)len);
}

/* After rewriting bytes of a frozen or device-local range with plain
 * stores, flush them before the next submit, or kernels may read the old
 * bytes. */
static inline int32_t sp_flush(const void *ptr, uint64_t len) {
  if (len == 0 || len > 0xFFFFFFFFu) return SP_E_BOUNDS;
  return sp_import_flush(sp_addr(ptr), (uint32_t)len);
}

/* ---- device-local ranges ---- */

/* Declares [ptr, ptr + len) device-local (activations, KV cache): between
 * submits its bytes may live only on the accelerator, so kernels on a
 * discrete GPU skip the bus. Read them only after sp_sync; after writing
 * them with plain stores, sp_flush before the next submit. A no-op on a
 * CPU. Every tensor must lie wholly inside or wholly outside the range. */
static inline int32_t sp_device_local(const void *ptr, uint64_t len) {
  if (len == 0 || len > 0xFFFFFFFFu) return SP_E_BOUNDS;
  return sp_import_device_local(sp_addr(ptr), (uint32_t)len);
}

/* Copies [ptr, ptr + len), inside one device-local range, back to guest
 * memory so that the guest can read it. */
static inline int32_t sp_sync(const void *ptr, uint64_t len) {
  if (len == 0 || len > 0xFFFFFFFFu) return SP_E_BOUNDS;
  return sp_import_sync(sp_addr(ptr), (uint32_t)len);
}

/* ---- submitting ---- */

/* Submits the list and waits for it, keeping its commands: a list whose
 * per-step values (positions, token ids) live in tensors can be submitted
 * again unchanged, and the host then skips its validation. Returns SP_OK
 * or a negative sp_status; sp_last_error then says which field was wrong. */
static inline int32_t sp_submit_keep(const sp_list *list) {
  uint32_t bytes = (uint32_t)(sizeof(sp_cmd_list_header) + list->header->count * sizeof(sp_cmd));
  return sp_import_submit(sp_addr(list->header), bytes);
}

/* Submits the list, waits for it, and empties it. */
static inline int32_t sp_submit(sp_list *list) {
  int32_t status = sp_submit_keep(list);
  list->header->count = 0;
  list->header->dropped = 0;
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
