/* tok_spm.c: score-ordered pair merging for SentencePiece vocabularies
 * (see tok_spm.h). Scratch is allocated per call, proportional to the text. */
#include "tok_spm.h"

#include <stdlib.h>

typedef struct spm_sym {
  uint32_t off, n; /* bytes of the text; n == 0 once merged away */
  int32_t prev, next;
} spm_sym;

typedef struct spm_pair {
  float score;
  int32_t left, right;
  uint32_t n; /* combined length when queued; stale if it changed */
} spm_pair;

typedef struct spm {
  const tok_vocab *v;
  const float *scores;
  const uint8_t *text;
  spm_sym *syms;
  spm_pair *heap;
  size_t heap_n, heap_cap;
  bool nomem;
} spm;

/* llama.cpp sizes a character by its lead byte's high nibble alone, so a
 * stray continuation byte is a character of 1 and 0xF8..0xFF claim 4. */
static uint32_t char_len(uint8_t lead) {
  static const uint8_t by_nibble[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return by_nibble[lead >> 4];
}

/* x comes out of the heap before y: higher score, then leftmost. */
static bool pair_first(const spm_pair *x, const spm_pair *y) {
  return x->score > y->score || (x->score == y->score && x->left < y->left);
}

/* Queues (l, r) when their concatenation is a token. */
static void push_pair(spm *s, int32_t l, int32_t r) {
  if (l < 0 || r < 0) return;
  const spm_sym *a = &s->syms[l], *b = &s->syms[r];
  int32_t id = tok_find(s->v, (const char *)s->text + a->off, a->n + b->n);
  if (id < 0) return;
  if (s->heap_n == s->heap_cap) {
    size_t cap = s->heap_cap ? s->heap_cap * 2 : 64;
    spm_pair *h = cap <= SIZE_MAX / sizeof *h ? realloc(s->heap, cap * sizeof *h) : NULL;
    if (!h) {
      s->nomem = true;
      return;
    }
    s->heap = h, s->heap_cap = cap;
  }
  spm_pair p = {s->scores[id], l, r, a->n + b->n};
  size_t i = s->heap_n++;
  for (; i > 0 && pair_first(&p, &s->heap[(i - 1) / 2]); i = (i - 1) / 2)
    s->heap[i] = s->heap[(i - 1) / 2];
  s->heap[i] = p;
}

static spm_pair pop_pair(spm *s) {
  spm_pair top = s->heap[0], last = s->heap[--s->heap_n];
  size_t i = 0, n = s->heap_n;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && pair_first(&s->heap[c + 1], &s->heap[c])) c++;
    if (!pair_first(&s->heap[c], &last)) break;
    s->heap[i] = s->heap[c];
    i = c;
  }
  if (n) s->heap[i] = last;
  return top;
}

/* The id standing for one byte: <0xNN>, else the byte itself as a token
 * (llama.cpp's fallback), else unk. */
static int32_t byte_id(const tok_vocab *v, uint8_t b, int32_t unk) {
  static const char hex[] = "0123456789ABCDEF";
  char name[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
  int32_t id = tok_find(v, name, sizeof name);
  if (id < 0) id = tok_find(v, (const char *)&b, 1);
  return id >= 0 ? id : unk;
}

/* Emits a final piece: its id, or its bytes one by one. A merged piece is
 * always a token (only token-forming pairs merge), so only single
 * characters fall back to bytes. */
static void emit_piece(const spm *s, const spm_sym *y, int32_t unk, tok_emit_fn emit, void *ctx) {
  int32_t id = tok_find(s->v, (const char *)s->text + y->off, y->n);
  if (id >= 0) {
    emit(ctx, id);
    return;
  }
  for (uint32_t i = 0; i < y->n; i++)
    if ((id = byte_id(s->v, s->text[y->off + i], unk)) >= 0) emit(ctx, id);
}

bool tok_spm_encode(const tok_vocab *v, const float *scores, int32_t unk, const uint8_t *text,
                    size_t len, tok_emit_fn emit, void *ctx) {
  if (len == 0) return true;
  if (len > INT32_MAX || len > SIZE_MAX / sizeof(spm_sym)) return false; /* int32 indices */
  spm s = {v, scores, text, malloc(len * sizeof(spm_sym)), NULL, 0, 0, false};
  if (!s.syms) return false;
  int32_t ns = 0;
  for (size_t off = 0; off < len; ns++) {
    uint32_t k = char_len(text[off]);
    if (k > len - off) k = (uint32_t)(len - off);
    s.syms[ns] = (spm_sym){(uint32_t)off, k, ns - 1, -1};
    if (ns) s.syms[ns - 1].next = ns;
    off += k;
  }
  for (int32_t i = 1; i < ns; i++) push_pair(&s, i - 1, i);
  while (s.heap_n && !s.nomem) {
    spm_pair p = pop_pair(&s);
    spm_sym *l = &s.syms[p.left], *r = &s.syms[p.right];
    if (l->n == 0 || r->n == 0 || l->n + r->n != p.n) continue; /* stale */
    l->n += r->n;
    r->n = 0;
    l->next = r->next;
    if (r->next >= 0) s.syms[r->next].prev = p.left;
    push_pair(&s, l->prev, p.left);
    push_pair(&s, p.left, l->next);
  }
  for (int32_t i = 0; i >= 0 && !s.nomem; i = s.syms[i].next) emit_piece(&s, &s.syms[i], unk, emit, ctx);
  bool ok = !s.nomem;
  free(s.syms);
  free(s.heap);
  return ok;
}
