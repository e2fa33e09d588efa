/* test_gguf.c: the guest GGUF parser, natively.
 *
 *  1. The real model (argv[1] or $SP_TEST_MODEL; exit 77 when absent):
 *     parse it, print a summary, check facts we know about SmolLM2-135M, and
 *     truncate it at every offset of the first 8 KiB and at a sample beyond.
 *  2. A synthetic file holding every value type, built here: read every
 *     value back, then patch one field at a time into a hostile value (huge
 *     counts, lying lengths, bad offsets, bad dims, wrong magic/version,
 *     duplicates, ...) and check the exact error and its message.
 *  3. Every truncation of the synthetic file, and random byte mutations:
 *     they must fail cleanly or parse into a consistent context.
 * `test_gguf MODEL` runs part 1, `test_gguf --synthetic` parts 2 and 3
 * (two CTest entries: a missing model skips part 1 alone, never passes it).
 * Run it under -fsanitize=address,undefined (see tests/llm/README.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf.h"

static char err[512];

/* ---- helpers ---- */

static uint8_t *read_file(const char *path, uint64_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = n > 0 ? malloc((size_t)n) : NULL;
  if (b && fread(b, 1, (size_t)n, f) != (size_t)n) free(b), b = NULL;
  fclose(f);
  *size = (uint64_t)n;
  return b;
}

static bool str_is(const char *s, size_t n, const char *want) {
  return s && n == strlen(want) && memcmp(s, want, n) == 0;
}

/* Parses a private heap copy of data[0..n) (so ASan sees any overread) and
 * returns the status; on success also checks the context's invariants. */
static gguf_status parse_copy(const uint8_t *data, uint64_t n) {
  uint8_t *copy = malloc(n ? (size_t)n : 1);
  memcpy(copy, data, (size_t)n);
  gguf_ctx *g = NULL;
  err[0] = '\0';
  gguf_status st = gguf_parse(copy, n, &g, err, sizeof err);
  if (st == GGUF_OK) {
    for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
      const gguf_tensor *t = gguf_tensor_at(g, i);
      CHECK(t->data >= copy && (uint64_t)(t->data - copy) + t->n_bytes <= n, "tensor %llu range",
            (unsigned long long)i);
    }
    for (int64_t i = 0; i < (int64_t)gguf_n_kv(g); i++) /* every getter on every key */
      for (uint64_t j = 0; j < gguf_arr_n(g, i) && j < 4; j++) {
        int64_t v;
        size_t len;
        gguf_get_arr_int(g, i, j, &v);
        gguf_get_arr_str(g, i, j, &len);
      }
  } else {
    CHECK(g == NULL && strncmp(err, "gguf: ", 6) == 0 && strlen(err) > 10, "bad error '%s'", err);
  }
  gguf_free(g);
  free(copy);
  return st;
}

/* ---- 1. the real model ---- */

static void summarize(const gguf_ctx *g) {
  size_t n;
  const char *arch = gguf_get_string(g, gguf_find_key(g, "general.architecture"), &n);
  uint32_t layers = 0;
  gguf_get_u32(g, gguf_find_key(g, "llama.block_count"), &layers);
  printf("model: GGUF v%u, arch '%.*s', %u layers, %llu kvs, %llu tensors, alignment %u, "
         "data at %llu\n", gguf_version(g), arch ? (int)n : 0, arch ? arch : "", layers,
         (unsigned long long)gguf_n_kv(g), (unsigned long long)gguf_n_tensors(g),
         gguf_alignment(g), (unsigned long long)gguf_data_offset(g));
  uint64_t count[64] = {0}, bytes[64] = {0};
  for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
    const gguf_tensor *t = gguf_tensor_at(g, i);
    count[t->type & 63]++;
    bytes[t->type & 63] += t->n_bytes;
  }
  for (uint32_t t = 0; t < 64; t++)
    if (count[t]) printf("  %-5s %4llu tensors %10llu bytes\n", gguf_ggml_type_name(t),
                         (unsigned long long)count[t], (unsigned long long)bytes[t]);
}

static void check_model_facts(const gguf_ctx *g, uint64_t size) {
  size_t n;
  CHECK(gguf_version(g) == 3, "version %u", gguf_version(g));
  CHECK(gguf_n_tensors(g) == 272, "tensors %llu", (unsigned long long)gguf_n_tensors(g));
  const char *arch = gguf_get_string(g, gguf_find_key(g, "general.architecture"), &n);
  CHECK(str_is(arch, n, "llama"), "arch");
  uint32_t u = 0;
  CHECK(gguf_get_u32(g, gguf_find_key(g, "llama.block_count"), &u) && u == 30, "layers %u", u);
  int64_t tk = gguf_find_key(g, "tokenizer.ggml.tokens");
  CHECK(gguf_arr_type(g, tk) == GGUF_TYPE_STRING && gguf_arr_n(g, tk) == 49152, "tokens");
  const char *t1 = gguf_get_arr_str(g, tk, 1, &n);
  CHECK(str_is(t1, n, "<|im_start|>"), "token 1");
  CHECK(gguf_get_arr_str(g, tk, 49152, &n) == NULL, "token past the end");
  float eps = 0;
  CHECK(gguf_get_f32(g, gguf_find_key(g, "llama.attention.layer_norm_rms_epsilon"), &eps) &&
            eps > 0.9e-5f && eps < 1.1e-5f, "eps %g", eps);
  CHECK(gguf_find_key(g, "no.such.key") == -1, "absent key");
  const gguf_tensor *e = gguf_find_tensor(g, "token_embd.weight");
  CHECK(e && e->type == GGUF_GGML_Q8_0 && e->ne[0] == 576 && e->ne[1] == 49152 &&
            e->n_bytes == 576ull / 32 * 34 * 49152, "token_embd");
  const gguf_tensor *q = gguf_find_tensor(g, "blk.0.attn_q.weight");
  CHECK(q && q->type == GGUF_GGML_Q4_1 && q->n_bytes == 576ull / 32 * 20 * 576, "attn_q");
  CHECK(gguf_find_tensor(g, "blk.30.attn_q.weight") == NULL, "absent tensor");
  for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
    const gguf_tensor *t = gguf_tensor_at(g, i);
    uint64_t off = gguf_data_offset(g) + t->offset;
    CHECK(t->type_known && off % 32 == 0 && off + t->n_bytes <= size, "tensor %llu",
          (unsigned long long)i);
  }
}

/* Truncations of the real file: everything before the end of the last
 * tensor's data must fail. */
static void truncate_model(const uint8_t *data, uint64_t size, const gguf_ctx *g) {
  uint64_t end = 0, fails = 0, tried = 0;
  for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
    const gguf_tensor *t = gguf_tensor_at(g, i);
    uint64_t e = gguf_data_offset(g) + t->offset + t->n_bytes;
    if (e > end) end = e;
  }
  uint64_t rng = 12345;
  for (uint64_t k = 0; k < 8192 + 300; k++) {
    uint64_t n = k;
    if (k >= 8192) { /* a sample of the rest, biased to the metadata */
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      uint64_t span = k % 16 ? gguf_data_offset(g) + 64 : end;
      n = (rng >> 17) % span;
    }
    gguf_status st = parse_copy(data, n);
    tried++;
    fails += st != GGUF_OK;
    CHECK(st != GGUF_OK, "truncated at %llu parsed", (unsigned long long)n);
  }
  printf("model truncations: %llu tried, %llu rejected\n", (unsigned long long)tried,
         (unsigned long long)fails);
}

/* 77 (skip) when there is no model to read. */
static int test_model(const char *path) {
  uint64_t size;
  uint8_t *data = path ? read_file(path, &size) : NULL;
  if (!data) {
    printf("SKIP: no model (pass a path or set SP_TEST_MODEL)\n");
    return 77;
  }
  gguf_ctx *g = NULL;
  gguf_status st = gguf_parse(data, size, &g, err, sizeof err);
  CHECK(st == GGUF_OK, "parse: %s", err);
  if (st == GGUF_OK) {
    summarize(g);
    check_model_facts(g, size);
    truncate_model(data, size, g);
  }
  gguf_free(g);
  free(data);
  return 0;
}

/* ---- 2. a synthetic file with every value type ---- */

typedef struct buf {
  uint8_t *p;
  size_t n, cap;
} buf;

static void put(buf *b, const void *src, size_t n) {
  if (b->n + n > b->cap) {
    b->cap = (b->n + n) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, src, n);
  b->n += n;
}

static void put_u32(buf *b, uint32_t v) { put(b, &v, 4); } /* tests run little-endian */
static void put_u64(buf *b, uint64_t v) { put(b, &v, 8); }

static void put_str(buf *b, const char *s) {
  put_u64(b, strlen(s));
  put(b, s, strlen(s));
}

/* Offsets of the fields the hostile cases patch. */
typedef struct layout {
  size_t n_tensors, n_kv, key0_len, str_len, align_type, align_val, arr_i32_type, arr_i32_n;
  size_t arr_str_n, arr_str_len0, kv_u8_type, dup_b_key, t0_ndims, t0_dim0, t0_dim1, t1_dim0;
  size_t t2_offset, t3_name, t3_offset;
} layout;

static void put_kv_head(buf *b, const char *key, uint32_t type) {
  put_str(b, key);
  put_u32(b, type);
}

static void build_kvs(buf *b, layout *L) {
  L->key0_len = b->n;
  put_kv_head(b, "general.architecture", GGUF_TYPE_STRING);
  L->str_len = b->n;
  put_str(b, "llama");
  put_kv_head(b, "general.alignment", 0);
  L->align_type = b->n - 4;
  L->align_val = b->n;
  put_u32(b, 32);
  uint8_t u8 = 200, i8 = (uint8_t)-5, bl = 1;
  uint16_t u16 = 60000, i16 = (uint16_t)-300;
  uint32_t u32 = 4000000000u, i32 = (uint32_t)-70000;
  float f32 = 1.5f;
  uint64_t u64 = 1ull << 40, i64 = (uint64_t)-(1ll << 40);
  double f64 = 2.25;
  memcpy(b->p + L->align_type, &(uint32_t){GGUF_TYPE_UINT32}, 4);
  put_kv_head(b, "t.u8", GGUF_TYPE_UINT8), L->kv_u8_type = b->n - 4, put(b, &u8, 1);
  put_kv_head(b, "t.i8", GGUF_TYPE_INT8), put(b, &i8, 1);
  put_kv_head(b, "t.u16", GGUF_TYPE_UINT16), put(b, &u16, 2);
  put_kv_head(b, "t.i16", GGUF_TYPE_INT16), put(b, &i16, 2);
  put_kv_head(b, "t.u32", GGUF_TYPE_UINT32), put(b, &u32, 4);
  put_kv_head(b, "t.i32", GGUF_TYPE_INT32), put(b, &i32, 4);
  put_kv_head(b, "t.f32", GGUF_TYPE_FLOAT32), put(b, &f32, 4);
  put_kv_head(b, "t.bool", GGUF_TYPE_BOOL), put(b, &bl, 1);
  put_kv_head(b, "t.u64", GGUF_TYPE_UINT64), put(b, &u64, 8);
  put_kv_head(b, "t.i64", GGUF_TYPE_INT64), put(b, &i64, 8);
  put_kv_head(b, "t.f64", GGUF_TYPE_FLOAT64), put(b, &f64, 8);
  put_kv_head(b, "t.arr_i32", GGUF_TYPE_ARRAY);
  L->arr_i32_type = b->n;
  put_u32(b, GGUF_TYPE_INT32);
  L->arr_i32_n = b->n;
  put_u64(b, 3);
  put_u32(b, 1), put_u32(b, (uint32_t)-2), put_u32(b, 3);
  put_kv_head(b, "t.arr_str", GGUF_TYPE_ARRAY);
  put_u32(b, GGUF_TYPE_STRING);
  L->arr_str_n = b->n;
  put_u64(b, 3);
  L->arr_str_len0 = b->n;
  put_str(b, "a"), put_str(b, "bc"), put_str(b, "");
  put_kv_head(b, "t.arr_f32", GGUF_TYPE_ARRAY);
  put_u32(b, GGUF_TYPE_FLOAT32), put_u64(b, 2), put(b, &(float){0.5f}, 4), put(b, &(float){-1}, 4);
  put_kv_head(b, "t.dupA", GGUF_TYPE_UINT8), put(b, &u8, 1);
  L->dup_b_key = b->n + 8;
  put_kv_head(b, "t.dupB", GGUF_TYPE_UINT8), put(b, &u8, 1);
}

#define SYN_KVS 18

static void put_tensor(buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                       uint32_t type, uint64_t offset) {
  put_str(b, name);
  put_u32(b, n_dims);
  for (uint32_t d = 0; d < n_dims; d++) put_u64(b, ne[d]);
  put_u32(b, type);
  put_u64(b, offset);
}

/* Four tensors: F32 [8,2] at 0, Q4_1 [64,2] at 64, unknown type 99 at 160,
 * Q8_0 [32] at 192 whose 34 bytes end the file. */
static void build_tensors(buf *b, layout *L) {
  size_t s = b->n;
  put_tensor(b, "w.f32", 2, (uint64_t[]){8, 2}, GGUF_GGML_F32, 0);
  L->t0_ndims = s + 8 + 5;
  L->t0_dim0 = L->t0_ndims + 4;
  L->t0_dim1 = L->t0_dim0 + 8;
  s = b->n;
  put_tensor(b, "w.q4_", 2, (uint64_t[]){64, 2}, GGUF_GGML_Q4_1, 64);
  L->t1_dim0 = s + 8 + 5 + 4;
  put_tensor(b, "w.odd", 1, (uint64_t[]){4}, 99, 160);
  L->t2_offset = b->n - 8;
  L->t3_name = b->n + 8;
  put_tensor(b, "w.q8_", 1, (uint64_t[]){32}, GGUF_GGML_Q8_0, 192);
  L->t3_offset = b->n - 8;
}

static buf build_file(layout *L) {
  buf b = {0};
  put(&b, "GGUF", 4);
  put_u32(&b, 3);
  L->n_tensors = b.n;
  put_u64(&b, 4);
  L->n_kv = b.n;
  put_u64(&b, SYN_KVS);
  build_kvs(&b, L);
  build_tensors(&b, L);
  while (b.n % 32) put(&b, "", 1); /* padding, then 226 bytes of data */
  for (int i = 0; i < 226; i++) put(&b, &(uint8_t){(uint8_t)i}, 1);
  return b;
}

static void check_values(const gguf_ctx *g) {
  int64_t v;
  uint32_t u;
  float f;
  bool bl;
  size_t n;
  CHECK(gguf_n_kv(g) == SYN_KVS && gguf_n_tensors(g) == 4, "counts");
  CHECK(gguf_get_i64(g, gguf_find_key(g, "t.u8"), &v) && v == 200, "u8");
  CHECK(gguf_get_i64(g, gguf_find_key(g, "t.i8"), &v) && v == -5, "i8");
  CHECK(gguf_get_i64(g, gguf_find_key(g, "t.u16"), &v) && v == 60000, "u16");
  CHECK(gguf_get_i64(g, gguf_find_key(g, "t.i16"), &v) && v == -300, "i16");
  CHECK(gguf_get_u32(g, gguf_find_key(g, "t.u32"), &u) && u == 4000000000u, "u32");
  CHECK(!gguf_get_u32(g, gguf_find_key(g, "t.i32"), &u), "negative i32 as u32");
  CHECK(gguf_get_i64(g, gguf_find_key(g, "t.i32"), &v) && v == -70000, "i32");
  CHECK(gguf_get_f32(g, gguf_find_key(g, "t.f32"), &f) && f == 1.5f, "f32");
  CHECK(gguf_get_bool(g, gguf_find_key(g, "t.bool"), &bl) && bl, "bool");
  CHECK(gguf_get_i64(g, gguf_find_key(g, "t.u64"), &v) && v == 1ll << 40, "u64");
  CHECK(gguf_get_i64(g, gguf_find_key(g, "t.i64"), &v) && v == -(1ll << 40), "i64");
  CHECK(gguf_get_f32(g, gguf_find_key(g, "t.f64"), &f) && f == 2.25f, "f64");
  CHECK(!gguf_get_f32(g, gguf_find_key(g, "t.u8"), &f), "u8 as f32");
  CHECK(gguf_get_string(g, gguf_find_key(g, "t.u8"), &n) == NULL, "u8 as string");
  int64_t a = gguf_find_key(g, "t.arr_i32");
  CHECK(gguf_arr_type(g, a) == GGUF_TYPE_INT32 && gguf_arr_n(g, a) == 3 && gguf_arr_data(g, a),
        "arr_i32");
  CHECK(gguf_get_arr_int(g, a, 1, &v) && v == -2 && !gguf_get_arr_int(g, a, 3, &v), "arr_i32[1]");
  int64_t s = gguf_find_key(g, "t.arr_str");
  const char *s1 = gguf_get_arr_str(g, s, 1, &n);
  CHECK(str_is(s1, n, "bc"), "arr_str[1]");
  CHECK(gguf_get_arr_str(g, s, 2, &n) != NULL && n == 0, "arr_str[2] empty");
  CHECK(gguf_arr_data(g, s) == NULL && !gguf_get_arr_int(g, s, 0, &v), "arr_str as data");
  int64_t af = gguf_find_key(g, "t.arr_f32");
  CHECK(gguf_get_arr_f32(g, af, 1, &f) && f == -1.0f, "arr_f32[1]");
  CHECK(gguf_kv_type(g, 1000) == GGUF_TYPE_COUNT && gguf_key_name(g, -1, &n) == NULL, "oob kv");
  const gguf_tensor *t = gguf_find_tensor(g, "w.q4_");
  CHECK(t && t->n_bytes == 80 && t->n_elems == 128 && t->ne[2] == 1 && t->offset == 64, "q4");
  t = gguf_find_tensor(g, "w.odd");
  CHECK(t && !t->type_known && t->n_bytes == 0 && gguf_n_unknown_types(g) == 1, "unknown type");
  t = gguf_find_tensor(g, "w.q8_");
  CHECK(t && t->data[0] == 192 && t->data[33] == 225, "q8 data %u", t ? t->data[0] : 0);
  CHECK(gguf_tensor_at(g, 4) == NULL, "tensor past the end");
}

typedef struct hostile {
  const char *what;
  size_t field;    /* offset into the file (layout field) */
  size_t width;    /* 4 or 8 bytes, or 0 for a byte string */
  uint64_t value;
  const char *bytes;
  gguf_status want;
  const char *needle; /* must appear in the message */
} hostile;

static void run_hostile(const buf *good, const hostile *h) {
  uint8_t *p = malloc(good->n);
  memcpy(p, good->p, good->n);
  if (h->width) memcpy(p + h->field, &h->value, h->width);
  else memcpy(p + h->field, h->bytes, strlen(h->bytes));
  gguf_status st = parse_copy(p, good->n);
  printf("  %-22s -> %s\n", h->what, err);
  CHECK(st == h->want && strstr(err, h->needle), "%s: want %s '%s', got %s '%s'", h->what,
        gguf_status_name(h->want), h->needle, gguf_status_name(st), err);
  free(p);
}

static void test_hostile(const buf *b, const layout *L) {
  const uint64_t big = 1ull << 62;
  const hostile cases[] = {
      {"magic", 0, 0, 0, "GGUX", GGUF_E_MAGIC, "bad magic"},
      {"version 1", 4, 4, 1, NULL, GGUF_E_VERSION, "version 1"},
      {"version 4", 4, 4, 4, NULL, GGUF_E_VERSION, "version 4"},
      {"big-endian", 4, 4, 0x03000000, NULL, GGUF_E_VERSION, "big-endian"},
      {"kv count", L->n_kv, 8, big, NULL, GGUF_E_INVALID, "kv count"},
      {"tensor count", L->n_tensors, 8, 1ull << 40, NULL, GGUF_E_INVALID, "tensor count"},
      {"key length", L->key0_len, 8, big, NULL, GGUF_E_TRUNCATED, "key length"},
      {"string length", L->str_len, 8, 100000, NULL, GGUF_E_TRUNCATED, "string value length"},
      {"string length -1", L->str_len, 8, UINT64_MAX, NULL, GGUF_E_TRUNCATED, "exceeds"},
      {"array length", L->arr_i32_n, 8, 1ull << 61, NULL, GGUF_E_TRUNCATED, "array of"},
      {"string array length", L->arr_str_n, 8, big, NULL, GGUF_E_TRUNCATED, "strings"},
      {"array string length", L->arr_str_len0, 8, 1ull << 33, NULL, GGUF_E_TRUNCATED,
       "kv 14 't.arr_str': array string length"},
      {"value type", L->kv_u8_type, 4, 13, NULL, GGUF_E_INVALID, "unknown value type 13"},
      {"nested array", L->arr_i32_type, 4, GGUF_TYPE_ARRAY, NULL, GGUF_E_INVALID, "arrays of"},
      {"array type", L->arr_i32_type, 4, 77, NULL, GGUF_E_INVALID, "element type 77"},
      {"alignment 24", L->align_val, 4, 24, NULL, GGUF_E_INVALID, "power of two"},
      {"alignment 0", L->align_val, 4, 0, NULL, GGUF_E_INVALID, "power of two"},
      {"alignment type", L->align_type, 4, GGUF_TYPE_INT32, NULL, GGUF_E_INVALID, "uint32"},
      {"duplicate key", L->dup_b_key, 0, 0, "t.dupA", GGUF_E_DUPLICATE, "kv 17 't.dupA'"},
      {"duplicate tensor", L->t3_name, 0, 0, "w.f32", GGUF_E_DUPLICATE, "also tensor 0"},
      {"n_dims 5", L->t0_ndims, 4, 5, NULL, GGUF_E_INVALID, "n_dims 5"},
      {"n_dims 0", L->t0_ndims, 4, 0, NULL, GGUF_E_INVALID, "n_dims 0"},
      {"dim > INT64_MAX", L->t0_dim0, 8, 1ull << 63, NULL, GGUF_E_INVALID, "INT64_MAX"},
      {"dims overflow", L->t0_dim1, 8, 1ull << 61, NULL, GGUF_E_INVALID, "overflows"},
      {"block size", L->t1_dim0, 8, 48, NULL, GGUF_E_INVALID, "multiple of the Q4_1 block"},
      {"offset past EOF", L->t3_offset, 8, 1ull << 50, NULL, GGUF_E_RANGE, "exceeds file size"},
      {"data past EOF", L->t3_offset, 8, 224, NULL, GGUF_E_RANGE, "tensor 3 'w.q8_': data ["},
      {"misaligned", L->t3_offset, 8, 200, NULL, GGUF_E_RANGE, "multiple of the alignment"},
      {"unknown type past EOF", L->t2_offset, 8, big, NULL, GGUF_E_RANGE, "tensor 2"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_hostile(b, &cases[i]);
  /* One more kv than present: the tensor infos are read as a kv and fail. */
  hostile extra = {"kv count + 1", L->n_kv, 8, SYN_KVS + 1, NULL, GGUF_E_TRUNCATED, "tensor 0"};
  run_hostile(b, &extra);
}

static void test_synthetic(void) {
  layout L;
  buf b = build_file(&L);
  gguf_ctx *g = NULL;
  gguf_status st = gguf_parse(b.p, b.n, &g, err, sizeof err);
  CHECK(st == GGUF_OK, "synthetic: %s", err);
  if (g) check_values(g);
  gguf_free(g);
  test_hostile(&b, &L);
  /* 3. every truncation fails; random mutations never crash */
  size_t rejected = 0;
  for (size_t n = 0; n < b.n; n++) rejected += parse_copy(b.p, n) != GGUF_OK;
  CHECK(rejected == b.n, "%zu of %zu truncations rejected", rejected, b.n);
  uint64_t rng = 99, ok = 0;
  for (int k = 0; k < 20000; k++) {
    uint8_t *p = malloc(b.n);
    memcpy(p, b.p, b.n);
    for (int m = 0; m < 1 + k % 4; m++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      p[(rng >> 20) % b.n] = (uint8_t)(rng >> 40);
    }
    ok += parse_copy(p, b.n) == GGUF_OK;
    free(p);
  }
  printf("synthetic: %zu bytes, %zu truncations rejected, 20000 mutations (%llu still parse)\n",
         b.n, rejected, (unsigned long long)ok);
  CHECK(gguf_parse(NULL, 4, &g, err, sizeof err) == GGUF_E_ARG, "NULL data");
  CHECK(gguf_parse(b.p, b.n, NULL, NULL, 0) == GGUF_E_ARG, "NULL out");
  free(b.p);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--synthetic")) {
    test_synthetic();
    return CHECK_DONE();
  }
  if (test_model(argc > 1 ? argv[1] : getenv("SP_TEST_MODEL"))) return 77;
  return CHECK_DONE();
}
