/* fault_guard.c: the process-wide SIGBUS handler for mapped files (fault_guard.h). */
#include "core/fault_guard.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"

typedef struct guard_slot {
  atomic_bool live; /* set last on add, cleared first on remove */
  _Atomic uintptr_t start, end;
  _Atomic(atomic_int *) flag;
  atomic_int value;
} guard_slot;

/* One owner's ranges. Sets are never freed (the handler may be reading
 * one), only handed to another owner once free. */
typedef struct guard_set {
  _Atomic(const void *) owner; /* NULL: free; set before any slot goes live */
  atomic_int high_water;       /* slots at or past it are not live */
  guard_slot slots[SP_FAULT_GUARD_PER_OWNER];
} guard_set;

static guard_set sets[SP_FAULT_GUARD_OWNERS];
static atomic_int sets_high_water; /* sets at or past it were never used */
static atomic_ulong repaired;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct sigaction previous;
static uintptr_t page_size;

static void chain(int sig, siginfo_t *info, void *uctx) {
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction) previous.sa_sigaction(sig, info, uctx);
    return;
  }
  if (previous.sa_handler == SIG_IGN) return;
  if (previous.sa_handler == SIG_DFL) {
    /* Restore the default action; returning re-runs the faulting
     * instruction, which then ends the process as it would have. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    return;
  }
  previous.sa_handler(sig);
}

/* The live slot of any owner holding addr, or NULL. */
static guard_slot *slot_holding(uintptr_t addr) {
  int n_sets = atomic_load_explicit(&sets_high_water, memory_order_acquire);
  for (int i = 0; i < n_sets; i++) {
    guard_set *set = &sets[i];
    if (!atomic_load_explicit(&set->owner, memory_order_acquire)) continue;
    int n = atomic_load_explicit(&set->high_water, memory_order_acquire);
    for (int j = 0; j < n && j < SP_FAULT_GUARD_PER_OWNER; j++) {
      guard_slot *s = &set->slots[j];
      if (!atomic_load_explicit(&s->live, memory_order_acquire)) continue;
      uintptr_t start = atomic_load_explicit(&s->start, memory_order_relaxed);
      uintptr_t end = atomic_load_explicit(&s->end, memory_order_relaxed);
      if (addr >= start && addr < end && atomic_load_explicit(&s->flag, memory_order_relaxed)) return s;
    }
  }
  return NULL;
}

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
  uintptr_t addr = (uintptr_t)info->si_addr;
  guard_slot *s = slot_holding(addr);
  atomic_int *flag = s ? atomic_load_explicit(&s->flag, memory_order_relaxed) : NULL;
  if (flag) {
    void *page = (void *)(addr & ~(page_size - 1));
    if (mmap(page, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
      atomic_store(flag, atomic_load_explicit(&s->value, memory_order_relaxed));
      atomic_fetch_add(&repaired, 1);
      return;
    }
  }
  chain(sig, info, uctx);
}

static void install_once(void) {
  page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGBUS, &sa, &previous);
}

void sp_fault_guard_install(void) { pthread_once(&once, install_once); }

/* ---- the tables, under `lock` ---- */

static guard_set *set_of(const void *owner) {
  int n = atomic_load(&sets_high_water);
  for (int i = 0; i < n; i++)
    if (atomic_load(&sets[i].owner) == owner) return &sets[i];
  return NULL;
}

/* owner's set, taking a free one when it has none; NULL when none is free. */
static guard_set *set_for(const void *owner) {
  guard_set *set = set_of(owner);
  if (set) return set;
  int n = atomic_load(&sets_high_water), i = 0;
  while (i < n && atomic_load(&sets[i].owner)) i++;
  if (i == SP_FAULT_GUARD_OWNERS) return NULL;
  set = &sets[i];
  atomic_store(&set->high_water, 0);
  atomic_store_explicit(&set->owner, owner, memory_order_release);
  if (i == n) atomic_store_explicit(&sets_high_water, n + 1, memory_order_release);
  return set;
}

static bool inside(const guard_slot *s, uintptr_t start, uintptr_t end) {
  return atomic_load(&s->start) >= start && atomic_load(&s->end) <= end;
}

static void clear_slot(guard_slot *s) {
  atomic_store_explicit(&s->live, false, memory_order_release);
  atomic_store(&s->flag, NULL);
}

/* Live slots of set that a new range [start, end) would not replace. */
static int kept_slots(const guard_set *set, uintptr_t start, uintptr_t end) {
  int kept = 0, n = atomic_load(&set->high_water);
  for (int j = 0; j < n; j++) kept += atomic_load(&set->slots[j].live) && !inside(&set->slots[j], start, end);
  return kept;
}

static void remove_inside(guard_set *set, uintptr_t start, uintptr_t end) {
  int n = atomic_load(&set->high_water);
  for (int j = 0; j < n; j++)
    if (atomic_load(&set->slots[j].live) && inside(&set->slots[j], start, end)) clear_slot(&set->slots[j]);
}

static void add_slot(guard_set *set, uintptr_t start, uintptr_t end, atomic_int *flag, int value) {
  int n = atomic_load(&set->high_water), j = 0;
  while (j < n && atomic_load(&set->slots[j].live)) j++;
  guard_slot *s = &set->slots[j]; /* the caller made room */
  atomic_store(&s->start, start);
  atomic_store(&s->end, end);
  atomic_store(&s->flag, flag);
  atomic_store(&s->value, value);
  atomic_store_explicit(&s->live, true, memory_order_release);
  if (j == n) atomic_store_explicit(&set->high_water, n + 1, memory_order_release);
}

sp_error_t *sp_fault_guard_replace(const void *owner, void *start, size_t len, atomic_int *flag, int value) {
  if (!owner || !len || !flag) return sp_error_new("fault guard: empty range, or no owner or flag");
  uintptr_t lo = (uintptr_t)start, hi = lo + len;
  pthread_mutex_lock(&lock);
  sp_error_t *err = NULL;
  guard_set *set = set_for(owner);
  if (!set)
    err = sp_error_new("fault guard: %d other actors already hold guarded file mappings, the most one process "
                       "may hold", SP_FAULT_GUARD_OWNERS);
  else if (kept_slots(set, lo, hi) >= SP_FAULT_GUARD_PER_OWNER)
    err = sp_error_new("fault guard: this actor already holds %d guarded file mappings, the most one actor may "
                       "hold (map over an existing one, or read the file instead)", SP_FAULT_GUARD_PER_OWNER);
  if (!err) {
    remove_inside(set, lo, hi);
    add_slot(set, lo, hi, flag, value);
  }
  pthread_mutex_unlock(&lock);
  return err;
}

bool sp_fault_guard_add(const void *owner, void *start, size_t len, atomic_int *flag, int value) {
  sp_error_t *err = sp_fault_guard_replace(owner, start, len, flag, value);
  bool ok = !err;
  sp_error_free(err);
  return ok;
}

void sp_fault_guard_remove_range(const void *owner, void *start, size_t len) {
  pthread_mutex_lock(&lock);
  guard_set *set = set_of(owner);
  if (set) remove_inside(set, (uintptr_t)start, (uintptr_t)start + len);
  pthread_mutex_unlock(&lock);
}

void sp_fault_guard_remove_owner(const void *owner) {
  pthread_mutex_lock(&lock);
  guard_set *set = set_of(owner);
  if (set) {
    remove_inside(set, 0, UINTPTR_MAX);
    atomic_store_explicit(&set->owner, NULL, memory_order_release);
  }
  pthread_mutex_unlock(&lock);
}

unsigned long sp_fault_guard_repaired(void) { return atomic_load(&repaired); }
