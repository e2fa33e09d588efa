/*
 * pin_plan.c: see pin_plan.h.
 */
#include "backend/cuda/pin_plan.h"

#include <stdlib.h>

bool sp_pin_set_add(sp_pin_set *set, uint64_t start, uint64_t len) {
  if (set->n == set->cap) {
    size_t cap = set->cap ? 2 * set->cap : 16;
    sp_pin_span *grown = realloc(set->spans, cap * sizeof *grown);
    if (!grown) return false;
    set->spans = grown, set->cap = cap;
  }
  set->spans[set->n++] = (sp_pin_span){start, len};
  return true;
}

void sp_pin_set_remove(sp_pin_set *set, size_t i) {
  if (i < set->n) set->spans[i] = set->spans[--set->n];
}

void sp_pin_set_free(sp_pin_set *set) {
  free(set->spans);
  *set = (sp_pin_set){0};
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) { return a < b + blen && b < a + alen; }

bool sp_pin_overlaps(const sp_pin_span *holes, size_t n_holes, uint64_t addr, uint64_t len) {
  for (size_t i = 0; i < n_holes; i++)
    if (holes[i].len && overlaps(addr, len, holes[i].start, holes[i].len)) return true;
  return false;
}

static int by_start(const void *a, const void *b) {
  const sp_pin_span *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start;
}

/* The gaps of [0, committed) that no covered span reaches, into add. */
static bool add_gaps(sp_pin_set *covered, uint64_t committed, sp_pin_set *add) {
  if (covered->n) qsort(covered->spans, covered->n, sizeof *covered->spans, by_start);
  uint64_t at = 0;
  for (size_t i = 0; i < covered->n && at < committed; i++) {
    const sp_pin_span *s = &covered->spans[i];
    if (s->start > at && !sp_pin_set_add(add, at, (s->start < committed ? s->start : committed) - at)) return false;
    if (s->start + s->len > at) at = s->start + s->len;
  }
  return at >= committed || sp_pin_set_add(add, at, committed - at);
}

bool sp_pin_plan(const sp_pin_set *pinned, uint64_t committed, const sp_pin_span *holes, size_t n_holes,
                 sp_pin_set *drop, sp_pin_set *add) {
  sp_pin_set covered = {0};
  bool ok = true;
  for (size_t i = 0; i < pinned->n && ok; i++) {
    const sp_pin_span *s = &pinned->spans[i];
    bool keep = s->start + s->len <= committed && !sp_pin_overlaps(holes, n_holes, s->start, s->len);
    ok = keep ? sp_pin_set_add(&covered, s->start, s->len) : sp_pin_set_add(drop, s->start, s->len);
  }
  for (size_t i = 0; i < n_holes && ok; i++)
    if (holes[i].len) ok = sp_pin_set_add(&covered, holes[i].start, holes[i].len);
  if (ok) ok = add_gaps(&covered, committed, add);
  sp_pin_set_free(&covered);
  return ok;
}

uint64_t sp_pin_run_end(const sp_pin_set *pinned, uint64_t at, uint64_t end) {
  uint64_t stop = end;
  for (size_t i = 0; i < pinned->n; i++) {
    const sp_pin_span *s = &pinned->spans[i];
    uint64_t edge = s->start > at ? s->start : s->start + s->len > at ? s->start + s->len : stop;
    if (edge < stop) stop = edge;
  }
  return stop;
}
