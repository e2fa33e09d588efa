/* test_tok_vocab.c: the guest tokenizer against llama.cpp's own tokenizer
 * test data (llama.cpp 0.3.36, models/ggml-vocab-*.gguf with .inp/.out).
 *
 *   test_tok_vocab MODELS_DIR [--special FIXTURE] [NAME...]
 * NAME defaults to qwen2 llama-bpe gpt-2 phi-3 llama-spm gemma-4, then the
 * other vocabularies the guest supports (qwen35 falcon mpt starcoder refact
 * command-r). Each .inp
 * holds texts separated by the line "__ggml_vocab_test__"; each .out line
 * the ids llama.cpp gives that text with add_special=false and
 * parse_special=false (its test-tokenizer-0). Every text is encoded the
 * same way and compared; a mismatch prints both id lists. It also checks
 * that decoding llama.cpp's ids gives back the text (byte tokens, "▁", the
 * leading space of SentencePiece files).
 * With --special, also the ids llama.cpp gives texts full of special
 * tokens (chat prompts; parse_special true and false) and its
 * detokenization of them, from tests/fixtures/tok_special_llamacpp.txt
 * (tests/test_tok_special_gen.py): the space prefix after special tokens,
 * Phi-3's rstrip, specials left as text.
 * Exit 0: all match; 1: a mismatch or a load failure; 77: files missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

static const char *const default_names[] = {
    "qwen2",   "llama-bpe", "gpt-2",     "phi-3",  "llama-spm", "gemma-4",
    "qwen35",  "falcon",    "mpt",       "starcoder", "refact", "command-r", NULL};

static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc(n > 0 ? (size_t)n + 1 : 1);
  if (!b || n < 0 || fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    fclose(f);
    return NULL;
  }
  b[n] = 0;
  fclose(f);
  *size = (size_t)n;
  return b;
}

/* Parses one .out line ("  123 456") into ids; returns the count. */
static size_t parse_ids(const char *line, const char *end, int32_t *ids, size_t cap) {
  size_t n = 0;
  for (const char *p = line; p < end && n < cap;) {
    while (p < end && *p == ' ') p++;
    if (p >= end) break;
    char *q;
    ids[n++] = (int32_t)strtol(p, &q, 10);
    if (q == p) break;
    p = q;
  }
  return n;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
  printf("    %s (%zu):", label, n);
  for (size_t i = 0; i < n && i < 64; i++) printf(" %d", ids[i]);
  printf(n > 64 ? " ...\n" : "\n");
}

static void print_text(const char *t, size_t n) {
  printf("  text '");
  for (size_t i = 0; i < n && i < 80; i++) {
    unsigned char c = (unsigned char)t[i];
    if (c == '\n') printf("\\n");
    else if (c < 0x20) printf("\\x%02x", c);
    else putchar(c);
  }
  printf(n > 80 ? "...'\n" : "'\n");
}

typedef struct counts {
  size_t texts, match, detok, detok_ok;
  size_t special, special_ok, sdetok, sdetok_ok; /* the special-token fixture */
} counts;

/* Checks one text: ids, then (SentencePiece files) detokenization. */
static void check_text(const tok_vocab *v, const char *text, size_t len, const char *line,
                       const char *line_end, bool check_detok, counts *c) {
  size_t cap = len * 2 + 16, n = 0;
  int32_t *want = malloc(cap * sizeof *want), *got = malloc(cap * sizeof *got);
  size_t n_want = parse_ids(line, line_end, want, cap);
  tok_status st = tok_encode(v, text, len, false, got, cap, &n);
  c->texts++;
  if (st == TOK_OK && n == n_want && memcmp(got, want, n * sizeof *got) == 0) {
    c->match++;
  } else {
    printf("  MISMATCH (status %d)\n", st);
    print_text(text, len);
    print_ids("got ", got, n < cap ? n : cap);
    print_ids("want", want, n_want);
  }
  if (check_detok) {
    size_t out_n = 0, out_cap = len * 4 + 64;
    char *out = malloc(out_cap);
    c->detok++;
    if (tok_decode(v, want, n_want, false, out, out_cap, &out_n) == TOK_OK && out_n == len &&
        memcmp(out, text, len) == 0)
      c->detok_ok++;
    free(out);
  }
  free(want);
  free(got);
}

/* ---- the special-token fixture ---- */

static char *special_fix; /* the fixture, its lines NUL-terminated in place */
static size_t special_len;
static char **special_texts; /* "T" lines by index, unescaped */
static size_t n_special_texts;

/* Undoes the fixture's \\, \n, \t, \r escapes in place. */
static void unescape(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '\\' && s[1]) {
      s++;
      *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s == 'r' ? '\r' : *s;
    } else {
      *o++ = *s;
    }
  }
  *o = 0;
}

static bool load_special(const char *path) {
  special_fix = read_file(path, &special_len);
  if (!special_fix) return false;
  for (size_t i = 0; i < special_len; i++)
    if (special_fix[i] == '\n') special_fix[i] = 0;
  special_texts = calloc(special_len + 1, sizeof *special_texts);
  for (char *line = special_fix; line < special_fix + special_len; line += strlen(line) + 1) {
    char *sp = line[0] == 'T' && line[1] == ' ' ? strchr(line + 2, ' ') : NULL;
    size_t i = sp ? strtoul(line + 2, NULL, 10) : 0;
    if (!sp || i >= special_len) continue;
    unescape(sp + 1);
    special_texts[i] = sp + 1;
    if (i + 1 > n_special_texts) n_special_texts = i + 1;
  }
  return true;
}

/* One "I <vocab> <text> <parse_special> <ids>\t<detok>" line. */
static void check_special_line(const tok_vocab *v, char *q, bool detok, counts *c) {
  char *tab = strchr(q, '\t');
  size_t ti = strtoul(q, &q, 10);
  bool special = strtoul(q, &q, 10) != 0;
  if (!tab || ti >= n_special_texts || !special_texts[ti]) return;
  const char *text = special_texts[ti];
  size_t len = strlen(text), cap = len * 2 + 16, n = 0;
  int32_t *want = malloc(cap * sizeof *want), *got = malloc(cap * sizeof *got);
  size_t n_want = parse_ids(q, tab, want, cap);
  tok_status st = tok_encode(v, text, len, special, got, cap, &n);
  c->special++;
  if (st == TOK_OK && n == n_want && (!n || !memcmp(got, want, n * sizeof *got))) {
    c->special_ok++;
  } else {
    printf("  SPECIAL MISMATCH (parse_special %d, status %d)\n", special, st);
    print_text(text, len);
    print_ids("got ", got, n < cap ? n : cap);
    print_ids("want", want, n_want);
  }
  if (detok) {
    char out[4096];
    size_t ol = 0;
    unescape(tab + 1);
    size_t wl = strlen(tab + 1);
    c->sdetok++;
    if (tok_decode(v, want, n_want, false, out, sizeof out, &ol) == TOK_OK && ol == wl &&
        !memcmp(out, tab + 1, wl))
      c->sdetok_ok++;
    else
      printf("  DETOK MISMATCH: got '%.*s' want '%s'\n", (int)ol, out, tab + 1);
  }
  free(want), free(got);
}

/* Checks the fixture's lines for vocab `name`. */
static void check_special(const tok_vocab *v, const char *name, bool detok, counts *c) {
  size_t nl = strlen(name);
  for (char *line = special_fix; line < special_fix + special_len; line += strlen(line) + 1)
    if (line[0] == 'I' && line[1] == ' ' && !strncmp(line + 2, name, nl) && line[2 + nl] == ' ')
      check_special_line(v, line + 3 + nl, detok, c);
}

/* Runs one vocab file; returns false on a mismatch or a load failure. */
static bool run_vocab(const char *dir, const char *name) {
  char path[4096];
  size_t size = 0, inp_n = 0, out_n = 0;
  snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf", dir, name);
  uint8_t *file = (uint8_t *)read_file(path, &size);
  snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.inp", dir, name);
  char *inp = read_file(path, &inp_n);
  snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.out", dir, name);
  char *out = read_file(path, &out_n);
  char err[256] = "";
  gguf_ctx *g = NULL;
  tok_vocab *v = NULL;
  bool ok = file && inp && out;
  if (!ok) printf("%s: cannot read the .gguf/.inp/.out files\n", name);
  if (ok && gguf_parse(file, size, &g, err, sizeof err) != GGUF_OK) ok = false;
  if (ok && tok_vocab_new(g, &v, err, sizeof err) != TOK_OK) ok = false;
  if (!ok) printf("%s: load failed: %s\n", name, err);
  counts c = {0};
  int32_t bos = v ? tok_bos(v) : -1;
  /* Decoding is checked everywhere: no fixture text trips llama.cpp's
   * clean_spaces (" ?" -> "?"), which tok_decode does not do. */
  bool detok = v != NULL;
  static const char sep[] = "\n__ggml_vocab_test__\n";
  for (size_t ip = 0, op = 0; ok && ip < inp_n;) {
    const char *next = strstr(inp + ip, sep);
    size_t tlen = next ? (size_t)(next - (inp + ip)) : inp_n - ip;
    const char *line = out + op, *line_end = memchr(line, '\n', out_n - op);
    if (op >= out_n) {
      printf("%s: .out has fewer lines than .inp has texts\n", name);
      ok = false;
      break;
    }
    if (!line_end) line_end = out + out_n;
    check_text(v, inp + ip, tlen, line, line_end, detok, &c);
    op = (size_t)(line_end - out) + 1;
    ip = next ? (size_t)(next - inp) + sizeof sep - 1 : inp_n;
  }
  if (ok && special_fix) check_special(v, name, detok, &c);
  printf("%s: %zu/%zu texts match llama.cpp (pre %s, bos %d, add_bos %d)", name, c.match, c.texts,
         v ? tok_pre_name(v) : "-", bos, v ? tok_add_bos(v) : 0);
  if (c.detok) printf("; %zu/%zu detokenize back to the text", c.detok_ok, c.detok);
  if (c.special) printf("; special-token texts %zu/%zu", c.special_ok, c.special);
  if (c.sdetok) printf(", their detokenization %zu/%zu", c.sdetok_ok, c.sdetok);
  printf("\n");
  ok = ok && c.texts > 0 && c.match == c.texts && c.detok_ok == c.detok &&
       c.special_ok == c.special && c.sdetok_ok == c.sdetok;
  tok_vocab_free(v);
  gguf_free(g);
  free(file), free(inp), free(out);
  return ok;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: test_tok_vocab MODELS_DIR [--special FIXTURE] [NAME...]\n");
    return 2;
  }
  int first = 2;
  if (argc > 3 && !strcmp(argv[2], "--special")) {
    if (!load_special(argv[3])) {
      printf("cannot read %s\n", argv[3]);
      return 1;
    }
    first = 4;
  }
  const char *const *names = argc > first ? (const char *const *)argv + first : default_names;
  for (const char *const *n = names; *n; n++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/ggml-vocab-%s.gguf.out", argv[1], *n);
    FILE *f = fopen(path, "rb");
    if (!f) {
      printf("SKIP: %s is missing (scripts/fetch-llama-vocab.sh fetches it)\n", path);
      return 77;
    }
    fclose(f);
  }
  bool ok = true;
  for (const char *const *n = names; *n; n++) ok = run_vocab(argv[1], *n) && ok;
  printf(ok ? "all vocab files match\n" : "FAILED\n");
  return ok ? 0 : 1;
}
