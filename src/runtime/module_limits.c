/*
 * module_limits.c: static limits on a module and a compile deadline (see
 * module_limits.h).
 */
#include "runtime/module_limits.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/wasm_host.h"

/* ---- reading the counts ---- */

enum { SEC_TYPE = 1, SEC_FUNCTION = 3, SEC_CODE = 10 };

/* A cursor over [p, end) of the module, with the module's start for offsets. */
typedef struct reader {
  const uint8_t *p, *end, *start;
} reader;

static size_t left(const reader *r) { return (size_t)(r->end - r->p); }
static size_t offset(const reader *r) { return (size_t)(r->p - r->start); }

/* An unsigned LEB128 of at most 32 bits; false when truncated or wider. */
static bool read_u32(reader *r, uint32_t *out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (r->p == r->end) return false;
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = (uint32_t)v;
      return v <= UINT32_MAX;
    }
  }
  return false;
}

/* Skips a signed LEB128 of at most 33 bits (a heap type). */
static bool skip_s33(reader *r) {
  for (int i = 0; i < 5; i++) {
    if (r->p == r->end) return false;
    if (!(*r->p++ & 0x80)) return true;
  }
  return false;
}

static sp_error_t *malformed(const reader *r, const char *what) {
  return sp_error_with_kind(SP_ERROR_INVALID, "invalid or unsupported wasm module: %s (at offset 0x%zx)", what, offset(r));
}

/* A vector count that must fit the bytes left, each entry taking at least
 * `min_entry` bytes. */
static sp_error_t *read_count(reader *r, size_t min_entry, const char *section, uint32_t *out) {
  char what[96];
  if (!read_u32(r, out)) {
    snprintf(what, sizeof what, "the %s section's count is truncated", section);
    return malformed(r, what);
  }
  if ((uint64_t)*out * min_entry > left(r)) {
    snprintf(what, sizeof what, "the %s section declares %" PRIu32 " entries in %zu bytes", section, *out,
             left(r));
    return malformed(r, what);
  }
  return NULL;
}

/* One code body's local declarations, added to *locals. */
static sp_error_t *count_body_locals(reader *body, uint64_t *locals) {
  uint32_t n_decls;
  sp_error_t *err = read_count(body, 2, "code", &n_decls);
  for (uint32_t i = 0; !err && i < n_decls; i++) {
    uint32_t n;
    if (!read_u32(body, &n) || body->p == body->end) return malformed(body, "a local declaration is truncated");
    uint8_t type = *body->p++;
    if ((type == 0x63 || type == 0x64) && !skip_s33(body)) /* (ref null? ht) */
      return malformed(body, "a local's heap type is truncated");
    *locals += n;
  }
  return err;
}

static sp_error_t *count_code(reader *sec, sp_module_counts *out) {
  uint32_t n_bodies;
  sp_error_t *err = read_count(sec, 1, "code", &n_bodies);
  if (err) return err;
  if (n_bodies > out->functions) out->functions = n_bodies;
  for (uint32_t i = 0; i < n_bodies; i++) {
    uint32_t size;
    if (!read_u32(sec, &size) || size > left(sec)) return malformed(sec, "a function body runs past its section");
    reader body = {sec->p, sec->p + size, sec->start};
    if ((err = count_body_locals(&body, &out->locals))) return err;
    sec->p += size;
  }
  return NULL;
}

static sp_error_t *count_section(uint8_t id, reader *sec, sp_module_counts *out) {
  uint32_t n;
  sp_error_t *err = NULL;
  if (id == SEC_TYPE && !(err = read_count(sec, 1, "type", &n))) out->types += n;
  if (id == SEC_FUNCTION && !(err = read_count(sec, 1, "function", &n)) && n > out->functions)
    out->functions = n;
  if (id == SEC_CODE) err = count_code(sec, out);
  return err;
}

sp_error_t *sp_module_count(const uint8_t *wasm, size_t len, sp_module_counts *out) {
  static const uint8_t core_v1[8] = {0, 'a', 's', 'm', 1, 0, 0, 0};
  sp_module_counts c = {.bytes = len};
  if (len < 8 || memcmp(wasm, core_v1, 8)) {
    *out = c; /* not a core module of version 1: Wasmtime says what it is */
    return NULL;
  }
  reader r = {wasm + 8, wasm + len, wasm};
  while (r.p < r.end) {
    uint8_t id = *r.p++;
    uint32_t size;
    if (!read_u32(&r, &size) || size > left(&r)) return malformed(&r, "a section runs past the end");
    reader sec = {r.p, r.p + size, wasm};
    sp_error_t *err = count_section(id, &sec, &c);
    if (err) return err;
    r.p += size;
  }
  *out = c;
  return NULL;
}

/* ---- limits ---- */

static uint64_t clamp(uint64_t v, uint64_t lo, uint64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

void sp_module_limits_for(uint64_t memory_limit, sp_module_limits *out) {
  uint64_t budget = memory_limit ? memory_limit : (uint64_t)4 << 30;
  out->max_bytes = clamp(budget / 4, (uint64_t)1 << 20, (uint64_t)64 << 20);
  out->max_functions = clamp(budget / 4096, 1024, 100000);
  out->max_locals = clamp(budget / 64, 65536, (uint64_t)4 << 20);
  out->memory_limit = memory_limit;
}

/* "(--memory-limit 16M)" in the units the CLI takes, or "(the default)". */
static void budget_text(uint64_t memory_limit, char *buf, size_t cap) {
  static const char units[] = "KMGT";
  if (!memory_limit) {
    snprintf(buf, cap, "(the default; --memory-limit lowers it)");
    return;
  }
  uint64_t v = memory_limit;
  int u = -1;
  while (u < 3 && v % 1024 == 0) v /= 1024, u++;
  if (u < 0) snprintf(buf, cap, "(--memory-limit %" PRIu64 ")", v);
  else snprintf(buf, cap, "(--memory-limit %" PRIu64 "%c)", v, units[u]);
}

sp_error_t *sp_module_check(const uint8_t *wasm, size_t len, const sp_module_limits *lim) {
  sp_module_counts c;
  char why[64];
  budget_text(lim->memory_limit, why, sizeof why);
  if (len > lim->max_bytes)
    return sp_error_with_kind(SP_ERROR_LIMIT, "module has %zu bytes; the limit is %" PRIu64 " %s", len, lim->max_bytes, why);
  sp_error_t *err = sp_module_count(wasm, len, &c);
  if (err) return err;
  if (c.functions > lim->max_functions)
    return sp_error_with_kind(SP_ERROR_LIMIT, "module has %" PRIu64 " functions; the limit is %" PRIu64 " %s", c.functions,
                        lim->max_functions, why);
  if (c.types > lim->max_functions)
    return sp_error_with_kind(SP_ERROR_LIMIT, "module has %" PRIu64 " types; the limit is %" PRIu64 " %s", c.types,
                        lim->max_functions, why);
  if (c.locals > lim->max_locals)
    return sp_error_with_kind(SP_ERROR_LIMIT, "module has %" PRIu64 " locals (summed over its functions); the limit is %" PRIu64 " %s",
                        c.locals, lim->max_locals, why);
  return NULL;
}

/* ---- compiling with a deadline ---- */

/* Shared by the waiting caller and the compiling thread; the last of the
 * two to let go frees it. */
typedef struct compile_job {
  pthread_mutex_t lock;
  pthread_cond_t done_cv;
  int refs;                  /* 2 while both hold it */
  bool done;
  wasm_engine_t *engine;     /* the thread's own reference */
  uint8_t *wasm;             /* the thread's own copy */
  size_t len;
  wasmtime_module_t *module; /* results, taken by the caller if it still waits */
  wasmtime_error_t *err;
} compile_job;

static void job_release(compile_job *job) {
  pthread_mutex_lock(&job->lock);
  bool last = --job->refs == 0;
  pthread_mutex_unlock(&job->lock);
  if (!last) return;
  if (job->module) wasmtime_module_delete(job->module); /* an abandoned compile's result */
  if (job->err) wasmtime_error_delete(job->err);
  wasm_engine_delete(job->engine);
  pthread_cond_destroy(&job->done_cv);
  pthread_mutex_destroy(&job->lock);
  free(job->wasm);
  free(job);
}

static void *compile_main(void *arg) {
  compile_job *job = arg;
  wasmtime_module_t *module = NULL;
  wasmtime_error_t *err = wasmtime_module_new(job->engine, job->wasm, job->len, &module);
  pthread_mutex_lock(&job->lock);
  job->module = module;
  job->err = err;
  job->done = true;
  pthread_cond_signal(&job->done_cv);
  pthread_mutex_unlock(&job->lock);
  job_release(job);
  return NULL;
}

static compile_job *job_new(wasm_engine_t *engine, const uint8_t *wasm, size_t len) {
  compile_job *job = calloc(1, sizeof *job);
  uint8_t *copy = malloc(len ? len : 1);
  if (!job || !copy) {
    free(job);
    free(copy);
    return NULL;
  }
  memcpy(copy, wasm, len);
  pthread_mutex_init(&job->lock, NULL);
  pthread_condattr_t attr; /* deadlines are on CLOCK_MONOTONIC */
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&job->done_cv, &attr);
  pthread_condattr_destroy(&attr);
  job->refs = 2;
  job->engine = wasmtime_engine_clone(engine);
  job->wasm = copy;
  job->len = len;
  return job;
}

/* Waits for the job until deadline_ns; true when it finished. */
static bool job_wait(compile_job *job, uint64_t deadline_ns) {
  struct timespec until = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
  pthread_mutex_lock(&job->lock);
  int rc = 0;
  while (!job->done && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&job->done_cv, &job->lock, &until);
  bool done = job->done;
  pthread_mutex_unlock(&job->lock);
  return done;
}

static sp_error_t *late(uint32_t timeout_ms, uint64_t len) {
  if (timeout_ms)
    return sp_error_with_kind(SP_ERROR_TIMEOUT, "guest exceeded its %" PRIu32 " ms time limit while being compiled (%" PRIu64
                        " bytes; the compilation was abandoned)", timeout_ms, len);
  return sp_error_with_kind(SP_ERROR_TIMEOUT, "compiling the module took longer than the %u ms compile time limit (%" PRIu64
                      " bytes; the compilation was abandoned; --timeout sets the limit)",
                      SP_DEFAULT_COMPILE_TIMEOUT_MS, len);
}

sp_error_t *sp_module_compile(wasm_engine_t *engine, const uint8_t *wasm, size_t len,
                              uint64_t deadline_ns, uint32_t timeout_ms, wasmtime_module_t **out) {
  if (!deadline_ns) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    deadline_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec +
                  (uint64_t)SP_DEFAULT_COMPILE_TIMEOUT_MS * 1000000u;
  }
  compile_job *job = job_new(engine, wasm, len);
  if (!job) return sp_error_new("out of memory");
  pthread_t thread;
  if (pthread_create(&thread, NULL, compile_main, job)) {
    job->refs = 1;
    job_release(job);
    return sp_error_new("cannot start the compiling thread");
  }
  pthread_detach(thread);
  sp_error_t *err = NULL;
  if (!job_wait(job, deadline_ns)) {
    err = late(timeout_ms, len);
  } else if (job->err) {
    err = sp_error_from_wasmtime(job->err, "invalid or unsupported wasm module");
    job->err = NULL;
  } else {
    *out = job->module;
    job->module = NULL;
  }
  job_release(job);
  return err;
}
