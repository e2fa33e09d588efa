/* test_util.h: file helpers shared by the C tests (header-only). */
#ifndef SP_TEST_UTIL_H
#define SP_TEST_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samepage.h"

/* Reads a whole file, NUL-terminated (not counted in *len); NULL when it
 * cannot be opened. Caller frees. */
static inline uint8_t *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *data = n >= 0 ? malloc((size_t)n + 1) : NULL;
  *len = data ? fread(data, 1, (size_t)n, f) : 0;
  fclose(f);
  if (data) data[*len] = 0;
  return data;
}

/* The host address of guest address addr in an actor's linear memory
 * (a 32-bit wasm address: the export's result, cut to 32 bits). */
static inline uint8_t *guest_mem(sp_actor_t *a, int64_t addr) {
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  return base + (uint32_t)addr;
}

/* Reads $SP_GUEST_DIR/<name>.wasm (default dir "guests"); exits the test
 * when it is missing, since nothing can run without it. */
static inline uint8_t *load_guest(const char *name, size_t *len) {
  const char *dir = getenv("SP_GUEST_DIR");
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.wasm", dir ? dir : "guests", name);
  uint8_t *data = read_all(path, len);
  if (!data) {
    printf("cannot open %s\n", path);
    exit(1);
  }
  return data;
}

/* The LLM guest's message for its last failure (its llm_error_ptr export),
 * read from its memory; "(no message)" when there is none. */
static inline const char *llm_guest_error(sp_actor_t *a) {
  int64_t at = 0;
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  sp_error_t *err = sp_actor_call(a, "llm_error_ptr", NULL, 0, &at);
  sp_error_free(err);
  at = (uint32_t)at;
  return !err && at > 0 && (size_t)at < size && memchr(base + at, 0, size - (size_t)at) ? (const char *)base + at
                                                                                       : "(no message)";
}

#endif
