/* test_module_limits.c GUEST_DIR: the module reader and compile limits
 * (src/runtime/module_limits.c).
 *
 * - every guest we build and ship (the LLM guest and tests/guests/) passes
 *   the default limits, and the reader's counts are printed for the record;
 * - counts are exact on a hand-built module, and every truncation of it,
 *   and of the LLM guest's first 64 KiB, is answered with an error or a
 *   count, never a read outside the bytes (ASan build);
 * - lying counts (more entries, bodies or declarations than bytes,
 *   overlong LEBs) are refused, naming the offset;
 * - the limits derived from memory budgets, and the refusal message;
 * - a compile past its deadline is abandoned and reported. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "core/error.h"
#include "runtime/module_limits.h"
#include "test_util.h"

/* A growable byte buffer for building modules. */
typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, data, n);
  b->n += n;
}

static void put_byte(buf *b, uint8_t v) { put(b, &v, 1); }

static void put_leb(buf *b, uint32_t v) {
  do {
    uint8_t byte = v & 0x7f;
    v >>= 7;
    put_byte(b, byte | (v ? 0x80 : 0));
  } while (v);
}

static void put_section(buf *b, uint8_t id, const buf *payload) {
  put_byte(b, id);
  put_leb(b, (uint32_t)payload->n);
  put(b, payload->p, payload->n);
}

/* n functions of type [] -> [], body i holding `decls` declarations of
 * `per_decl` i32 locals each. */
static buf build(uint32_t n, uint32_t decls, uint32_t per_decl) {
  buf m = {0}, types = {0}, funcs = {0}, code = {0};
  put(&m, "\0asm\1\0\0\0", 8);
  put(&types, "\x01\x60\x00\x00", 4);
  put_section(&m, 1, &types);
  put_leb(&funcs, n);
  for (uint32_t i = 0; i < n; i++) put_byte(&funcs, 0);
  put_section(&m, 3, &funcs);
  put_leb(&code, n);
  for (uint32_t i = 0; i < n; i++) {
    buf body = {0};
    put_leb(&body, decls);
    for (uint32_t d = 0; d < decls; d++) {
      put_leb(&body, per_decl);
      put_byte(&body, 0x7f);
    }
    put_byte(&body, 0x0b);
    put_leb(&code, (uint32_t)body.n);
    put(&code, body.p, body.n);
    free(body.p);
  }
  put_section(&m, 10, &code);
  free(types.p);
  free(funcs.p);
  free(code.p);
  return m;
}

/* Counts `len` bytes copied into a buffer of exactly that size (so ASan
 * sees any read past them); returns whether the reader accepted them. */
static bool count_exact(const uint8_t *wasm, size_t len, sp_module_counts *c, char *msg, size_t cap) {
  uint8_t *copy = malloc(len ? len : 1);
  memcpy(copy, wasm, len);
  sp_error_t *err = sp_module_count(copy, len, c);
  free(copy);
  if (msg) snprintf(msg, cap, "%s", err ? sp_error_message(err) : "");
  sp_error_free(err);
  return !err;
}

static void test_guests(const char *dir) {
  DIR *d = opendir(dir);
  CHECK(d != NULL, "cannot open %s", dir);
  if (!d) return;
  sp_module_limits lim;
  sp_module_limits_for(0, &lim);
  int seen = 0, llm = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    size_t n = strlen(e->d_name);
    if (n < 5 || strcmp(e->d_name + n - 5, ".wasm")) continue;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    size_t len = 0;
    uint8_t *wasm = read_all(path, &len);
    if (!wasm) continue;
    sp_module_counts c = {0};
    sp_error_t *err = sp_module_count(wasm, len, &c);
    if (!err) err = sp_module_check(wasm, len, &lim);
    CHECK(!err, "%s: %s", e->d_name, sp_error_message(err));
    printf("  %-28s %8zu bytes %6llu types %6llu functions %8llu locals\n", e->d_name, len,
           (unsigned long long)c.types, (unsigned long long)c.functions, (unsigned long long)c.locals);
    sp_error_free(err);
    free(wasm);
    seen++;
    llm += !strcmp(e->d_name, "llm.wasm");
  }
  closedir(d);
  CHECK(seen >= 10 && llm == 1, "%d guests seen, llm.wasm %d", seen, llm);
}

static void test_counts(void) {
  buf m = build(3, 2, 1000);
  sp_module_counts c;
  char msg[256];
  CHECK(count_exact(m.p, m.n, &c, msg, sizeof msg), "%s", msg);
  CHECK(c.types == 1 && c.functions == 3 && c.locals == 6000 && c.bytes == m.n,
        "types %llu functions %llu locals %llu", (unsigned long long)c.types,
        (unsigned long long)c.functions, (unsigned long long)c.locals);
  /* Every truncation inside a section is refused, naming an offset. */
  int refused = 0;
  for (size_t len = 9; len < m.n; len++) {
    bool ok = count_exact(m.p, len, &c, msg, sizeof msg);
    refused += !ok && strstr(msg, "at offset 0x");
  }
  CHECK(refused > 0 && refused == (int)(m.n - 9) - 2, "%d of %zu truncations refused", refused, m.n - 9);
  free(m.p);
}

static void test_truncated_llm(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/llm.wasm", dir);
  size_t len = 0;
  uint8_t *wasm = read_all(path, &len);
  if (!wasm) return;
  sp_module_counts c;
  int answered = 0;
  for (size_t n = 0; n <= len && n <= 65536; n++) {
    count_exact(wasm, n, &c, NULL, 0); /* either answer; never a read past n bytes */
    answered++;
  }
  CHECK(answered > 65536 || answered == (int)len + 1, "%d truncations answered", answered);
  free(wasm);
}

/* A module whose bytes are given as a string (len includes everything). */
static void expect_refused(const char *name, const char *bytes, size_t len, const char *needle) {
  sp_module_counts c;
  char msg[256];
  bool ok = count_exact((const uint8_t *)bytes, len, &c, msg, sizeof msg);
  CHECK(!ok && strstr(msg, needle), "%s: %s", name, ok ? "accepted" : msg);
}

static void test_lies(void) {
  expect_refused("section past the end", "\0asm\1\0\0\0\x01\x10\x01", 11, "section runs past the end");
  expect_refused("4G functions in 0 bytes", "\0asm\1\0\0\0\x03\x05\xff\xff\xff\xff\x0f", 15,
                 "declares 4294967295 entries in 0 bytes");
  expect_refused("overlong count", "\0asm\1\0\0\0\x03\x06\x80\x80\x80\x80\x80\x00", 16, "count is truncated");
  expect_refused("33-bit count", "\0asm\1\0\0\0\x03\x05\xff\xff\xff\xff\x1f", 15, "count is truncated");
  expect_refused("more bodies than bytes", "\0asm\1\0\0\0\x0a\x02\x05\x00", 12, "declares 5 entries in 1 bytes");
  expect_refused("body past its section", "\0asm\1\0\0\0\x0a\x03\x01\x09\x00", 13, "body runs past its section");
  expect_refused("more declarations than bytes", "\0asm\1\0\0\0\x0a\x05\x01\x03\x7f\x01\x7f", 15,
                 "declares 127 entries in 2 bytes");
  expect_refused("declaration truncated", "\0asm\1\0\0\0\x0a\x05\x01\x03\x01\xff\xff", 15,
                 "local declaration is truncated");
  /* 4G - 1 locals in one declaration are counted, not refused: the limit does that. */
  sp_module_counts c;
  const char big[] = "\0asm\1\0\0\0\x0a\x0a\x01\x08\x01\xff\xff\xff\xff\x0f\x7f\x0b";
  CHECK(count_exact((const uint8_t *)big, sizeof big - 1, &c, NULL, 0) && c.locals == 0xffffffffu,
        "locals %llu", (unsigned long long)c.locals);
  /* Not a core module of version 1: left to Wasmtime. */
  CHECK(count_exact((const uint8_t *)"\0asm\x0d\0\1\0\xff", 9, &c, NULL, 0) && c.functions == 0, "component");
}

static void test_limits(void) {
  sp_module_limits l;
  sp_module_limits_for(16 << 20, &l);
  CHECK(l.max_bytes == 4 << 20 && l.max_functions == 4096 && l.max_locals == 262144, "16M");
  sp_module_limits_for(0, &l);
  CHECK(l.max_bytes == 64 << 20 && l.max_functions == 100000 && l.max_locals == 4 << 20, "default");
  sp_module_limits_for(1 << 20, &l);
  CHECK(l.max_bytes == 1 << 20 && l.max_functions == 1024 && l.max_locals == 65536, "1M floors");
  buf m = build(5000, 1, 1);
  sp_module_limits_for(16 << 20, &l);
  sp_error_t *err = sp_module_check(m.p, m.n, &l);
  const char *msg = sp_error_message(err);
  CHECK(err && !strcmp(msg, "module has 5000 functions; the limit is 4096 (--memory-limit 16M)"), "%s", msg);
  sp_error_free(err);
  sp_module_limits_for(0, &l);
  err = sp_module_check(m.p, m.n, &l);
  CHECK(!err, "%s", sp_error_message(err));
  sp_error_free(err);
  free(m.p);
  m = build(100, 10, 50000); /* 50M locals */
  err = sp_module_check(m.p, m.n, &l);
  msg = sp_error_message(err);
  CHECK(err && strstr(msg, "module has 50000000 locals") && strstr(msg, "the limit is 4194304 (the default"), "%s",
        msg);
  sp_error_free(err);
  free(m.p);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void test_compile(void) {
  wasm_engine_t *engine = wasm_engine_new();
  buf m = build(3, 1, 4);
  wasmtime_module_t *module = NULL;
  sp_error_t *err = sp_module_compile(engine, m.p, m.n, 0, 0, &module);
  CHECK(!err && module, "%s", sp_error_message(err));
  if (module) wasmtime_module_delete(module);
  sp_error_free(err);
  free(m.p);
  /* 20000 functions with a deadline already passed: abandoned at once. */
  m = build(20000, 1, 4);
  module = NULL;
  uint64_t t0 = now_ns();
  err = sp_module_compile(engine, m.p, m.n, t0, 250, &module);
  const char *msg = sp_error_message(err);
  CHECK(err && !module && strstr(msg, "guest exceeded its 250 ms time limit while being compiled"), "%s", msg);
  CHECK(now_ns() - t0 < 100000000u, "waited %llu ns", (unsigned long long)(now_ns() - t0));
  sp_error_free(err);
  err = sp_module_compile(engine, m.p, m.n, now_ns(), 0, &module);
  msg = sp_error_message(err);
  CHECK(err && strstr(msg, "compile time limit"), "%s", msg);
  sp_error_free(err);
  free(m.p); /* the abandoned compilations hold their own copies */
  /* Invalid bytes are Wasmtime's to name. */
  err = sp_module_compile(engine, (const uint8_t *)"\0asm\1\0\0\0\x01\x01\x00\x05", 12, 0, 0, &module);
  CHECK(err && strstr(sp_error_message(err), "invalid or unsupported wasm module"), "%s", sp_error_message(err));
  sp_error_free(err);
  wasm_engine_delete(engine); /* the abandoned compilations hold their own references */
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : getenv("SP_GUEST_DIR");
  if (!dir) dir = "guests";
  test_guests(dir);
  test_counts();
  test_truncated_llm(dir);
  test_lies();
  test_limits();
  test_compile();
  return CHECK_DONE();
}
