/* test_pin_plan.c: the CUDA backend's registration arithmetic
 * (src/backend/cuda/pin_plan.c) against a page-by-page model: after every
 * change of file ranges or committed size, the registrations cover exactly
 * the committed memory minus the file ranges, never overlap, and a
 * registration that is still right is kept. */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/pin_plan.h"
#include "check.h"

#define PAGES 64
#define PAGE 4096u

/* Applies a plan to the registrations, as the backend does. */
static void apply(sp_pin_set *pinned, const sp_pin_set *drop, const sp_pin_set *add) {
  for (size_t d = 0; d < drop->n; d++)
    for (size_t i = 0; i < pinned->n; i++)
      if (pinned->spans[i].start == drop->spans[d].start && pinned->spans[i].len == drop->spans[d].len) {
        sp_pin_set_remove(pinned, i);
        break;
      }
  for (size_t a = 0; a < add->n; a++) sp_pin_set_add(pinned, add->spans[a].start, add->spans[a].len);
}

/* 1 where a registration covers the page (2+ if several do). */
static void coverage(const sp_pin_set *pinned, int *count) {
  memset(count, 0, PAGES * sizeof *count);
  for (size_t i = 0; i < pinned->n; i++)
    for (uint64_t p = pinned->spans[i].start / PAGE; p < (pinned->spans[i].start + pinned->spans[i].len) / PAGE; p++)
      if (p < PAGES) count[p]++;
}

static void check_exact(const sp_pin_set *pinned, uint64_t committed, const sp_pin_span *holes, size_t n_holes,
                        int step) {
  int count[PAGES];
  coverage(pinned, count);
  for (uint64_t p = 0; p < PAGES; p++) {
    bool want = p * PAGE < committed && !sp_pin_overlaps(holes, n_holes, p * PAGE, PAGE);
    CHECK(count[p] == (want ? 1 : 0), "step %d: page %llu registered %d times, want %d", step,
          (unsigned long long)p, count[p], want);
  }
  for (size_t i = 0; i < pinned->n; i++) CHECK(pinned->spans[i].len > 0, "step %d: an empty registration", step);
}

static void test_random_changes(void) {
  srand(7);
  sp_pin_set pinned = {0};
  uint64_t committed = 8 * PAGE;
  for (int step = 0; step < 2000; step++) {
    sp_pin_span holes[4];
    size_t n_holes = (size_t)(rand() % 4);
    for (size_t h = 0; h < n_holes; h++) {
      uint64_t first = (uint64_t)(rand() % PAGES), pages = 1 + (uint64_t)(rand() % 8);
      holes[h] = (sp_pin_span){first * PAGE, pages * PAGE};
    }
    if (rand() % 4 == 0 && committed < PAGES * PAGE) committed += PAGE * (1 + (uint64_t)(rand() % 4));
    if (committed > PAGES * PAGE) committed = PAGES * PAGE;
    sp_pin_set before = {0}, drop = {0}, add = {0};
    for (size_t i = 0; i < pinned.n; i++) sp_pin_set_add(&before, pinned.spans[i].start, pinned.spans[i].len);
    CHECK(sp_pin_plan(&pinned, committed, holes, n_holes, &drop, &add), "step %d: plan failed", step);
    apply(&pinned, &drop, &add);
    check_exact(&pinned, committed, holes, n_holes, step);
    /* kept: a registration outside every hole is never dropped */
    for (size_t d = 0; d < drop.n; d++)
      CHECK(sp_pin_overlaps(holes, n_holes, drop.spans[d].start, drop.spans[d].len) ||
                drop.spans[d].start + drop.spans[d].len > committed,
            "step %d: dropped a registration no file range touches", step);
    /* a second plan with nothing changed is empty */
    sp_pin_set drop2 = {0}, add2 = {0};
    sp_pin_plan(&pinned, committed, holes, n_holes, &drop2, &add2);
    CHECK(drop2.n == 0 && add2.n == 0, "step %d: an unchanged layout still plans %zu drops, %zu adds", step, drop2.n,
          add2.n);
    sp_pin_set_free(&before), sp_pin_set_free(&drop), sp_pin_set_free(&add);
    sp_pin_set_free(&drop2), sp_pin_set_free(&add2);
  }
  sp_pin_set_free(&pinned);
}

static void test_grow_appends(void) {
  sp_pin_set pinned = {0}, drop = {0}, add = {0};
  sp_pin_span hole = {2 * PAGE, 3 * PAGE};
  sp_pin_plan(&pinned, 8 * PAGE, &hole, 1, &drop, &add);
  apply(&pinned, &drop, &add);
  CHECK(pinned.n == 2, "one file range in the middle leaves two registrations, got %zu", pinned.n);
  sp_pin_set_free(&drop), sp_pin_set_free(&add);
  sp_pin_plan(&pinned, 12 * PAGE, &hole, 1, &drop, &add);
  CHECK(drop.n == 0 && add.n == 1 && add.spans[0].start == 8 * PAGE && add.spans[0].len == 4 * PAGE,
        "growing registers only the new pages (%zu drops, %zu adds)", drop.n, add.n);
  sp_pin_set_free(&pinned), sp_pin_set_free(&drop), sp_pin_set_free(&add);
}

static void test_run_end(void) {
  sp_pin_set pinned = {0};
  sp_pin_set_add(&pinned, 0, 2 * PAGE);
  sp_pin_set_add(&pinned, 5 * PAGE, 2 * PAGE);
  CHECK(sp_pin_run_end(&pinned, 0, 10 * PAGE) == 2 * PAGE, "a run stops at the end of its registration");
  CHECK(sp_pin_run_end(&pinned, 2 * PAGE, 10 * PAGE) == 5 * PAGE, "an unregistered run stops at the next one");
  CHECK(sp_pin_run_end(&pinned, 6 * PAGE, 10 * PAGE) == 7 * PAGE, "a run inside a registration stops at its end");
  CHECK(sp_pin_run_end(&pinned, 8 * PAGE, 9 * PAGE) == 9 * PAGE, "a run past every registration stops at end");
  CHECK(sp_pin_run_end(&pinned, 1 * PAGE, PAGE + 100) == PAGE + 100, "a short run stops at end");
  sp_pin_set_free(&pinned);
}

int main(void) {
  test_random_changes();
  test_grow_appends();
  test_run_end();
  return CHECK_DONE();
}
