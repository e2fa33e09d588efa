/* guard_hog.c (reactor): hostile inputs, second round (issue 13).
 *
 * map_many(n) maps the granted file "data" (at most 64 KiB) n times, each
 * at a fresh 64 KiB page: a guest trying to fill the host's SIGBUS guard
 * table. It returns how many mappings the host accepted; refused() counts
 * the others and refusal() is the first refusal's status, refusal_text()
 * the address of its message. touch_all() then reads every host page of
 * every accepted mapping (test_fault.c truncates the file first).
 *
 * annotate_name(kind) names a small tensor with a crafted name (kind 0 a
 * valid one, 1 "kv\0x" with an embedded NUL, 2 a lone NUL, 3 "a/b") and
 * returns the host's status. */
#include <stdint.h>
#include <string.h>

#include "samepage_guest.h"

#define MAX_MAPS 8192

static uint32_t at[MAX_MAPS];
static int32_t n_mapped, n_refused, first_refusal;
static char refusal_msg[512];
static uint64_t size;

int32_t map_many(int32_t n) {
  int32_t h = sp_blob_open("data");
  if (h < 0) return h;
  int64_t got = sp_import_blob_size(h);
  if (got <= 0 || got > 65536) return SP_E_PARAM;
  size = (uint64_t)got;
  for (int32_t i = 0; i < n && n_mapped < MAX_MAPS; i++) {
    int32_t old = (int32_t)__builtin_wasm_memory_grow(0, 1);
    if (old < 0) return SP_E_LIMIT;
    uint32_t addr = (uint32_t)old * 65536u;
    int32_t st = sp_import_blob_map(h, 0, addr, (int64_t)size);
    if (st == SP_OK) {
      at[n_mapped++] = addr;
    } else if (n_refused++ == 0) {
      first_refusal = st;
      strncpy(refusal_msg, sp_last_error(), sizeof refusal_msg - 1);
    }
  }
  return n_mapped;
}

int32_t refused(void) { return n_refused; }
int32_t refusal(void) { return first_refusal; }
int32_t refusal_text(void) { return (int32_t)sp_addr(refusal_msg); }

int64_t touch_all(void) {
  int64_t sum = 0;
  for (int32_t i = 0; i < n_mapped; i++)
    for (uint64_t off = 0; off < size; off += 4096) sum += ((volatile uint8_t *)(uintptr_t)at[i])[off];
  return sum;
}

static float scratch[16];

int32_t annotate_name(int32_t kind) {
  static const struct {
    const char *name;
    uint32_t len;
  } names[] = {{"kv.ok-1_x", 9}, {"kv\0x", 4}, {"\0", 1}, {"a/b", 3}};
  if (kind < 0 || kind > 3) return SP_E_PARAM;
  sp_tensor t = sp_tensor_1d(scratch, SP_DTYPE_F32, 16);
  return sp_import_annotate(sp_addr(names[kind].name), names[kind].len, sp_addr(&t));
}
