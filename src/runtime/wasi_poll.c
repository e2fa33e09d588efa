/*
 * wasi_poll.c: poll_oneoff with sleeps cut at the deadline (see wasi_poll.h).
 *
 * Layouts (WASI preview 1, little-endian):
 *   subscription, 48 bytes: userdata u64 @0, tag u8 @8 (0 = clock),
 *     clock id u32 @16 (0 realtime, 1 monotonic), timeout u64 @24 (ns),
 *     precision u64 @32, flags u16 @40 (bit 0: absolute time);
 *   event, 32 bytes: userdata u64 @0, error u16 @8, type u8 @10 (0 = clock),
 *     fd_readwrite (nbytes u64 @16, flags u16 @24), zero for clocks.
 */
#include "runtime/wasi_poll.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "runtime/runtime_impl.h"

#define SUB_SIZE 48
#define EVENT_SIZE 32

/* The helper: imports Wasmtime's poll_oneoff and a memory, exports the
 * memory and "poll", which passes its four arguments on:
 *   (module
 *     (type $p (func (param i32 i32 i32 i32) (result i32)))
 *     (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (type $p)))
 *     (import "env" "memory" (memory 0))
 *     (func (export "poll") (type $p)
 *       local.get 0 local.get 1 local.get 2 local.get 3 call $poll)
 *     (export "memory" (memory 0))) */
static const uint8_t helper_wasm[] = {
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    /* type */ 0x01, 0x09, 0x01, 0x60, 0x04, 0x7f, 0x7f, 0x7f, 0x7f, 0x01, 0x7f,
    /* import */ 0x02, 0x34, 0x02,
    0x16, 'w', 'a', 's', 'i', '_', 's', 'n', 'a', 'p', 's', 'h', 'o', 't', '_', 'p', 'r', 'e', 'v',
    'i', 'e', 'w', '1', 0x0b, 'p', 'o', 'l', 'l', '_', 'o', 'n', 'e', 'o', 'f', 'f', 0x00, 0x00,
    0x03, 'e', 'n', 'v', 0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00, 0x00,
    /* function */ 0x03, 0x02, 0x01, 0x00,
    /* export */ 0x07, 0x11, 0x02, 0x04, 'p', 'o', 'l', 'l', 0x00, 0x01,
    0x06, 'm', 'e', 'm', 'o', 'r', 'y', 0x02, 0x00,
    /* code */ 0x0a, 0x0e, 0x01, 0x0c, 0x00, 0x20, 0x00, 0x20, 0x01, 0x20, 0x02, 0x20, 0x03,
    0x10, 0x00, 0x0b};

/* The runtime's helper module, compiled the first time a guest needs it. */
static wasmtime_module_t *helper_module(sp_runtime_t *rt, wasmtime_error_t **err) {
  pthread_mutex_lock(&rt->poll_helper_lock);
  if (!rt->poll_helper) *err = wasmtime_module_new(rt->engine, helper_wasm, sizeof helper_wasm, &rt->poll_helper);
  wasmtime_module_t *module = rt->poll_helper;
  pthread_mutex_unlock(&rt->poll_helper_lock);
  return module;
}

static uint64_t clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sp_wasi_poll_origin(sp_actor_t *actor) { actor->poll.origin_ns = clock_ns(CLOCK_MONOTONIC); }

static uint64_t add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

static uint64_t load64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}

static wasm_trap_t *trap_text(const char *msg) { return wasmtime_trap_new(msg, strlen(msg)); }

/* ---- polls that are all clocks: waited on here ---- */

/* A copy of the clock subscriptions, read once from guest memory. */
typedef struct clock_poll {
  uint32_t n;
  uint64_t userdata[SP_POLL_MAX_CLOCKS];
  uint64_t wake_ns[SP_POLL_MAX_CLOCKS]; /* CLOCK_MONOTONIC */
} clock_poll;

/* When subscription `s` is due, on CLOCK_MONOTONIC; false when it is not
 * a realtime or monotonic clock. */
static bool clock_wake(const sp_actor_t *actor, const uint8_t *s, uint64_t now, uint64_t *wake) {
  uint32_t id;
  uint16_t flags;
  memcpy(&id, s + 16, 4);
  memcpy(&flags, s + 40, 2);
  uint64_t timeout = load64(s + 24);
  if (s[8] != 0 || id > 1) return false;
  if (!(flags & 1)) *wake = add_sat(now, timeout);
  else if (id == 1) *wake = add_sat(actor->poll.origin_ns, timeout);
  else {
    uint64_t real = clock_ns(CLOCK_REALTIME);
    *wake = timeout > real ? add_sat(now, timeout - real) : now;
  }
  return true;
}

/* Reads the n subscriptions at subs into *cp; false unless all are clocks. */
static bool read_clocks(const sp_actor_t *actor, const uint8_t *subs, uint32_t n, clock_poll *cp) {
  uint64_t now = clock_ns(CLOCK_MONOTONIC);
  cp->n = n;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t s[SUB_SIZE];
    memcpy(s, subs + (size_t)i * SUB_SIZE, SUB_SIZE);
    cp->userdata[i] = load64(s);
    if (!clock_wake(actor, s, now, &cp->wake_ns[i])) return false;
  }
  return true;
}

static void sleep_until(uint64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static wasm_trap_t *wait_clocks(sp_actor_t *actor, const clock_poll *cp, uint8_t *events, uint8_t *nevents,
                                wasmtime_val_raw_t *args) {
  uint64_t first = UINT64_MAX;
  for (uint32_t i = 0; i < cp->n; i++) first = cp->wake_ns[i] < first ? cp->wake_ns[i] : first;
  uint64_t deadline = actor->limits.deadline_ns;
  sleep_until(first < deadline ? first : deadline);
  if (first > deadline) {
    char msg[96];
    snprintf(msg, sizeof msg, "guest exceeded its %u ms time limit", actor->limits.timeout_ms);
    actor->limits.fired = true;
    return trap_text(msg);
  }
  uint64_t now = clock_ns(CLOCK_MONOTONIC);
  uint32_t k = 0;
  for (uint32_t i = 0; i < cp->n; i++) {
    if (cp->wake_ns[i] > now) continue;
    uint8_t ev[EVENT_SIZE] = {0}; /* error 0, type 0 (clock), no fd_readwrite */
    memcpy(ev, &cp->userdata[i], 8);
    memcpy(events + (size_t)k++ * EVENT_SIZE, ev, EVENT_SIZE);
  }
  memcpy(nevents, &k, 4);
  args[0].i32 = 0; /* errno success */
  return NULL;
}

/* ---- everything else: Wasmtime's poll_oneoff, through the helper ---- */

static wasm_trap_t *trap_from_error(wasmtime_error_t *err) {
  wasm_name_t msg;
  wasmtime_error_message(err, &msg);
  wasm_trap_t *trap = wasmtime_trap_new(msg.data, msg.size);
  wasm_byte_vec_delete(&msg);
  wasmtime_error_delete(err);
  return trap;
}

/* Instantiates the helper in the caller's store, importing Wasmtime's
 * poll_oneoff and the caller's memory. */
static wasm_trap_t *helper_start(sp_actor_t *actor, wasmtime_caller_t *caller) {
  wasmtime_context_t *cx = wasmtime_caller_context(caller);
  wasmtime_extern_t imports[2], poll;
  if (!wasmtime_linker_get(actor->rt->wasi_linker, cx, "wasi_snapshot_preview1", 22, "poll_oneoff", 11,
                           &imports[0]))
    return trap_text("internal: WASI's poll_oneoff is not defined");
  if (!wasmtime_caller_export_get(caller, "memory", 6, &imports[1]) || imports[1].kind != WASMTIME_EXTERN_MEMORY)
    return trap_text("poll_oneoff: the guest exports no memory");
  wasmtime_error_t *err = NULL;
  wasmtime_module_t *module = helper_module(actor->rt, &err);
  if (err) return trap_from_error(err);
  wasmtime_instance_t inst;
  wasm_trap_t *trap = NULL;
  err = wasmtime_instance_new(cx, module, imports, 2, &inst, &trap);
  if (err) return trap_from_error(err);
  if (trap) return trap;
  if (!wasmtime_instance_export_get(cx, &inst, "poll", 4, &poll) || poll.kind != WASMTIME_EXTERN_FUNC)
    return trap_text("internal: the poll_oneoff helper exports no poll");
  actor->poll.helper = poll.of.func;
  actor->poll.has_helper = true;
  return NULL;
}

static wasm_trap_t *wasmtime_poll(sp_actor_t *actor, wasmtime_caller_t *caller, wasmtime_val_raw_t *args) {
  wasm_trap_t *trap = actor->poll.has_helper ? NULL : helper_start(actor, caller);
  if (trap) return trap;
  wasmtime_val_t params[4], result = {0};
  for (int i = 0; i < 4; i++) params[i] = (wasmtime_val_t){.kind = WASMTIME_I32, .of.i32 = args[i].i32};
  wasmtime_error_t *err =
      wasmtime_func_call(wasmtime_caller_context(caller), &actor->poll.helper, params, 4, &result, 1, &trap);
  if (err) return trap_from_error(err);
  if (trap) return trap;
  args[0].i32 = result.of.i32;
  return NULL;
}

/* ---- the import ---- */

static bool fits(uint64_t addr, uint64_t len, size_t size) { return addr + len <= size; }

/* poll_oneoff(in, out, nsubscriptions, nevents_ptr) -> errno */
static wasm_trap_t *poll_oneoff(void *env, wasmtime_caller_t *caller, wasmtime_val_raw_t *args, size_t n) {
  sp_actor_t *actor = sp_abi_caller_actor(caller);
  uint32_t in = (uint32_t)args[0].i32, out = (uint32_t)args[1].i32;
  uint32_t nsubs = (uint32_t)args[2].i32, nevents = (uint32_t)args[3].i32;
  wasmtime_extern_t mem;
  if (!wasmtime_caller_export_get(caller, "memory", 6, &mem) || mem.kind != WASMTIME_EXTERN_MEMORY)
    return wasmtime_poll(actor, caller, args);
  wasmtime_context_t *cx = wasmtime_caller_context(caller);
  uint8_t *base = wasmtime_memory_data(cx, &mem.of.memory);
  size_t size = wasmtime_memory_data_size(cx, &mem.of.memory);
  clock_poll cp;
  if (nsubs == 0 || nsubs > SP_POLL_MAX_CLOCKS || !fits(in, (uint64_t)nsubs * SUB_SIZE, size) ||
      !fits(out, (uint64_t)nsubs * EVENT_SIZE, size) || !fits(nevents, 4, size) ||
      !read_clocks(actor, base + in, nsubs, &cp))
    return wasmtime_poll(actor, caller, args);
  return wait_clocks(actor, &cp, base + out, base + nevents, args);
}

wasmtime_error_t *sp_wasi_poll_define(wasmtime_linker_t *linker) {
  wasm_valtype_t *params[4], *results[1] = {wasm_valtype_new_i32()};
  for (int i = 0; i < 4; i++) params[i] = wasm_valtype_new_i32();
  wasm_valtype_vec_t pv, rv;
  wasm_valtype_vec_new(&pv, 4, params);
  wasm_valtype_vec_new(&rv, 1, results);
  wasm_functype_t *ty = wasm_functype_new(&pv, &rv);
  wasmtime_error_t *err = wasmtime_linker_define_func_unchecked(linker, "wasi_snapshot_preview1", 22, "poll_oneoff",
                                                                11, ty, poll_oneoff, NULL, NULL);
  wasm_functype_delete(ty);
  return err;
}
