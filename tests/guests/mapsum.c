/* mapsum.c (reactor): maps the granted file "data" and reads it, from wasm
 * code (sum_wasm) and through a host op (sum_host: a COPY of the mapped
 * bytes as f32 into a heap buffer, summed here). test_fault.c truncates the
 * file under it. poke, freeze_data and flush_data write into the mapped
 * pages and declare them (test_isolation.c: a worker process sees such
 * writes at the freeze or flush). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "samepage_guest.h"

static uint8_t *data;
static uint64_t size;
static float *copy;

int32_t map_data(void) {
  int32_t h = sp_blob_open("data"), st = 0;
  if (h < 0) return h;
  copy = malloc((size_t)sp_import_blob_size(h));
  if (!copy) return SP_E_LIMIT;
  data = sp_blob_load(h, &size, &st);
  return data ? 0 : st;
}

int64_t sum_wasm(void) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < size; i++) sum += ((volatile uint8_t *)data)[i];
  return (int64_t)sum;
}

int64_t sum_host(void) {
  SP_LIST(list, 1);
  uint32_t n = (uint32_t)(size / 4);
  sp_copy(&list, sp_tensor_2d(copy, SP_DTYPE_F32, 1024, n / 1024), sp_tensor_2d(data, SP_DTYPE_F32, 1024, n / 1024));
  int32_t st = sp_submit(&list);
  if (st) {
    fprintf(stderr, "sum_host: %s\n", sp_last_error());
    return st;
  }
  uint64_t sum = 0;
  const uint8_t *b = (const uint8_t *)copy;
  for (uint64_t i = 0; i < (uint64_t)n * 4; i++) sum += b[i];
  return (int64_t)sum;
}

/* Writes one byte of the mapped file's pages (a private copy of that page). */
int32_t poke(int32_t at, int32_t value) {
  if (at < 0 || (uint64_t)at >= size) return SP_E_PARAM;
  data[at] = (uint8_t)value;
  return 0;
}

int32_t freeze_data(void) { return sp_freeze(data, size); }

int32_t flush_data(void) { return sp_flush(data, size); }
