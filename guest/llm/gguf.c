/*
 * gguf.c: parses and validates a GGUF file in memory, without copying it.
 *
 * The parser walks the file once with a bounds-checked cursor. Every count is
 * checked against the bytes that remain before anything is allocated for it
 * (each entry needs a minimum number of bytes, so counts bound allocations by
 * the file size), every length before it is used, and every product in 64
 * bits with overflow checks. Sizes are narrowed to size_t only once they are
 * known to lie inside the buffer, which is addressable by definition.
 *
 * What the context keeps: one record per key and per tensor, a pointer per
 * string-array element (so gguf_get_arr_str is O(1)), and two hash indexes
 * (keys and tensor names) that also catch duplicates. See gguf.h for the
 * file layout.
 */
#include "gguf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Counts above this are rejected outright; the hash indexes store uint32. */
#define GGUF_MAX_COUNT (1ull << 28)

/* Smallest encodings, used to bound counts before allocating. */
#define MIN_KV_BYTES 13     /* key length (8) + type (4) + 1-byte value */
#define MIN_TENSOR_BYTES 32 /* name length 8, n_dims 4, one dim 8, type 4, offset 8 */
#define MIN_STRING_BYTES 8  /* the length alone */

typedef struct gguf_kv {
  const char *key;    /* not NUL-terminated */
  size_t key_len;
  uint32_t type;      /* gguf_type */
  uint32_t arr_type;  /* element type when type == ARRAY */
  uint64_t arr_n;     /* element count when type == ARRAY */
  const uint8_t *val; /* scalar bytes, string bytes, or first array element */
  size_t str_len;     /* STRING: byte length */
  uint64_t str_base;  /* ARRAY of STRING: first slot in ctx->strs */
} gguf_kv;

struct gguf_ctx {
  const uint8_t *data;
  uint64_t size;
  uint32_t version;
  uint32_t alignment;
  uint64_t data_offset;
  uint64_t n_unknown;
  uint64_t n_kv;
  gguf_kv *kvs;            /* [n_kv] */
  uint64_t n_tensors;
  gguf_tensor *tensors;    /* [n_tensors] */
  uint64_t n_strs, cap_strs;
  const uint8_t **strs;    /* each points at a string's u64 length prefix */
  uint32_t *key_slots;     /* open addressing: kv index + 1, 0 = empty */
  uint32_t key_mask;
  uint32_t *tensor_slots;  /* same, for tensor names */
  uint32_t tensor_mask;
};

/* ---- ggml type table ---- */

static const struct {
  uint32_t id;
  gguf_type_info info;
} type_table[] = {
    {GGUF_GGML_F32, {"F32", 1, 4}},      {GGUF_GGML_F16, {"F16", 1, 2}},
    {GGUF_GGML_Q4_0, {"Q4_0", 32, 18}},  {GGUF_GGML_Q4_1, {"Q4_1", 32, 20}},
    {GGUF_GGML_Q5_0, {"Q5_0", 32, 22}},  {GGUF_GGML_Q5_1, {"Q5_1", 32, 24}},
    {GGUF_GGML_Q8_0, {"Q8_0", 32, 34}},  {GGUF_GGML_Q8_1, {"Q8_1", 32, 36}},
    {GGUF_GGML_Q2_K, {"Q2_K", 256, 84}}, {GGUF_GGML_Q3_K, {"Q3_K", 256, 110}},
    {GGUF_GGML_Q4_K, {"Q4_K", 256, 144}}, {GGUF_GGML_Q5_K, {"Q5_K", 256, 176}},
    {GGUF_GGML_Q6_K, {"Q6_K", 256, 210}}, {GGUF_GGML_Q8_K, {"Q8_K", 256, 292}},
    {GGUF_GGML_IQ4_NL, {"IQ4_NL", 32, 18}}, {GGUF_GGML_IQ4_XS, {"IQ4_XS", 256, 136}},
    {GGUF_GGML_I8, {"I8", 1, 1}},        {GGUF_GGML_I16, {"I16", 1, 2}},
    {GGUF_GGML_I32, {"I32", 1, 4}},      {GGUF_GGML_I64, {"I64", 1, 8}},
    {GGUF_GGML_F64, {"F64", 1, 8}},      {GGUF_GGML_BF16, {"BF16", 1, 2}},
};

const gguf_type_info *gguf_ggml_type_info(uint32_t type) {
  for (size_t i = 0; i < sizeof type_table / sizeof type_table[0]; i++)
    if (type_table[i].id == type) return &type_table[i].info;
  return NULL;
}

const char *gguf_ggml_type_name(uint32_t type) {
  const gguf_type_info *ti = gguf_ggml_type_info(type);
  return ti ? ti->name : "unknown";
}

const char *gguf_status_name(gguf_status st) {
  switch (st) {
    case GGUF_OK: return "ok";
    case GGUF_E_TRUNCATED: return "truncated";
    case GGUF_E_MAGIC: return "bad magic";
    case GGUF_E_VERSION: return "unsupported version";
    case GGUF_E_INVALID: return "invalid";
    case GGUF_E_RANGE: return "out of range";
    case GGUF_E_DUPLICATE: return "duplicate";
    case GGUF_E_NOMEM: return "out of memory";
    case GGUF_E_ARG: return "bad argument";
  }
  return "unknown status";
}

/* ---- little-endian reads (portable; compilers fold them into loads) ---- */

static uint16_t le16(const uint8_t *b) { return (uint16_t)(b[0] | b[1] << 8); }

static uint32_t le32(const uint8_t *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static uint64_t le64(const uint8_t *b) { return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32; }

static float f32_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static double f64_bits(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof d);
  return d;
}

/* ---- the parser: a bounds-checked cursor plus error reporting ---- */

typedef struct parser {
  const uint8_t *data;
  uint64_t size;
  uint64_t pos;   /* invariant: pos <= size */
  char where[96]; /* "kv 3 'general.name'", prefixed to messages */
  char *err;
  size_t err_cap;
  gguf_ctx *ctx;
} parser;

static gguf_status fail(parser *p, gguf_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "gguf: <where>: <message>" and returns st, so callers can
 * `return fail(...)`. */
static gguf_status fail(parser *p, gguf_status st, const char *fmt, ...) {
  if (!p->err || p->err_cap == 0) return st;
  int n = snprintf(p->err, p->err_cap, "gguf: %s%s", p->where, p->where[0] ? ": " : "");
  if (n < 0 || (size_t)n >= p->err_cap) return st;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->err + n, p->err_cap - (size_t)n, fmt, ap);
  va_end(ap);
  return st;
}

/* Copies a name into p->where for messages, escaping non-printable bytes
 * and truncating long names (a hostile name can be megabytes). */
static void set_where(parser *p, const char *what, uint64_t i, const char *name, size_t len) {
  int n = snprintf(p->where, sizeof p->where, "%s %llu", what, (unsigned long long)i);
  if (!name || n < 0) return;
  size_t o = (size_t)n;
  const size_t room = sizeof p->where - 8; /* space for quotes, "..." and NUL */
  if (o < room) p->where[o++] = ' ', p->where[o++] = '\'';
  for (size_t k = 0; k < len && o < room; k++) {
    unsigned char c = (unsigned char)name[k];
    p->where[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
  }
  if (len > 0 && o >= room) p->where[o++] = '.', p->where[o++] = '.', p->where[o++] = '.';
  p->where[o++] = '\'';
  p->where[o] = '\0';
}

static uint64_t remaining(const parser *p) { return p->size - p->pos; }

/* Fails unless n more bytes are available for `what`. */
static gguf_status need(parser *p, uint64_t n, const char *what) {
  if (n <= remaining(p)) return GGUF_OK;
  return fail(p, GGUF_E_TRUNCATED, "%s at offset %llu needs %llu bytes, only %llu remain", what,
              (unsigned long long)p->pos, (unsigned long long)n,
              (unsigned long long)remaining(p));
}

static gguf_status rd_u32(parser *p, uint32_t *v, const char *what) {
  gguf_status st = need(p, 4, what);
  if (st) return st;
  *v = le32(p->data + p->pos);
  p->pos += 4;
  return GGUF_OK;
}

static gguf_status rd_u64(parser *p, uint64_t *v, const char *what) {
  gguf_status st = need(p, 8, what);
  if (st) return st;
  *v = le64(p->data + p->pos);
  p->pos += 8;
  return GGUF_OK;
}

/* Reads a string: u64 length, then that many bytes (checked first). */
static gguf_status rd_str(parser *p, const char **s, size_t *len, const char *what) {
  uint64_t n;
  gguf_status st = rd_u64(p, &n, what);
  if (st) return st;
  if (n > remaining(p))
    return fail(p, GGUF_E_TRUNCATED, "%s length %llu at offset %llu exceeds the %llu bytes left",
                what, (unsigned long long)n, (unsigned long long)(p->pos - 8),
                (unsigned long long)remaining(p));
  *s = (const char *)(p->data + p->pos);
  *len = (size_t)n; /* fits: the bytes are inside the buffer */
  p->pos += n;
  return GGUF_OK;
}

/* calloc for n elements, n checked before narrowing to size_t. */
static void *alloc_array(uint64_t n, size_t elem) {
  if (n == 0) n = 1;
  if (n > SIZE_MAX / elem) return NULL;
  return calloc((size_t)n, elem);
}

/* ---- a string-keyed hash index (keys and tensor names) ---- */

static uint32_t hash_bytes(const char *s, size_t len) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
  return h;
}

/* Allocates a table with at least 2n slots (a power of two). */
static uint32_t *index_new(uint64_t n, uint32_t *mask) {
  uint64_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  *mask = (uint32_t)(cap - 1);
  return alloc_array(cap, sizeof(uint32_t));
}

typedef const char *(*name_fn)(const gguf_ctx *ctx, uint64_t i, size_t *len);

/* Finds `name`, returning its index + 1, or 0 (and the empty slot) if absent. */
static uint32_t index_lookup(const gguf_ctx *ctx, const uint32_t *slots, uint32_t mask,
                             name_fn get, const char *name, size_t len, uint32_t *slot) {
  uint32_t h = hash_bytes(name, len) & mask;
  for (;; h = (h + 1) & mask) {
    uint32_t v = slots[h];
    if (v == 0) {
      if (slot) *slot = h;
      return 0;
    }
    size_t l2;
    const char *s2 = get(ctx, v - 1, &l2);
    if (l2 == len && memcmp(s2, name, len) == 0) return v;
  }
}

static const char *kv_name(const gguf_ctx *ctx, uint64_t i, size_t *len) {
  *len = ctx->kvs[i].key_len;
  return ctx->kvs[i].key;
}

static const char *tensor_name(const gguf_ctx *ctx, uint64_t i, size_t *len) {
  *len = ctx->tensors[i].name_len;
  return ctx->tensors[i].name;
}

/* Builds one index over n names; a repeated name is an error. */
static gguf_status index_build(parser *p, uint64_t n, name_fn get, const char *what,
                               uint32_t **slots_out, uint32_t *mask) {
  uint32_t *slots = index_new(n, mask);
  if (!slots) return fail(p, GGUF_E_NOMEM, "no memory for the %s index (%llu entries)", what,
                          (unsigned long long)n);
  *slots_out = slots;
  for (uint64_t i = 0; i < n; i++) {
    size_t len;
    const char *name = get(p->ctx, i, &len);
    uint32_t slot, prev = index_lookup(p->ctx, slots, *mask, get, name, len, &slot);
    if (prev) {
      set_where(p, what, i, name, len);
      return fail(p, GGUF_E_DUPLICATE, "duplicate name (also %s %u)", what, prev - 1);
    }
    slots[slot] = (uint32_t)(i + 1);
  }
  return GGUF_OK;
}

/* ---- header ---- */

static gguf_status parse_header(parser *p, uint64_t *n_tensors, uint64_t *n_kv) {
  gguf_status st = need(p, 4, "magic");
  if (st) return fail(p, GGUF_E_MAGIC, "file of %llu bytes is too short for the magic",
                      (unsigned long long)p->size);
  if (memcmp(p->data, "GGUF", 4) != 0)
    return fail(p, GGUF_E_MAGIC, "bad magic %02x %02x %02x %02x (want \"GGUF\")", p->data[0],
                p->data[1], p->data[2], p->data[3]);
  p->pos = 4;
  uint32_t version;
  if ((st = rd_u32(p, &version, "version"))) return st;
  if (version == 1) return fail(p, GGUF_E_VERSION, "version 1 is not supported (want 2 or 3)");
  if (version != 2 && version != 3)
    return fail(p, GGUF_E_VERSION, "version %u is not supported (want 2 or 3%s)", version,
                (version & 0xffff) == 0 ? "; big-endian file?" : "");
  p->ctx->version = version;
  if ((st = rd_u64(p, n_tensors, "tensor count"))) return st;
  if ((st = rd_u64(p, n_kv, "kv count"))) return st;
  if (*n_kv > GGUF_MAX_COUNT || *n_kv > remaining(p) / MIN_KV_BYTES)
    return fail(p, GGUF_E_INVALID, "kv count %llu cannot fit in the %llu bytes left",
                (unsigned long long)*n_kv, (unsigned long long)remaining(p));
  if (*n_tensors > GGUF_MAX_COUNT || *n_tensors > remaining(p) / MIN_TENSOR_BYTES)
    return fail(p, GGUF_E_INVALID, "tensor count %llu cannot fit in the %llu bytes left",
                (unsigned long long)*n_tensors, (unsigned long long)remaining(p));
  return GGUF_OK;
}

/* ---- metadata values ---- */

/* Byte size of a fixed-size value type; 0 for STRING, ARRAY and unknown. */
static uint32_t scalar_size(uint32_t type) {
  switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
  }
}

/* Makes room for n more string pointers (n already bounded by the file). */
static gguf_status reserve_strs(parser *p, uint64_t n) {
  gguf_ctx *c = p->ctx;
  if (c->n_strs + n <= c->cap_strs) return GGUF_OK;
  uint64_t cap = c->cap_strs ? c->cap_strs : 256;
  while (cap < c->n_strs + n) cap *= 2;
  if (cap > SIZE_MAX / sizeof(*c->strs))
    return fail(p, GGUF_E_NOMEM, "%llu strings do not fit in memory", (unsigned long long)cap);
  const uint8_t **s = realloc(c->strs, (size_t)cap * sizeof(*s));
  if (!s) return fail(p, GGUF_E_NOMEM, "no memory for %llu string pointers",
                      (unsigned long long)cap);
  c->strs = s;
  c->cap_strs = cap;
  return GGUF_OK;
}

static gguf_status parse_string_array(parser *p, gguf_kv *kv) {
  if (kv->arr_n > remaining(p) / MIN_STRING_BYTES)
    return fail(p, GGUF_E_TRUNCATED, "array of %llu strings cannot fit in the %llu bytes left",
                (unsigned long long)kv->arr_n, (unsigned long long)remaining(p));
  gguf_status st = reserve_strs(p, kv->arr_n);
  if (st) return st;
  kv->str_base = p->ctx->n_strs;
  for (uint64_t j = 0; j < kv->arr_n; j++) {
    const uint8_t *at = p->data + p->pos;
    const char *s;
    size_t len;
    if ((st = rd_str(p, &s, &len, "array string"))) return st;
    p->ctx->strs[p->ctx->n_strs++] = at;
  }
  return GGUF_OK;
}

static gguf_status parse_array(parser *p, gguf_kv *kv) {
  gguf_status st;
  if ((st = rd_u32(p, &kv->arr_type, "array element type"))) return st;
  if ((st = rd_u64(p, &kv->arr_n, "array length"))) return st;
  if (kv->arr_type == GGUF_TYPE_ARRAY)
    return fail(p, GGUF_E_INVALID, "arrays of arrays are not supported");
  if (kv->arr_type == GGUF_TYPE_STRING) return parse_string_array(p, kv);
  uint32_t esize = scalar_size(kv->arr_type);
  if (esize == 0) return fail(p, GGUF_E_INVALID, "unknown array element type %u", kv->arr_type);
  if (kv->arr_n > remaining(p) / esize)
    return fail(p, GGUF_E_TRUNCATED,
                "array of %llu x %u-byte elements at offset %llu exceeds the %llu bytes left",
                (unsigned long long)kv->arr_n, esize, (unsigned long long)p->pos,
                (unsigned long long)remaining(p));
  kv->val = p->data + p->pos;
  p->pos += kv->arr_n * esize;
  return GGUF_OK;
}

static gguf_status parse_value(parser *p, gguf_kv *kv) {
  if (kv->type == GGUF_TYPE_STRING) {
    const char *s;
    gguf_status st = rd_str(p, &s, &kv->str_len, "string value");
    kv->val = (const uint8_t *)s;
    return st;
  }
  if (kv->type == GGUF_TYPE_ARRAY) return parse_array(p, kv);
  uint32_t size = scalar_size(kv->type);
  if (size == 0) return fail(p, GGUF_E_INVALID, "unknown value type %u", kv->type);
  gguf_status st = need(p, size, "value");
  if (st) return st;
  kv->val = p->data + p->pos;
  p->pos += size;
  return GGUF_OK;
}

static gguf_status parse_kvs(parser *p, uint64_t n_kv) {
  gguf_ctx *c = p->ctx;
  if (!(c->kvs = alloc_array(n_kv, sizeof(gguf_kv))))
    return fail(p, GGUF_E_NOMEM, "no memory for %llu kvs", (unsigned long long)n_kv);
  for (uint64_t i = 0; i < n_kv; i++) {
    gguf_kv *kv = &c->kvs[i];
    gguf_status st;
    set_where(p, "kv", i, NULL, 0);
    if ((st = rd_str(p, &kv->key, &kv->key_len, "key"))) return st;
    set_where(p, "kv", i, kv->key, kv->key_len);
    if ((st = rd_u32(p, &kv->type, "value type"))) return st;
    if ((st = parse_value(p, kv))) return st;
    c->n_kv = i + 1; /* only fully parsed entries count */
  }
  p->where[0] = '\0';
  return index_build(p, c->n_kv, kv_name, "kv", &c->key_slots, &c->key_mask);
}

/* Reads general.alignment: must be a UINT32 power of two when present. */
static gguf_status parse_alignment(parser *p) {
  gguf_ctx *c = p->ctx;
  c->alignment = GGUF_DEFAULT_ALIGNMENT;
  int64_t i = gguf_find_key(c, "general.alignment");
  if (i < 0) return GGUF_OK;
  set_where(p, "kv", (uint64_t)i, "general.alignment", 17);
  if (c->kvs[i].type != GGUF_TYPE_UINT32)
    return fail(p, GGUF_E_INVALID, "type %u, want uint32", c->kvs[i].type);
  uint32_t a = le32(c->kvs[i].val);
  if (a == 0 || (a & (a - 1)) != 0)
    return fail(p, GGUF_E_INVALID, "alignment %u is not a power of two", a);
  c->alignment = a;
  p->where[0] = '\0';
  return GGUF_OK;
}

/* ---- tensor infos ---- */

/* Reads the extents; checks each and their product against int64 overflow. */
static gguf_status parse_dims(parser *p, gguf_tensor *t) {
  gguf_status st;
  if ((st = rd_u32(p, &t->n_dims, "n_dims"))) return st;
  if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
    return fail(p, GGUF_E_INVALID, "n_dims %u is outside 1..%d", t->n_dims, GGUF_MAX_DIMS);
  t->n_elems = 1;
  for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
    t->ne[d] = 1;
    if (d >= t->n_dims) continue;
    if ((st = rd_u64(p, &t->ne[d], "dim"))) return st;
    if (t->ne[d] > (uint64_t)INT64_MAX)
      return fail(p, GGUF_E_INVALID, "dim %u = %llu exceeds INT64_MAX", d,
                  (unsigned long long)t->ne[d]);
    if (t->ne[d] != 0 && t->n_elems > (uint64_t)INT64_MAX / t->ne[d])
      return fail(p, GGUF_E_INVALID, "element count overflows at dim %u", d);
    t->n_elems *= t->ne[d];
  }
  return GGUF_OK;
}

/* Derives n_bytes from the type; unknown types are flagged, not rejected. */
static gguf_status size_tensor(parser *p, gguf_tensor *t) {
  const gguf_type_info *ti = gguf_ggml_type_info(t->type);
  t->type_known = ti != NULL;
  if (!ti) {
    p->ctx->n_unknown++;
    return GGUF_OK;
  }
  if (t->ne[0] % ti->block_size != 0)
    return fail(p, GGUF_E_INVALID, "dim 0 = %llu is not a multiple of the %s block size %u",
                (unsigned long long)t->ne[0], ti->name, ti->block_size);
  uint64_t blocks = t->n_elems / ti->block_size;
  if (blocks > UINT64_MAX / ti->type_size)
    return fail(p, GGUF_E_INVALID, "byte size overflows");
  t->n_bytes = blocks * ti->type_size;
  return GGUF_OK;
}

static gguf_status parse_tensor_infos(parser *p, uint64_t n) {
  gguf_ctx *c = p->ctx;
  if (!(c->tensors = alloc_array(n, sizeof(gguf_tensor))))
    return fail(p, GGUF_E_NOMEM, "no memory for %llu tensors", (unsigned long long)n);
  for (uint64_t i = 0; i < n; i++) {
    gguf_tensor *t = &c->tensors[i];
    gguf_status st;
    set_where(p, "tensor", i, NULL, 0);
    if ((st = rd_str(p, &t->name, &t->name_len, "name"))) return st;
    set_where(p, "tensor", i, t->name, t->name_len);
    if ((st = parse_dims(p, t))) return st;
    if ((st = rd_u32(p, &t->type, "type"))) return st;
    if ((st = rd_u64(p, &t->offset, "offset"))) return st;
    if ((st = size_tensor(p, t))) return st;
    c->n_tensors = i + 1;
  }
  p->where[0] = '\0';
  return index_build(p, c->n_tensors, tensor_name, "tensor", &c->tensor_slots, &c->tensor_mask);
}

/* Places the data section and checks every tensor's range and alignment. */
static gguf_status place_tensors(parser *p) {
  gguf_ctx *c = p->ctx;
  uint64_t a = c->alignment;
  c->data_offset = (p->pos + a - 1) / a * a; /* pos <= size, so no overflow */
  if (c->n_tensors == 0) return GGUF_OK;
  if (c->data_offset > p->size)
    return fail(p, GGUF_E_TRUNCATED, "data section would start at %llu, past the end (%llu)",
                (unsigned long long)c->data_offset, (unsigned long long)p->size);
  uint64_t room = p->size - c->data_offset;
  for (uint64_t i = 0; i < c->n_tensors; i++) {
    gguf_tensor *t = &c->tensors[i];
    set_where(p, "tensor", i, t->name, t->name_len);
    if (t->offset % a != 0)
      return fail(p, GGUF_E_RANGE, "data offset %llu is not a multiple of the alignment %u",
                  (unsigned long long)t->offset, c->alignment);
    if (t->offset > room || t->n_bytes > room - t->offset)
      return fail(p, GGUF_E_RANGE, "data [%llu, %llu) exceeds file size %llu",
                  (unsigned long long)(c->data_offset + t->offset),
                  (unsigned long long)(c->data_offset + t->offset + t->n_bytes),
                  (unsigned long long)p->size);
    t->data = p->data + c->data_offset + t->offset;
  }
  p->where[0] = '\0';
  return GGUF_OK;
}

gguf_status gguf_parse(const uint8_t *data, uint64_t size, gguf_ctx **out, char *err,
                       size_t err_cap) {
  parser p = {data, size, 0, "", err, err_cap, NULL};
  if (err && err_cap) err[0] = '\0';
  if (!out) return fail(&p, GGUF_E_ARG, "out is NULL");
  *out = NULL;
  if (!data) return fail(&p, GGUF_E_ARG, "data is NULL");
  /* A buffer larger than the address space cannot exist; the size lies. */
  if (size > (uint64_t)SIZE_MAX)
    return fail(&p, GGUF_E_ARG, "size %llu exceeds the address space", (unsigned long long)size);
  if (!(p.ctx = calloc(1, sizeof(gguf_ctx)))) return fail(&p, GGUF_E_NOMEM, "no memory");
  p.ctx->data = data;
  p.ctx->size = size;
  uint64_t n_tensors, n_kv;
  gguf_status st = parse_header(&p, &n_tensors, &n_kv);
  if (!st) st = parse_kvs(&p, n_kv);
  if (!st) st = parse_alignment(&p);
  if (!st) st = parse_tensor_infos(&p, n_tensors);
  if (!st) st = place_tensors(&p);
  if (st) {
    gguf_free(p.ctx);
    return st;
  }
  *out = p.ctx;
  return GGUF_OK;
}

void gguf_free(gguf_ctx *ctx) {
  if (!ctx) return;
  free(ctx->kvs);
  free(ctx->tensors);
  free(ctx->strs);
  free(ctx->key_slots);
  free(ctx->tensor_slots);
  free(ctx);
}

/* ---- file-level accessors ---- */

uint32_t gguf_version(const gguf_ctx *ctx) { return ctx ? ctx->version : 0; }
uint32_t gguf_alignment(const gguf_ctx *ctx) { return ctx ? ctx->alignment : 0; }
uint64_t gguf_data_offset(const gguf_ctx *ctx) { return ctx ? ctx->data_offset : 0; }
uint64_t gguf_n_unknown_types(const gguf_ctx *ctx) { return ctx ? ctx->n_unknown : 0; }

/* ---- metadata accessors ---- */

uint64_t gguf_n_kv(const gguf_ctx *ctx) { return ctx ? ctx->n_kv : 0; }

/* The entry at i, or NULL when ctx is NULL or i out of range. */
static const gguf_kv *kv_at(const gguf_ctx *ctx, int64_t i) {
  if (!ctx || i < 0 || (uint64_t)i >= ctx->n_kv) return NULL;
  return &ctx->kvs[i];
}

int64_t gguf_find_key(const gguf_ctx *ctx, const char *key) {
  if (!ctx || !key || !ctx->key_slots) return -1;
  uint32_t v = index_lookup(ctx, ctx->key_slots, ctx->key_mask, kv_name, key, strlen(key), NULL);
  return (int64_t)v - 1;
}

const char *gguf_key_name(const gguf_ctx *ctx, int64_t i, size_t *len) {
  const gguf_kv *kv = kv_at(ctx, i);
  if (!kv) return NULL;
  if (len) *len = kv->key_len;
  return kv->key;
}

gguf_type gguf_kv_type(const gguf_ctx *ctx, int64_t i) {
  const gguf_kv *kv = kv_at(ctx, i);
  return kv ? (gguf_type)kv->type : GGUF_TYPE_COUNT;
}

/* Reads an integer element of type `type` at b. Returns false for non-integer
 * types and for UINT64 values that do not fit in int64. */
static bool read_int(uint32_t type, const uint8_t *b, int64_t *out) {
  switch (type) {
    case GGUF_TYPE_UINT8: *out = b[0]; return true;
    case GGUF_TYPE_INT8: *out = (int8_t)b[0]; return true;
    case GGUF_TYPE_UINT16: *out = le16(b); return true;
    case GGUF_TYPE_INT16: *out = (int16_t)le16(b); return true;
    case GGUF_TYPE_UINT32: *out = le32(b); return true;
    case GGUF_TYPE_INT32: *out = (int32_t)le32(b); return true;
    case GGUF_TYPE_INT64: *out = (int64_t)le64(b); return true;
    case GGUF_TYPE_UINT64:
      if (le64(b) > (uint64_t)INT64_MAX) return false;
      *out = (int64_t)le64(b);
      return true;
    default: return false;
  }
}

bool gguf_get_i64(const gguf_ctx *ctx, int64_t i, int64_t *out) {
  const gguf_kv *kv = kv_at(ctx, i);
  return kv && out && read_int(kv->type, kv->val, out);
}

bool gguf_get_u32(const gguf_ctx *ctx, int64_t i, uint32_t *out) {
  int64_t v;
  if (!out || !gguf_get_i64(ctx, i, &v) || v < 0 || v > (int64_t)UINT32_MAX) return false;
  *out = (uint32_t)v;
  return true;
}

bool gguf_get_f32(const gguf_ctx *ctx, int64_t i, float *out) {
  const gguf_kv *kv = kv_at(ctx, i);
  if (!kv || !out) return false;
  if (kv->type == GGUF_TYPE_FLOAT32) *out = f32_bits(le32(kv->val));
  else if (kv->type == GGUF_TYPE_FLOAT64) *out = (float)f64_bits(le64(kv->val));
  else return false;
  return true;
}

bool gguf_get_bool(const gguf_ctx *ctx, int64_t i, bool *out) {
  const gguf_kv *kv = kv_at(ctx, i);
  if (!kv || !out || kv->type != GGUF_TYPE_BOOL) return false;
  *out = kv->val[0] != 0;
  return true;
}

const char *gguf_get_string(const gguf_ctx *ctx, int64_t i, size_t *len) {
  const gguf_kv *kv = kv_at(ctx, i);
  if (!kv || kv->type != GGUF_TYPE_STRING) return NULL;
  if (len) *len = kv->str_len;
  return (const char *)kv->val;
}

/* ---- array accessors ---- */

/* The array entry at i, or NULL. */
static const gguf_kv *arr_at(const gguf_ctx *ctx, int64_t i) {
  const gguf_kv *kv = kv_at(ctx, i);
  return kv && kv->type == GGUF_TYPE_ARRAY ? kv : NULL;
}

gguf_type gguf_arr_type(const gguf_ctx *ctx, int64_t i) {
  const gguf_kv *kv = arr_at(ctx, i);
  return kv ? (gguf_type)kv->arr_type : GGUF_TYPE_COUNT;
}

uint64_t gguf_arr_n(const gguf_ctx *ctx, int64_t i) {
  const gguf_kv *kv = arr_at(ctx, i);
  return kv ? kv->arr_n : 0;
}

const void *gguf_arr_data(const gguf_ctx *ctx, int64_t i) {
  const gguf_kv *kv = arr_at(ctx, i);
  return kv && kv->arr_type != GGUF_TYPE_STRING ? kv->val : NULL;
}

bool gguf_get_arr_int(const gguf_ctx *ctx, int64_t i, uint64_t j, int64_t *out) {
  const gguf_kv *kv = arr_at(ctx, i);
  if (!kv || !out || j >= kv->arr_n || kv->arr_type == GGUF_TYPE_STRING) return false;
  return read_int(kv->arr_type, kv->val + j * scalar_size(kv->arr_type), out);
}

bool gguf_get_arr_f32(const gguf_ctx *ctx, int64_t i, uint64_t j, float *out) {
  const gguf_kv *kv = arr_at(ctx, i);
  if (!kv || !out || j >= kv->arr_n || kv->arr_type != GGUF_TYPE_FLOAT32) return false;
  *out = f32_bits(le32(kv->val + j * 4));
  return true;
}

const char *gguf_get_arr_str(const gguf_ctx *ctx, int64_t i, uint64_t j, size_t *len) {
  const gguf_kv *kv = arr_at(ctx, i);
  if (!kv || j >= kv->arr_n || kv->arr_type != GGUF_TYPE_STRING) return NULL;
  const uint8_t *at = ctx->strs[kv->str_base + j];
  if (len) *len = (size_t)le64(at); /* validated at parse time */
  return (const char *)(at + 8);
}

/* ---- tensor accessors ---- */

uint64_t gguf_n_tensors(const gguf_ctx *ctx) { return ctx ? ctx->n_tensors : 0; }

const gguf_tensor *gguf_tensor_at(const gguf_ctx *ctx, uint64_t i) {
  if (!ctx || i >= ctx->n_tensors) return NULL;
  return &ctx->tensors[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_ctx *ctx, const char *name) {
  if (!ctx || !name || !ctx->tensor_slots) return NULL;
  uint32_t v = index_lookup(ctx, ctx->tensor_slots, ctx->tensor_mask, tensor_name, name,
                            strlen(name), NULL);
  return v ? &ctx->tensors[v - 1] : NULL;
}
