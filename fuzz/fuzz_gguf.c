/*
 * fuzz_gguf.c: libFuzzer target for the guest's GGUF reader
 * (guest/llm/gguf.c, built natively) and, when a file parses, for building
 * a tokenizer from its metadata (guest/llm/tokenizer.c).
 *
 * After a successful parse every accessor is walked, and every tensor's
 * data range is checked to lie inside the input: gguf.c promises that, so
 * a range outside it aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk_kv(const gguf_ctx *g) {
  for (int64_t i = 0; i < (int64_t)gguf_n_kv(g); i++) {
    size_t len = 0;
    const char *key = gguf_key_name(g, i, &len);
    if (key && len) sink += (uint8_t)key[len - 1];
    uint32_t u32;
    int64_t i64;
    float f;
    bool b;
    sink += gguf_get_u32(g, i, &u32) + gguf_get_i64(g, i, &i64) + gguf_get_f32(g, i, &f) +
            gguf_get_bool(g, i, &b);
    const char *s = gguf_get_string(g, i, &len);
    if (s && len) sink += (uint8_t)s[len - 1];
    if (gguf_kv_type(g, i) != GGUF_TYPE_ARRAY) continue;
    uint64_t n = gguf_arr_n(g, i);
    for (uint64_t j = 0; j < n && j < 64; j++) {
      sink += gguf_get_arr_int(g, i, j, &i64) + gguf_get_arr_f32(g, i, j, &f);
      s = gguf_get_arr_str(g, i, j, &len);
      if (s && len) sink += (uint8_t)s[len - 1];
    }
    /* The last element too: the far end of a hostile count. */
    if (n) {
      s = gguf_get_arr_str(g, i, n - 1, &len);
      if (s && len) sink += (uint8_t)s[len - 1];
    }
  }
}

static void walk_tensors(const gguf_ctx *g, const uint8_t *data, size_t size) {
  for (uint64_t i = 0; i < gguf_n_tensors(g); i++) {
    const gguf_tensor *t = gguf_tensor_at(g, i);
    if (!t || !t->n_bytes) continue;
    if (t->data < data || t->n_bytes > size || (size_t)(t->data - data) > size - t->n_bytes) {
      fprintf(stderr, "tensor %llu data lies outside the file\n", (unsigned long long)i);
      abort();
    }
    sink += t->data[0] + t->data[t->n_bytes - 1];
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  gguf_ctx *g = NULL;
  char err[256];
  if (gguf_parse(data, size, &g, err, sizeof err) != GGUF_OK) return 0;
  walk_kv(g);
  walk_tensors(g, data, size);
  tok_vocab *v = NULL;
  if (tok_vocab_new(g, &v, err, sizeof err) == TOK_OK) {
    static const char text[] = "Hello, world! <|im_start|>user 123 caf\xc3\xa9 \xff\xfe";
    int32_t ids[64];
    size_t n = 0;
    if (tok_encode(v, text, sizeof text - 1, true, ids, 64, &n) == TOK_OK) {
      char out[512];
      size_t len;
      (void)tok_decode(v, ids, n, true, out, sizeof out, &len);
    }
    tok_vocab_free(v);
  }
  gguf_free(g);
  return 0;
}
