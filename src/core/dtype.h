/*
 * dtype.h: sizes and layouts of the element types in samepage_abi.h.
 *
 * Quantized types are stored as blocks of `block_elems` elements taking
 * `block_bytes` bytes; plain types are blocks of one element.
 */
#ifndef SP_DTYPE_H
#define SP_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "samepage_abi.h"

typedef struct sp_dtype_info {
  const char *name;     /* "f32", "q4_0", ... */
  uint32_t block_elems; /* elements per block */
  uint32_t block_bytes; /* bytes per block */
  uint32_t align;       /* required alignment of offsets and strides */
} sp_dtype_info;

/* Returns the layout of `dtype`, or NULL for unknown values and SP_DTYPE_NONE. */
const sp_dtype_info *sp_dtype_get(uint32_t dtype);

/* Name of `dtype` for messages ("unknown" when out of range). */
const char *sp_dtype_name(uint32_t dtype);

/* Bytes in one row of `ne0` elements. Caller guarantees ne0 is a multiple of
 * the block size (the validator checks it). */
uint64_t sp_dtype_row_bytes(const sp_dtype_info *info, uint64_t ne0);

#endif
