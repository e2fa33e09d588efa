/*
 * fuzz_validate.c: libFuzzer target for the command-list validator, with
 * the CPU backend as the oracle.
 *
 * The input is a guest memory image. Its first 16 bytes are a list header,
 * then min(header.count, 32) commands of 240 bytes; the whole input (repeated) also
 * fills a 64 KiB "committed memory" buffer the commands point into. Every
 * command goes through sp_validate_cmd and sp_validate_frozen exactly as
 * abi.c does. Two properties are checked:
 *  1. every tensor of a command that validates lies inside committed memory
 *     (offset + extent <= committed), else abort();
 *  2. a list whose commands all validate runs on the CPU backend without
 *     any out-of-bounds access: the buffer is a heap block of exactly
 *     `committed` bytes, so AddressSanitizer reports any byte outside it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/validate.h"

#define COMMITTED (64u << 10)
#define MAX_CMDS 32

static sp_backend *backend;
static uint8_t *memory;
static uint64_t executed; /* lists that reached the backend */

static void report(void) { fprintf(stderr, "fuzz_validate: %llu lists ran on the cpu backend\n", (unsigned long long)executed); }

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  sp_error_t *err = sp_backend_cpu_new(1, &backend);
  if (err) {
    fprintf(stderr, "fuzz_validate: cpu backend: %s\n", sp_error_message(err));
    abort();
  }
  memory = aligned_alloc(4096, COMMITTED);
  atexit(report);
  return 0;
}

static void check_inside(const sp_tensor *t) {
  if (t->dtype == SP_DTYPE_NONE) return;
  uint64_t extent = sp_tensor_extent(t);
  if ((uint64_t)t->offset + extent > COMMITTED) {
    fprintf(stderr, "validated tensor at 0x%x + %llu bytes escapes %u bytes\n", t->offset,
            (unsigned long long)extent, COMMITTED);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < sizeof(sp_cmd_list_header)) return 0;
  for (size_t at = 0; at < COMMITTED; at += size)
    memcpy(memory + at, data, size < COMMITTED - at ? size : COMMITTED - at);

  /* The list sits at guest address 0, as a guest's static storage might. */
  sp_cmd_list_header hdr;
  memcpy(&hdr, data, sizeof hdr);
  uint32_t n = (uint32_t)((size - sizeof hdr) / sizeof(sp_cmd));
  if (n > hdr.count) n = hdr.count;
  if (n > MAX_CMDS) n = MAX_CMDS;
  uint64_t list_bytes = sizeof hdr + (uint64_t)n * sizeof(sp_cmd);
  sp_validate_ctx ctx = {COMMITTED, 0, list_bytes < COMMITTED ? list_bytes : COMMITTED, MAX_CMDS};
  char msg[512];
  uint32_t count = 0;
  (void)sp_validate_header(&ctx, &hdr, &count, msg, sizeof msg);

  sp_cmd cmds[MAX_CMDS];
  memcpy(cmds, data + sizeof hdr, (size_t)n * sizeof(sp_cmd));
  const sp_range frozen[1] = {{COMMITTED - 4096, 4096}};
  bool all_valid = n > 0;
  for (uint32_t i = 0; i < n; i++) {
    sp_status st = sp_validate_cmd(&ctx, &cmds[i], i, msg, sizeof msg);
    if (!st) st = sp_validate_frozen(frozen, 1, &cmds[i], i, msg, sizeof msg);
    if (st) {
      if (!memchr(msg, '\0', sizeof msg)) abort(); /* messages are always terminated */
      all_valid = false;
      continue;
    }
    check_inside(&cmds[i].dst);
    for (int s = 0; s < SP_MAX_SRC; s++) check_inside(&cmds[i].src[s]);
    if (!sp_backend_supports(backend, &cmds[i])) all_valid = false;
  }
  if (!all_valid) return 0;
  executed++;

  /* Property 2: run the validated list on exactly `committed` bytes. */
  sp_memory_view view = {memory, COMMITTED, COMMITTED};
  void *binding = NULL;
  sp_error_t *err = sp_backend_adopt(backend, &view, &binding);
  if (!err) err = sp_backend_submit(backend, binding, cmds, n, false);
  if (!err) err = sp_backend_wait(backend, binding);
  sp_error_free(err); /* a refused index is a fine outcome */
  sp_backend_release(backend, binding);
  return 0;
}
