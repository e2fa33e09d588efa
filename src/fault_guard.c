/* fault_guard.c: the process-wide SIGBUS handler for mapped files (fault_guard.h). */
#include "fault_guard.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SP_FAULT_SLOTS 4096

typedef struct guard_slot {
  _Atomic(const void *) owner; /* NULL: free; set last on add, cleared first on remove */
  _Atomic uintptr_t start, end;
  _Atomic(atomic_int *) flag;
  atomic_int value;
} guard_slot;

static guard_slot slots[SP_FAULT_SLOTS];
static atomic_int high_water; /* slots at or past it were never used */
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

static void on_sigbus(int sig, siginfo_t *info, void *uctx) {
  uintptr_t addr = (uintptr_t)info->si_addr;
  int n = atomic_load_explicit(&high_water, memory_order_acquire);
  for (int i = 0; i < n; i++) {
    guard_slot *s = &slots[i];
    if (!atomic_load_explicit(&s->owner, memory_order_acquire)) continue;
    uintptr_t start = atomic_load_explicit(&s->start, memory_order_relaxed);
    uintptr_t end = atomic_load_explicit(&s->end, memory_order_relaxed);
    atomic_int *flag = atomic_load_explicit(&s->flag, memory_order_relaxed);
    if (addr < start || addr >= end || !flag) continue;
    void *page = (void *)(addr & ~(page_size - 1));
    if (mmap(page, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) ==
        MAP_FAILED)
      break;
    atomic_store(flag, atomic_load_explicit(&s->value, memory_order_relaxed));
    atomic_fetch_add(&repaired, 1);
    return;
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

bool sp_fault_guard_add(const void *owner, void *start, size_t len, atomic_int *flag, int value) {
  if (!owner || !len) return false;
  pthread_mutex_lock(&lock);
  int n = atomic_load(&high_water), i = 0;
  while (i < n && atomic_load(&slots[i].owner)) i++;
  bool ok = i < SP_FAULT_SLOTS;
  if (ok) {
    guard_slot *s = &slots[i];
    atomic_store(&s->start, (uintptr_t)start);
    atomic_store(&s->end, (uintptr_t)start + len);
    atomic_store(&s->flag, flag);
    atomic_store(&s->value, value);
    atomic_store_explicit(&s->owner, owner, memory_order_release);
    if (i == n) atomic_store_explicit(&high_water, n + 1, memory_order_release);
  }
  pthread_mutex_unlock(&lock);
  return ok;
}

static void remove_where(const void *owner, uintptr_t start, uintptr_t end) {
  pthread_mutex_lock(&lock);
  int n = atomic_load(&high_water);
  for (int i = 0; i < n; i++) {
    guard_slot *s = &slots[i];
    if (atomic_load(&s->owner) != owner) continue;
    if (atomic_load(&s->end) <= start || atomic_load(&s->start) >= end) continue;
    atomic_store_explicit(&s->owner, NULL, memory_order_release);
    atomic_store(&s->flag, NULL);
  }
  pthread_mutex_unlock(&lock);
}

void sp_fault_guard_remove_range(const void *owner, void *start, size_t len) {
  remove_where(owner, (uintptr_t)start, (uintptr_t)start + len);
}

void sp_fault_guard_remove_owner(const void *owner) { remove_where(owner, 0, UINTPTR_MAX); }

unsigned long sp_fault_guard_repaired(void) { return atomic_load(&repaired); }
