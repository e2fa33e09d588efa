/* wasm_host.c: the Wasmtime engine and turning its errors into messages. */
#include "runtime/wasm_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

sp_error_t *sp_wasm_engine_new(sp_region_registry *regions, wasm_engine_t **out) {
  wasm_config_t *config = wasm_config_new();
  if (!config) return sp_error_new("wasmtime: cannot create a config");
  /* A 4 GiB reservation plus guard makes bounds checks free and, with
   * memory_may_move off, guarantees the base a backend mapped stays put. */
  wasmtime_config_memory_reservation_set(config, (uint64_t)1 << 32);
  wasmtime_config_memory_guard_size_set(config, (uint64_t)32 << 20);
  wasmtime_config_memory_may_move_set(config, false);
  /* Copy-on-write images need Wasmtime's own mmap memories; ours are
   * initialised by copying the data segments in (once, at instantiation). */
  wasmtime_config_memory_init_cow_set(config, false);
  wasmtime_config_parallel_compilation_set(config, true);
  /* Time limits: guests check the epoch at loops and calls (actor_limits.c). */
  wasmtime_config_epoch_interruption_set(config, true);
#ifdef WASMTIME_FEATURE_THREADS
  /* No shared memories: kernels write guest memory only while it waits. */
  wasmtime_config_wasm_threads_set(config, false);
#endif
  /* The compiled-module cache is an optimisation: ignore a config failure. */
  wasmtime_error_t *cache_err = wasmtime_config_cache_config_load(config, NULL);
  if (cache_err) wasmtime_error_delete(cache_err);
  sp_memory_creator_install(config, regions);
  wasm_engine_t *engine = wasm_engine_new_with_config(config);
  if (!engine) return sp_error_new("wasmtime: cannot create an engine");
  *out = engine;
  return NULL;
}

/* Appends "  at func (module) #index+offset" lines for each frame. */
static void append_trace(char *buf, size_t cap, const wasm_frame_vec_t *frames) {
  size_t len = strlen(buf);
  for (size_t i = 0; i < frames->size && len + 1 < cap; i++) {
    const wasm_frame_t *frame = frames->data[i];
    const wasm_name_t *func = wasmtime_frame_func_name(frame);
    const wasm_name_t *module = wasmtime_frame_module_name(frame);
    int n = snprintf(buf + len, cap - len, "\n    %zu: %.*s%s%.*s%s func[%u]+0x%zx", i,
                     func ? (int)func->size : 0, func ? func->data : "", func ? " " : "",
                     module ? (int)module->size : 0, module ? module->data : "",
                     module ? "" : "<module>", wasm_frame_func_index(frame),
                     wasm_frame_module_offset(frame));
    if (n < 0) break;
    len += (size_t)n;
    if (len >= cap) len = cap - 1;
  }
}

/* Wasmtime's messages embed their own backtrace and then the causes
 * ("Caused by:\n    0: ...\n    1: ..."). Keep only the causes, joined on
 * one line; our own backtrace follows from the frames. */
static void root_cause(const char *text, size_t len, char *out, size_t cap) {
  const char *marker = "Caused by:";
  const char *at = NULL;
  for (size_t i = 0; i + strlen(marker) <= len && !at; i++)
    if (!memcmp(text + i, marker, strlen(marker))) at = text + i + strlen(marker);
  if (!at) {
    snprintf(out, cap, "%.*s", (int)len, text);
    return;
  }
  size_t o = 0;
  const char *end = text + len;
  while (at < end && o + 1 < cap) {
    while (at < end && (*at == '\n' || *at == ' ')) at++;
    const char *line = at;
    while (at < end && *at != '\n') at++;
    const char *colon = memchr(line, ':', (size_t)(at - line));
    if (colon && colon - line <= 3) line = colon + 2 > at ? at : colon + 2; /* drop "0: " */
    if (at > line) o += (size_t)snprintf(out + o, cap - o, "%s%.*s", o ? "; " : "", (int)(at - line), line);
  }
}

static sp_error_t *message_with_trace(const char *what, const char *text, size_t text_len,
                                      const wasm_frame_vec_t *frames) {
  char buf[4096], cause[2048];
  root_cause(text, text_len, cause, sizeof cause);
  snprintf(buf, sizeof buf, "%s: %s", what, cause);
  if (frames && frames->size) {
    size_t len = strlen(buf);
    snprintf(buf + len, sizeof buf - len, "\n  wasm backtrace:");
    append_trace(buf, sizeof buf, frames);
  }
  return sp_error_new("%s", buf);
}

sp_error_t *sp_error_from_wasmtime(wasmtime_error_t *err, const char *what) {
  wasm_name_t message;
  wasmtime_error_message(err, &message);
  wasm_frame_vec_t frames = {0};
  wasmtime_error_wasm_trace(err, &frames);
  sp_error_t *out = message_with_trace(what, message.data, message.size, &frames);
  wasm_frame_vec_delete(&frames);
  wasm_byte_vec_delete(&message);
  wasmtime_error_delete(err);
  return out;
}

sp_error_t *sp_error_from_trap(wasm_trap_t *trap, const char *what) {
  wasm_message_t message;
  wasm_trap_message(trap, &message);
  wasm_frame_vec_t frames = {0};
  wasm_trap_trace(trap, &frames);
  size_t len = message.size && message.data[message.size - 1] == '\0' ? message.size - 1 : message.size;
  sp_error_t *out = message_with_trace(what, message.data, len, &frames);
  wasm_frame_vec_delete(&frames);
  wasm_byte_vec_delete(&message);
  wasm_trap_delete(trap);
  return out;
}
