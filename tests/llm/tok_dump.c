/* tok_dump.c: a helper for the Python cross-checks in this directory.
 *
 *   tok_dump split PASSES          < records   (check_pretok.py)
 *   tok_dump ids MODEL.gguf SPECIAL < records  (diff_llamacpp.py)
 *
 * Records on stdin are separated by 0x1E. `split` prints, per record, the
 * pieces a list of tok_split_pass numbers (e.g. "1,6" for smollm) cuts it
 * into, as space-separated UTF-8 hex. `ids` prints the token ids of each
 * record (SPECIAL 1 parses special tokens). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"
#include "unicode.h"

#define MAX_PASSES 8

/* Splits one record and prints its pieces. */
static void dump_split(const uint8_t *t, size_t len, const int *passes, int n_passes) {
  uint32_t *cps = malloc((len + 1) * sizeof *cps);
  uint8_t *flags = malloc(len + 1);
  size_t *ends = malloc((len + 1) * sizeof *ends), *tmp = malloc((len + 1) * sizeof *tmp);
  size_t n = 0, n_ends = 0;
  for (size_t i = 0; i < len; n++) {
    i += tok_utf8_decode(t + i, len - i, &cps[n]);
    flags[n] = (uint8_t)tok_cpt_flags(cps[n]);
  }
  if (n) ends[0] = n, n_ends = 1;
  for (int k = 0; k < n_passes && n; k++) {
    tok_split((tok_split_pass)passes[k], cps, flags, ends, n_ends, tmp, &n_ends);
    size_t *s = ends;
    ends = tmp, tmp = s;
  }
  for (size_t k = 0, a = 0; k < n_ends; a = ends[k++]) {
    if (k) putchar(' ');
    for (size_t i = a; i < ends[k]; i++) {
      uint8_t u[4];
      size_t m = tok_utf8_encode(cps[i], u);
      for (size_t j = 0; j < m; j++) printf("%02x", u[j]);
    }
  }
  putchar('\n');
  free(cps), free(flags), free(ends), free(tmp);
}

/* Encodes one record and prints its ids. */
static void dump_ids(const tok_vocab *v, const uint8_t *t, size_t len, bool special) {
  size_t n = 0;
  tok_encode(v, (const char *)t, len, special, NULL, 0, &n);
  int32_t *ids = malloc((n + 1) * sizeof *ids);
  tok_encode(v, (const char *)t, len, special, ids, n, &n);
  for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
  putchar('\n');
  free(ids);
}

static uint8_t *read_all(FILE *f, size_t *n) {
  size_t cap = 1 << 20;
  uint8_t *b = malloc(cap);
  *n = 0;
  for (size_t r; (r = fread(b + *n, 1, cap - *n, f)) > 0;)
    if ((*n += r) == cap) b = realloc(b, cap *= 2);
  return b;
}

static tok_vocab *load_vocab(const char *path, uint8_t **file, gguf_ctx **g) {
  FILE *f = fopen(path, "rb");
  size_t n;
  char err[256] = "cannot open the model";
  tok_vocab *v = NULL;
  *file = f ? read_all(f, &n) : NULL;
  if (f) fclose(f);
  if (!*file || gguf_parse(*file, n, g, err, sizeof err) || tok_vocab_new(*g, &v, err, sizeof err))
    fprintf(stderr, "tok_dump: %s\n", err);
  return v;
}

int main(int argc, char **argv) {
  bool split = argc == 3 && !strcmp(argv[1], "split"), ids = argc == 4 && !strcmp(argv[1], "ids");
  int passes[MAX_PASSES], n_passes = 0;
  uint8_t *file = NULL;
  gguf_ctx *g = NULL;
  tok_vocab *v = NULL;
  if (!split && !ids) {
    fprintf(stderr, "usage: tok_dump split PASSES | tok_dump ids MODEL.gguf SPECIAL\n");
    return 2;
  }
  for (char *s = argv[2]; split && *s && n_passes < MAX_PASSES;) {
    passes[n_passes++] = atoi(s);
    s += strcspn(s, ",");
    s += *s == ',';
  }
  if (ids && !(v = load_vocab(argv[2], &file, &g))) return 1;
  size_t n;
  uint8_t *in = read_all(stdin, &n);
  for (size_t i = 0, start = 0; i <= n; i++) {
    if (i < n && in[i] != 0x1e) continue;
    if (split) dump_split(in + start, i - start, passes, n_passes);
    else dump_ids(v, in + start, i - start, atoi(argv[3]) != 0);
    start = i + 1;
  }
  free(in);
  tok_vocab_free(v);
  gguf_free(g);
  free(file);
  return 0;
}
