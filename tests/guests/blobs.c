/*
 * blobs.c: the granted-file imports from a guest's side. The host grants a
 * file as "data" (argv[1] tells its expected size; its bytes are i % 251).
 * Checks: map and read give the file's bytes; writing a mapped page never
 * reaches the file; ungranted names, bad handles, misalignment and ranges
 * outside memory or the file are refused with clear statuses.
 * Exits with the number of failed checks.
 */
#include <stdio.h>
#include <string.h>

#include "samepage_guest.h"

static int failures;

static void check(const char *name, int ok) {
  printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", name, ok ? "" : ": ", ok ? "" : sp_last_error());
  failures += !ok;
}

int main(int argc, char **argv) {
  long expect = argc > 1 ? atol(argv[1]) : 0;
  int32_t h = sp_blob_open("data");
  check("open a granted file", h >= 0);
  check("ungranted name refused", sp_blob_open("/etc/passwd") == SP_E_PARAM);
  check("message names the grant", strstr(sp_last_error(), "/etc/passwd") != NULL);
  check("size", sp_import_blob_size(h) == expect);
  check("bad handle size", sp_import_blob_size(7) == SP_E_PARAM);

  uint64_t size = 0;
  int32_t st = 0;
  uint8_t *p = sp_blob_load(h, &size, &st);
  check("load (map)", p && st == SP_OK && size == (uint64_t)expect);
  int same = p != NULL;
  for (long i = 0; p && i < expect; i++) same &= p[i] == (uint8_t)(i % 251);
  check("mapped bytes equal the file", same);
  if (p) p[0] ^= 0xff; /* private copy-on-write: must not reach the file */

  static uint8_t buf[4096];
  check("read", sp_import_blob_read(h, 10, sp_addr(buf), 100) == 100 && buf[0] == 10 % 251);
  check("read past EOF is short", sp_import_blob_read(h, expect - 5, sp_addr(buf), 100) == 5);
  check("read outside memory", sp_import_blob_read(h, 0, 0xffffff00u, 4096) == SP_E_BOUNDS);
  check("read bad handle", sp_import_blob_read(-1, 0, sp_addr(buf), 10) == SP_E_PARAM);
  uint32_t page = (uint32_t)__builtin_wasm_memory_grow(0, 4) * 65536u;
  check("map misaligned address", sp_import_blob_map(h, 0, page + 4096, 100) == SP_E_ALIGN);
  check("map misaligned offset", sp_import_blob_map(h, 100, page, 100) == SP_E_ALIGN);
  check("map past the file", sp_import_blob_map(h, 0, page, expect + 1) == SP_E_BOUNDS);
  check("map outside memory", sp_import_blob_map(h, 0, 0xfff00000u, 65536) == SP_E_BOUNDS);
  check("map zero bytes", sp_import_blob_map(h, 0, page, 0) == SP_E_BOUNDS);
  check("map ok at a fresh page", sp_import_blob_map(h, 0, page, expect) == SP_OK);
  check("fresh map sees the file, not our write",
        ((uint8_t *)(uintptr_t)page)[0] == 0 && ((uint8_t *)(uintptr_t)page)[1] == 1);
  printf("%d failures\n", failures);
  return failures;
}
