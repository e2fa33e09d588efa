/* test_tok_spm.c: the SentencePiece path of the guest tokenizer on small
 * vocabularies built here (no files needed), and hostile tokenizer
 * metadata.
 *
 *  1. Score-ordered merging: the best-scoring pair first, stale pairs
 *     skipped, leftmost on ties; the "▁" space prefix after the start and
 *     after special tokens (and not with add_space_prefix false); byte
 *     fallback to <0xNN>, else the unknown token; decoding back ("▁" to a
 *     space, byte tokens, the leading space dropped); Phi-3's rstrip.
 *  2. Hostile metadata: each gives its status and message, never a crash.
 * Expected ids are worked out by hand in the comments. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gguf.h"
#include "tokenizer.h"

/* ---- a minimal GGUF writer (version 3, no tensors) ---- */

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
static void kv_head(buf *b, const char *key, uint32_t type) {
  put_str(b, key);
  put_u32(b, type);
}
static void kv_string(buf *b, const char *key, const char *v) {
  kv_head(b, key, GGUF_TYPE_STRING);
  put_str(b, v);
}
static void kv_bool(buf *b, const char *key, bool v) {
  kv_head(b, key, GGUF_TYPE_BOOL);
  uint8_t x = v;
  put(b, &x, 1);
}
static void kv_strings(buf *b, const char *key, const char *const *v, size_t n) {
  kv_head(b, key, GGUF_TYPE_ARRAY);
  put_u32(b, GGUF_TYPE_STRING);
  put_u64(b, n);
  for (size_t i = 0; i < n; i++) put_str(b, v[i]);
}
static void kv_array(buf *b, const char *key, uint32_t type, const void *v, size_t n) {
  kv_head(b, key, GGUF_TYPE_ARRAY);
  put_u32(b, type);
  put_u64(b, n);
  put(b, v, n * 4);
}

/* ---- the test vocabulary ---- */

enum { UNK, BOS, EOS, USER, SP, A, B, C, AB, BC, ABC, SP_A, SP_AB, SP_ABC, N_WORDS };
#define BYTE0 N_WORDS /* <0x00>..<0xFF> follow the words */
#define N_TOK (N_WORDS + 256)

static const char *const words[N_WORDS] = {
    "<unk>", "<s>", "</s>", "<|user|>", "\xe2\x96\x81", "a", "b", "c", "ab", "bc", "abc",
    "\xe2\x96\x81" "a", "\xe2\x96\x81" "ab", "\xe2\x96\x81" "abc"};
/* "ab" scores best, then "bc", "abc", "▁ab", "▁a", "▁abc". */
static const float word_scores[N_WORDS] = {0, 0, 0, 0, -10, -20, -20, -20,
                                           -1, -2, -3, -4, -5, -6};

typedef struct vocab_opts {
  const char *model;      /* tokenizer.ggml.model */
  bool scores;            /* write float scores */
  bool bytes;             /* include the <0xNN> tokens */
  int space_prefix;       /* -1: absent, else tokenizer.ggml.add_space_prefix */
  const char *name;       /* general.name, or NULL */
  int bad;                /* which hostile variant (0: none) */
} vocab_opts;

static char texts[N_TOK][8];

/* Builds the file; the caller parses it and frees b.p. */
static buf build(const vocab_opts *o) {
  buf b = {0};
  const char *toks[N_TOK];
  float scores[N_TOK];
  int32_t types[N_TOK];
  size_t n = o->bytes ? N_TOK : N_WORDS;
  for (size_t i = 0; i < n; i++) {
    if (i < N_WORDS) {
      toks[i] = words[i], scores[i] = word_scores[i];
      types[i] = i == UNK ? 2 : i <= USER ? 3 : 1;
    } else {
      snprintf(texts[i], sizeof texts[i], "<0x%02X>", (unsigned)(i - BYTE0));
      toks[i] = texts[i], scores[i] = 0, types[i] = 6;
    }
  }
  if (o->bad == 3) scores[A] = NAN;
  uint64_t n_kv = 3 + (o->scores || o->bad) + (o->space_prefix >= 0) + (o->name != NULL);
  put(&b, "GGUF", 4);
  put_u32(&b, 3);
  put_u64(&b, 0);
  put_u64(&b, n_kv);
  if (o->bad == 5) kv_head(&b, "tokenizer.ggml.model", GGUF_TYPE_UINT32), put_u32(&b, 7);
  else kv_string(&b, "tokenizer.ggml.model", o->model);
  kv_strings(&b, "tokenizer.ggml.tokens", toks, n);
  kv_array(&b, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, n);
  if (o->bad == 1) kv_strings(&b, "tokenizer.ggml.scores", toks, n);           /* strings */
  else if (o->bad == 2) kv_array(&b, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n - 1);
  else if (o->scores || o->bad) kv_array(&b, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n);
  if (o->space_prefix >= 0) kv_bool(&b, "tokenizer.ggml.add_space_prefix", o->space_prefix);
  if (o->name) kv_string(&b, "general.name", o->name);
  return b;
}

typedef struct loaded {
  buf b;
  gguf_ctx *g;
  tok_vocab *v;
  tok_status st;
  char err[256];
} loaded;

static loaded load(const vocab_opts *o) {
  loaded l = {build(o), NULL, NULL, TOK_OK, ""};
  gguf_status gs = gguf_parse(l.b.p, l.b.n, &l.g, l.err, sizeof l.err);
  CHECK(gs == GGUF_OK, "synthetic vocab parses: %s", l.err);
  l.st = gs == GGUF_OK ? tok_vocab_new(l.g, &l.v, l.err, sizeof l.err) : TOK_E_FORMAT;
  return l;
}

static void unload(loaded *l) {
  tok_vocab_free(l->v);
  gguf_free(l->g);
  free(l->b.p);
}

static void expect(const tok_vocab *v, const char *text, bool special, const int32_t *want,
                   size_t n_want) {
  int32_t got[64];
  size_t n = 0;
  tok_status st = tok_encode(v, text, strlen(text), special, got, 64, &n);
  bool same = st == TOK_OK && n == n_want && (!n || memcmp(got, want, n * sizeof *got) == 0);
  CHECK(same, "ids of '%s' (special %d): status %d, %zu ids", text, special, st, n);
  if (!same) {
    printf("    got:");
    for (size_t i = 0; i < n && i < 64; i++) printf(" %d", got[i]);
    printf("\n");
  }
}

static void expect_decode(const tok_vocab *v, const int32_t *ids, size_t n, const char *want) {
  char out[64];
  size_t len = 0;
  tok_status st = tok_decode(v, ids, n, false, out, sizeof out, &len);
  CHECK(st == TOK_OK && len == strlen(want) && memcmp(out, want, len) == 0,
        "decode to '%s': status %d, '%.*s'", want, st, (int)len, out);
}

#define IDS(...) (const int32_t[]){__VA_ARGS__}, sizeof((const int32_t[]){__VA_ARGS__}) / 4

/* ---- 1. merging, prefix, fallback, decoding ---- */

static void test_merging(void) {
  vocab_opts o = {"llama", true, true, -1, NULL, 0};
  loaded l = load(&o);
  CHECK(l.st == TOK_OK, "llama vocab loads: %s", l.err);
  if (l.st) return unload(&l);
  const tok_vocab *v = l.v;
  CHECK(strcmp(tok_pre_name(v), "spm") == 0 && tok_add_bos(v) && tok_bos(v) == BOS &&
            tok_eos(v) == EOS && tok_is_eog(v, EOS),
        "SPM defaults: bos <s>, eos </s>, add_bos");
  /* "▁abc": ab (-1) first, then abc (-3) over the stale bc, then ▁abc. */
  expect(v, "abc", false, IDS(SP_ABC));
  /* "▁cab": only ab merges; ▁ and c stay single. */
  expect(v, "cab", false, IDS(SP, C, AB));
  /* "▁bca": bc (-2) merges, "bca" and "▁bc" are no tokens. */
  expect(v, "bca", false, IDS(SP, BC, A));
  /* Spaces are "▁" too; the prefix comes once, at the start. */
  expect(v, "ab ab", false, IDS(SP_AB, SP_AB));
  /* Bytes with no token fall back to <0xNN>: é is C3 A9. */
  expect(v, "\xc3\xa9", false, IDS(SP, BYTE0 + 0xC3, BYTE0 + 0xA9));
  /* Invalid UTF-8 is kept byte for byte; like llama.cpp, a character is
   * as long as its lead byte's high nibble says (0xFF: 4), so "a" here is
   * swallowed by it and falls back to bytes too. */
  expect(v, "\xff" "a", false, IDS(SP, BYTE0 + 0xFF, BYTE0 + 'a'));
  expect(v, "\xbf" "ab", false, IDS(SP, BYTE0 + 0xBF, AB)); /* a stray continuation: 1 */
  /* After a special token the text is prefixed again; unparsed, the
   * token's text is plain text (its bytes). */
  expect(v, "<|user|>abc", true, IDS(USER, SP_ABC));
  expect(v, "abc<|user|>", true, IDS(SP_ABC, USER));
  expect(v, "", false, NULL, 0);
  /* Decoding: "▁" is a space; the prefixed space is dropped again. */
  expect_decode(v, IDS(SP_ABC), "abc");
  expect_decode(v, IDS(SP, C, AB, SP_A), "cab a");
  expect_decode(v, IDS(SP, BYTE0 + 0xC3, BYTE0 + 0xA9), "\xc3\xa9");
  expect_decode(v, IDS(BOS, SP_ABC), " abc"); /* hidden BOS, piece kept whole */
  const char *p;
  size_t n;
  CHECK(tok_piece(v, SP_AB, false, &p, &n) == TOK_OK && n == 3 && !memcmp(p, " ab", 3), "piece ▁ab");
  unload(&l);
}

static void test_options(void) {
  /* add_space_prefix false: no "▁" in front. */
  vocab_opts o = {"llama", true, true, 0, NULL, 0};
  loaded l = load(&o);
  CHECK(l.st == TOK_OK, "no-prefix vocab loads: %s", l.err);
  if (!l.st) expect(l.v, "abc", false, IDS(ABC)), expect_decode(l.v, IDS(SP_ABC), " abc");
  unload(&l);
  /* No byte tokens: a byte falls back to <unk>. No scores: all 0, which
   * merges leftmost first (ab before bc). */
  o = (vocab_opts){"llama", false, false, -1, NULL, 0};
  l = load(&o);
  CHECK(l.st == TOK_OK, "byte-less vocab loads: %s", l.err);
  if (!l.st) expect(l.v, "\xc3\xa9", false, IDS(SP, UNK, UNK)), expect(l.v, "bc", false, IDS(SP, BC));
  unload(&l);
  /* Phi-3 by name: white space after a special token is dropped. */
  o = (vocab_opts){"llama", true, true, -1, "Phi-3-mini", 0};
  l = load(&o);
  CHECK(l.st == TOK_OK, "phi3 vocab loads: %s", l.err);
  if (!l.st) expect(l.v, "<|user|>\n abc", true, IDS(USER, SP_ABC));
  unload(&l);
  o.name = "Llama";
  l = load(&o);
  if (!l.st) expect(l.v, "<|user|> abc", true, IDS(USER, SP, SP_ABC));
  unload(&l);
}

/* ---- 2. hostile metadata ---- */

static void expect_error(vocab_opts o, tok_status want, const char *msg) {
  loaded l = load(&o);
  CHECK(l.st == want && strstr(l.err, msg), "bad %d: status %d '%s', want %d '%s'", o.bad, l.st,
        l.err, want, msg);
  CHECK(l.v == NULL, "no vocab on error");
  unload(&l);
}

static void test_hostile(void) {
  vocab_opts o = {"llama", true, true, -1, NULL, 0};
  o.bad = 1, expect_error(o, TOK_E_FORMAT, "tokenizer.ggml.scores is not an array");
  o.bad = 2, expect_error(o, TOK_E_FORMAT, "tokenizer.ggml.scores is not an array");
  o.bad = 3, expect_error(o, TOK_E_FORMAT, "tokenizer.ggml.scores[5] is not a number");
  o.bad = 5, expect_error(o, TOK_E_FORMAT, "tokenizer.ggml.model is not a string");
  o.bad = 0, o.model = "bert";
  expect_error(o, TOK_E_UNSUPPORTED, "unsupported tokenizer.ggml.model 'bert'");
  o.model = "gemma4"; /* BPE: merges are required */
  expect_error(o, TOK_E_FORMAT, "missing tokenizer.ggml.merges");
  o.model = "gpt2";
  expect_error(o, TOK_E_FORMAT, "missing tokenizer.ggml.merges");
}

int main(void) {
  test_merging();
  test_options();
  test_hostile();
  return CHECK_DONE();
}
