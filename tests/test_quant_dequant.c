/*
 * test_quant_dequant.c REF: get_rows' decoder of the issue-15 quant types
 * (src/backend/cpu/quant_blocks.h, sp_quant_dequantize_row, which
 * llm_ops.c's get_rows and copy call) against PyPI gguf's reference
 * dequantizer, bit for bit. REF is written by tests/test_quant_ref.py
 * (format there): random valid blocks of each type and gguf's floats.
 * "Same bits" treats two NaNs as equal (none are expected: scales are
 * finite). Every type of the list must be present.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/fp16.h"
#include "backend/cpu/quant_blocks.h"
#include "check.h"
#include "core/dtype.h"

typedef struct ref_header {
  uint32_t dtype, blocks, block_bytes, block_elems;
} ref_header;

static bool same_float(float a, float b) { return (isnan(a) && isnan(b)) || sp_f32_bits(a) == sp_f32_bits(b); }

/* Checks one type's section of the file; false on a short read. */
static bool check_section(FILE *f, const ref_header *h, bool *seen) {
  const sp_dtype_info *info = sp_dtype_get(h->dtype);
  CHECK(info && sp_quant_block_known(h->dtype), "dtype %u is decoded", h->dtype);
  if (!info || !sp_quant_block_known(h->dtype)) return false;
  CHECK(info->block_bytes == h->block_bytes && info->block_elems == h->block_elems,
        "%s layout: %u bytes / %u elems in dtype.c, gguf says %u / %u", info->name, info->block_bytes,
        info->block_elems, h->block_bytes, h->block_elems);
  size_t nb = (size_t)h->blocks * h->block_bytes, ne = (size_t)h->blocks * h->block_elems;
  uint8_t *raw = malloc(nb);
  float *ref = malloc(ne * sizeof *ref), *got = malloc(ne * sizeof *got);
  bool ok = raw && ref && got && fread(raw, 1, nb, f) == nb && fread(ref, sizeof *ref, ne, f) == ne;
  if (ok) {
    sp_quant_dequantize_row(h->dtype, raw, got, (int64_t)ne);
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < ne; i++)
      if (!same_float(got[i], ref[i]) && bad++ == 0) first = i;
    CHECK(bad == 0, "%s: %zu of %zu elements differ from gguf (first: element %zu, got %a, gguf %a)",
          info->name, bad, ne, first, got[first], ref[first]);
    if (bad == 0) printf("ok   %-6s %u blocks, %zu elements: same bits as gguf.quants.dequantize\n", info->name,
                         h->blocks, ne);
    seen[h->dtype] = true;
  }
  free(raw), free(ref), free(got);
  return ok;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s REF\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "rb");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  bool seen[SP_DTYPE_COUNT] = {0};
  ref_header h;
  while (fread(&h, sizeof h, 1, f) == 1)
    if (!check_section(f, &h, seen)) break;
  fclose(f);
  for (uint32_t t = 0; t < SP_DTYPE_COUNT; t++)
    if (sp_quant_block_known(t)) CHECK(seen[t], "the reference covers %s", sp_dtype_name(t));
  return CHECK_DONE();
}
