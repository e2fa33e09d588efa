/*
 * gguf.h: a validating, zero-copy GGUF (v2/v3) reader for the guest.
 *
 * The whole model file is mapped in guest memory; gguf_parse() checks every
 * count, length and offset against the bytes that remain before using it and
 * then indexes the file without copying it: keys, strings, arrays and tensor
 * data are pointers into the caller's buffer. All sizes are read as uint64_t
 * and range-checked before they are narrowed, because the guest's size_t is
 * 32 bits. A hostile file gets an error code and a message, never a crash.
 *
 * The file layout (all integers little-endian):
 *
 *  1. Header: magic "GGUF" (4 bytes), u32 version (2 or 3), u64 tensor_count,
 *     u64 kv_count.
 *  2. kv_count key/value pairs: a string key, a u32 value type (gguf_type),
 *     then the value. A string is a u64 byte length followed by that many
 *     bytes (UTF-8, not NUL-terminated). An array is a u32 element type, a
 *     u64 element count, then the elements back to back (arrays of arrays are
 *     rejected here).
 *  3. tensor_count tensor infos: a string name, u32 n_dims (1..4), n_dims u64
 *     extents (innermost first), u32 ggml type, u64 offset of the data
 *     relative to the data section.
 *  4. Padding up to a multiple of `general.alignment` (u32, a power of two,
 *     default 32). The data section starts there and runs to the end of the
 *     file; each tensor's offset is a multiple of the alignment.
 */
#ifndef SP_GUEST_GGUF_H
#define SP_GUEST_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* Status codes. Every failure also writes a message naming what and where. */
typedef enum gguf_status {
  GGUF_OK = 0,
  GGUF_E_TRUNCATED = -1, /* a field runs past the end of the file */
  GGUF_E_MAGIC = -2,     /* not a GGUF file */
  GGUF_E_VERSION = -3,   /* unsupported version (1, big-endian, future) */
  GGUF_E_INVALID = -4,   /* a count, type, length or value is impossible */
  GGUF_E_RANGE = -5,     /* tensor data outside the file or misaligned */
  GGUF_E_DUPLICATE = -6, /* two keys or two tensors share a name */
  GGUF_E_NOMEM = -7,     /* malloc failed (or the index would not fit) */
  GGUF_E_ARG = -8        /* NULL argument */
} gguf_status;

/* Metadata value types, per the GGUF spec. */
typedef enum gguf_type {
  GGUF_TYPE_UINT8 = 0,
  GGUF_TYPE_INT8 = 1,
  GGUF_TYPE_UINT16 = 2,
  GGUF_TYPE_INT16 = 3,
  GGUF_TYPE_UINT32 = 4,
  GGUF_TYPE_INT32 = 5,
  GGUF_TYPE_FLOAT32 = 6,
  GGUF_TYPE_BOOL = 7,
  GGUF_TYPE_STRING = 8,
  GGUF_TYPE_ARRAY = 9,
  GGUF_TYPE_UINT64 = 10,
  GGUF_TYPE_INT64 = 11,
  GGUF_TYPE_FLOAT64 = 12,
  GGUF_TYPE_COUNT
} gguf_type;

/* Tensor element types (ggml ids, per the GGUF spec). Ids not listed here
 * parse but are flagged unknown (gguf_tensor.type_known == false). */
typedef enum gguf_ggml_type {
  GGUF_GGML_F32 = 0,
  GGUF_GGML_F16 = 1,
  GGUF_GGML_Q4_0 = 2,
  GGUF_GGML_Q4_1 = 3,
  GGUF_GGML_Q5_0 = 6,
  GGUF_GGML_Q5_1 = 7,
  GGUF_GGML_Q8_0 = 8,
  GGUF_GGML_Q8_1 = 9,
  GGUF_GGML_Q2_K = 10,
  GGUF_GGML_Q3_K = 11,
  GGUF_GGML_Q4_K = 12,
  GGUF_GGML_Q5_K = 13,
  GGUF_GGML_Q6_K = 14,
  GGUF_GGML_Q8_K = 15,
  GGUF_GGML_IQ4_NL = 20,
  GGUF_GGML_IQ4_XS = 23,
  GGUF_GGML_I8 = 24,
  GGUF_GGML_I16 = 25,
  GGUF_GGML_I32 = 26,
  GGUF_GGML_I64 = 27,
  GGUF_GGML_F64 = 28,
  GGUF_GGML_BF16 = 30
} gguf_ggml_type;

/* Storage layout of a ggml type: `block_size` elements take `type_size`
 * bytes, so a row of ne0 elements (ne0 % block_size == 0) takes
 * ne0 / block_size * type_size bytes. */
typedef struct gguf_type_info {
  const char *name;    /* "F32", "Q4_1", ... */
  uint32_t block_size; /* elements per block */
  uint32_t type_size;  /* bytes per block */
} gguf_type_info;

/* One tensor, as described by the file. Points into the caller's buffer. */
typedef struct gguf_tensor {
  const char *name;       /* not NUL-terminated */
  size_t name_len;        /* bytes */
  uint32_t n_dims;        /* 1..4 */
  uint64_t ne[GGUF_MAX_DIMS]; /* extents, innermost first; unused dims are 1 */
  uint32_t type;          /* ggml type id (gguf_ggml_type when known) */
  bool type_known;        /* false: n_bytes is 0 and only the start is checked */
  uint64_t offset;        /* bytes from the start of the data section */
  uint64_t n_elems;       /* product of ne */
  uint64_t n_bytes;       /* size of the data; 0 when !type_known */
  const uint8_t *data;    /* start of the data in the caller's buffer */
} gguf_tensor;

typedef struct gguf_ctx gguf_ctx;

/*
 * Parses and validates a GGUF file held in memory.
 *   data, size: the whole file (borrowed; must outlive the context).
 *   out: receives the new context (owned by the caller; gguf_free it).
 *   err, err_cap: receives a NUL-terminated message on failure, e.g.
 *     "gguf: tensor 12 'blk.0.attn_q.weight': data [off, off+len) exceeds
 *     file size N". May be NULL.
 * Returns GGUF_OK, or a negative gguf_status with *out set to NULL.
 */
gguf_status gguf_parse(const uint8_t *data, uint64_t size, gguf_ctx **out, char *err,
                       size_t err_cap);

/* Frees a context (NULL is fine). The file buffer is not touched. */
void gguf_free(gguf_ctx *ctx);

/* The name of a status code, e.g. "truncated". */
const char *gguf_status_name(gguf_status st);

/* ---- file-level facts ---- */

uint32_t gguf_version(const gguf_ctx *ctx);
uint32_t gguf_alignment(const gguf_ctx *ctx);      /* general.alignment or 32 */
uint64_t gguf_data_offset(const gguf_ctx *ctx);    /* start of the data section */
uint64_t gguf_n_unknown_types(const gguf_ctx *ctx); /* tensors with unknown type */

/* ---- metadata ----
 * Keys are addressed by index 0..gguf_n_kv()-1. Getters return false (and
 * leave *out alone) when the index is out of range or the type does not
 * fit; they never abort. Strings are pointer + length into the file. */

uint64_t gguf_n_kv(const gguf_ctx *ctx);

/* The index of `key` (NUL-terminated), or -1 if absent. */
int64_t gguf_find_key(const gguf_ctx *ctx, const char *key);

/* The key name of entry i (not NUL-terminated), or NULL. */
const char *gguf_key_name(const gguf_ctx *ctx, int64_t i, size_t *len);

/* The value type of entry i, or GGUF_TYPE_COUNT if i is out of range. */
gguf_type gguf_kv_type(const gguf_ctx *ctx, int64_t i);

/* Any integer type whose value fits. */
bool gguf_get_u32(const gguf_ctx *ctx, int64_t i, uint32_t *out);
bool gguf_get_i64(const gguf_ctx *ctx, int64_t i, int64_t *out);

/* FLOAT32, or FLOAT64 narrowed. */
bool gguf_get_f32(const gguf_ctx *ctx, int64_t i, float *out);

bool gguf_get_bool(const gguf_ctx *ctx, int64_t i, bool *out);

/* A STRING value: its bytes (not NUL-terminated) and length, or NULL. */
const char *gguf_get_string(const gguf_ctx *ctx, int64_t i, size_t *len);

/* ---- arrays ---- */

/* Element type of an ARRAY entry, or GGUF_TYPE_COUNT if not an array. */
gguf_type gguf_arr_type(const gguf_ctx *ctx, int64_t i);

/* Element count of an ARRAY entry (0 if not an array). */
uint64_t gguf_arr_n(const gguf_ctx *ctx, int64_t i);

/* Raw little-endian elements of a non-string ARRAY entry, or NULL. The
 * pointer may be unaligned: read elements with memcpy or the getters. */
const void *gguf_arr_data(const gguf_ctx *ctx, int64_t i);

/* Element j of an integer ARRAY entry, widened to int64 (UINT64 values above
 * INT64_MAX fail). */
bool gguf_get_arr_int(const gguf_ctx *ctx, int64_t i, uint64_t j, int64_t *out);

/* Element j of a FLOAT32 ARRAY entry. */
bool gguf_get_arr_f32(const gguf_ctx *ctx, int64_t i, uint64_t j, float *out);

/* Element j of a STRING ARRAY entry (not NUL-terminated), or NULL. O(1). */
const char *gguf_get_arr_str(const gguf_ctx *ctx, int64_t i, uint64_t j, size_t *len);

/* ---- tensors ---- */

uint64_t gguf_n_tensors(const gguf_ctx *ctx);

/* Tensor i (0..gguf_n_tensors()-1), or NULL. Owned by the context. */
const gguf_tensor *gguf_tensor_at(const gguf_ctx *ctx, uint64_t i);

/* The tensor named `name` (NUL-terminated), or NULL. O(1). */
const gguf_tensor *gguf_find_tensor(const gguf_ctx *ctx, const char *name);

/* Layout of a ggml type id, or NULL when unknown. */
const gguf_type_info *gguf_ggml_type_info(uint32_t type);

/* Name of a ggml type id ("Q4_1"), or "unknown". */
const char *gguf_ggml_type_name(uint32_t type);

#endif
