/* test_region.c: alignment, commit/grow, guard pages, the 4 GiB limit. */
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "core/region.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
#define GiB ((size_t)1 << 30)

static sigjmp_buf fault_jump;

static void on_fault(int sig) { siglongjmp(fault_jump, sig); }

/* Returns true when reading *p faults (SIGSEGV or SIGBUS). */
static bool read_faults(volatile uint8_t *p) {
  struct sigaction sa = {0}, old_segv, old_bus;
  sa.sa_handler = on_fault;
  sigaction(SIGSEGV, &sa, &old_segv);
  sigaction(SIGBUS, &sa, &old_bus);
  bool faulted = true;
  if (sigsetjmp(fault_jump, 1) == 0) {
    (void)*p;
    faulted = false;
  }
  sigaction(SIGSEGV, &old_segv, NULL);
  sigaction(SIGBUS, &old_bus, NULL);
  return faulted;
}

static void test_alignment(void) {
  size_t aligns[] = {SP_REGION_DEFAULT_ALIGNMENT, 64 * KiB, 2 * MiB};
  for (size_t i = 0; i < 3; i++) {
    for (int rep = 0; rep < 4; rep++) {
      sp_region *r = NULL;
      sp_error_t *err = sp_region_new(aligns[i], 64 * KiB, 64 * MiB, 32 * MiB, &r);
      CHECK(!err, "%s", sp_error_message(err));
      if (!r) continue;
      CHECK((uintptr_t)r->base % aligns[i] == 0, "base %p not %zu-aligned", (void *)r->base, aligns[i]);
      sp_region_free(r);
    }
  }
  sp_region *r = NULL;
  sp_error_t *err = sp_region_new(3 * 4096, 0, 64 * KiB, 0, &r);
  CHECK(err && strstr(sp_error_message(err), "power of two"), "odd alignment");
  sp_error_free(err);
  err = sp_region_new(1024, 0, 64 * KiB, 0, &r);
  CHECK(err && strstr(sp_error_message(err), "page size"), "alignment below a page");
  sp_error_free(err);
  err = sp_region_new(16 * KiB, 128 * KiB, 64 * KiB, 0, &r);
  CHECK(err && strstr(sp_error_message(err), "exceeds"), "committed > reserved");
  sp_error_free(err);
  err = sp_region_new(16 * KiB, 0, SIZE_MAX - 4095, 4096, &r);
  CHECK(err && strstr(sp_error_message(err), "overflows"), "size overflow");
  sp_error_free(err);
}

static void test_grow_and_guards(void) {
  sp_region *r = NULL;
  sp_error_t *err = sp_region_new(SP_REGION_DEFAULT_ALIGNMENT, 64 * KiB, 1 * MiB, 64 * KiB, &r);
  CHECK(!err, "%s", sp_error_message(err));
  if (!r) return;
  uint8_t *base = r->base;
  base[0] = 1, base[64 * KiB - 1] = 2;
  CHECK(read_faults(base + 64 * KiB), "uncommitted byte is readable");
  CHECK(read_faults(base + 1 * MiB), "guard byte is readable");
  CHECK(read_faults(base + 1 * MiB + 64 * KiB - 1), "last guard byte is readable");
  err = sp_region_grow(r, 512 * KiB);
  CHECK(!err && r->base == base && r->committed == 512 * KiB, "grow: %s", sp_error_message(err));
  base[512 * KiB - 1] = 3;
  CHECK(base[0] == 1 && base[64 * KiB - 1] == 2, "grow kept contents");
  CHECK(!read_faults(base + 300 * KiB) && base[300 * KiB] == 0, "new bytes are zero");
  CHECK(read_faults(base + 512 * KiB), "past the new end is readable");
  err = sp_region_grow(r, 2 * MiB);
  CHECK(err && strstr(sp_error_message(err), "reservation"), "grow beyond reservation");
  sp_error_free(err);
  err = sp_region_grow(r, 64 * KiB);
  CHECK(err && strstr(sp_error_message(err), "shrink"), "shrink");
  sp_error_free(err);
  sp_region_free(r);
}

static sp_error_t *refusing_hook(void *ctx, sp_region *region) {
  (void)ctx, (void)region;
  return sp_error_new("backend says no");
}

static void test_hook_failure_undoes_grow(void) {
  sp_region *r = NULL;
  sp_error_t *err = sp_region_new(SP_REGION_DEFAULT_ALIGNMENT, 64 * KiB, 1 * MiB, 0, &r);
  if (err || !r) return;
  r->grow_hook = refusing_hook;
  err = sp_region_grow(r, 256 * KiB);
  CHECK(err && strstr(sp_error_message(err), "backend says no"), "hook error reported");
  sp_error_free(err);
  CHECK(r->committed == 64 * KiB && read_faults(r->base + 128 * KiB), "failed grow undone");
  sp_region_free(r);
}

/* The whole wasm32 space: committing 4 GiB costs address space, not RSS. */
static void test_four_gib(void) {
  sp_region *r = NULL;
  sp_error_t *err = sp_region_new(SP_REGION_DEFAULT_ALIGNMENT, 64 * KiB, 4 * GiB, 32 * MiB, &r);
  CHECK(!err, "%s", sp_error_message(err));
  if (!r) return;
  uint8_t *base = r->base;
  for (size_t size = 256 * MiB; size <= 4 * GiB; size += 256 * MiB) {
    err = sp_region_grow(r, size);
    CHECK(!err && r->base == base, "grow to %zu: %s", size, sp_error_message(err));
    sp_error_free(err);
  }
  base[4 * GiB - 1] = 7;
  CHECK(base[4 * GiB - 1] == 7, "last byte of 4 GiB writable");
  CHECK(read_faults(base + 4 * GiB), "first guard byte past 4 GiB readable");
  err = sp_region_grow(r, 4 * GiB + 64 * KiB);
  CHECK(err != NULL, "grow past 4 GiB");
  sp_error_free(err);
  sp_region_free(r);
}

int main(void) {
  test_alignment();
  test_grow_and_guards();
  test_hook_failure_undoes_grow();
  test_four_gib();
  return CHECK_DONE();
}
