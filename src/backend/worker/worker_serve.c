/*
 * worker_serve.c: the worker process's side of process isolation
 * (worker.h): one backend, one binding, driven by one host over a socket.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/worker/wire.h"
#include "backend/worker/worker.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/fault_guard.h"
#include "core/region.h"

typedef struct worker {
  int sock;
  sp_backend *be;
  bool had_device_memory; /* the backend knew its device memory at the start */
  sp_region *region;      /* this process's view of the guest's memory */
  void *binding;
  sp_file_range *files;   /* the file ranges mapped here now */
  uint32_t n_files;
  atomic_int file_shrank; /* a mapped file shrank under a kernel (fault_guard.h) */
  sp_cmd *last;           /* the last list submitted, for repeats */
  uint32_t n_last;
  unsigned spin_us;       /* waiting for the next request (wire.h) */
  uint32_t version;       /* the protocol version it speaks: SP_WIRE_VERSION (tests: another) */
  bool refused;           /* the host speaks another version: reply, then end */
  char *knob_text;        /* HELLO's knobs (the host's settings); the backend's strings point into it */
} worker;

static sp_error_t *no_binding(void) { return sp_error_new("worker: no memory adopted yet"); }

static sp_error_t *on_hello(worker *w, const sp_wire_msg *m, const char *name, const char *knobs, size_t knobs_len,
                            sp_wire_msg *reply, char *out, size_t *out_len) {
  reply->d = w->version; /* every answer to a HELLO says which protocol the worker speaks */
  if (m->d != w->version) {
    w->refused = true;
    return sp_error_new("samepage-worker speaks protocol version %u, the host speaks version %llu: they come from "
                        "different builds",
                        w->version, (unsigned long long)m->d);
  }
  if (w->be) return sp_error_new("worker: the backend exists already");
  sp_backend_options opts = {
      .version = SP_BACKEND_OPS_VERSION, .residency = m->a != 0, .graphs = m->b != 0, .worker_process = true};
  if (!(w->knob_text = strndup(knobs ? knobs : "", knobs_len))) return sp_error_new("worker: out of memory");
  sp_error_t *err = sp_knobs_parse_text(&opts.knobs, w->knob_text);
  if (!err) err = sp_backend_load(name, &opts, (unsigned)m->c, &w->be);
  if (err) return err;
  uint64_t used, total;
  w->had_device_memory = sp_backend_device_memory(w->be, &used, &total);
  /* A device backend leaves the CPU idle between requests: wait for the
   * next one awake for a while. A CPU backend needs those cores itself. */
  w->spin_us = w->had_device_memory ? 200 : 0;
  sp_backend_caps caps = sp_backend_caps_of(w->be);
  const char *resolved = sp_backend_name(w->be);
  memcpy(out, &caps, sizeof caps);
  memcpy(out + sizeof caps, resolved, strlen(resolved));
  *out_len = sizeof caps + strlen(resolved);
  reply->a = w->had_device_memory;
  return NULL;
}

static sp_error_t *on_adopt(worker *w, const sp_wire_msg *m, int *fds, int nfds, sp_wire_msg *reply) {
  if (!w->be || w->region || nfds != 1) return sp_error_new("worker: adopt needs a backend, one memfd, and no memory yet");
  sp_error_t *err = sp_region_attach(fds[0], m->n ? m->n : sp_page_size(), m->a, m->b, (void *)(uintptr_t)m->c, &w->region);
  if (err) return err;
  fds[0] = -1; /* the region owns the memfd now */
  sp_memory_view view = sp_region_view(w->region);
  view.host_budget = (size_t)m->d; /* the actor's scratch share: the worker's scratch counts against it */
  if ((err = sp_backend_adopt(w->be, &view, &w->binding))) return err;
  reply->a = (uintptr_t)w->region->base;
  reply->b = (uintptr_t)sp_backend_device_base(w->be, w->binding, &view);
  return NULL;
}

static sp_error_t *on_grow(worker *w, uint64_t committed, uint64_t host_budget) {
  sp_error_t *err = sp_region_grow(w->region, committed);
  sp_memory_view view = sp_region_view(w->region);
  view.host_budget = (size_t)host_budget;
  return err ? err : sp_backend_grow(w->be, w->binding, &view);
}

/* Follows the host's file mappings: what was file-backed becomes the memfd
 * again (the host has already set those bytes), then every current range
 * maps its file afresh (dropping pages pushed for an earlier mapping). */
static sp_error_t *remap_files(worker *w, const sp_file_range *next, uint32_t n) {
  sp_fault_guard_remove_owner(w);
  for (uint32_t i = 0; i < w->n_files; i++)
    if (!sp_region_remap(w->region, w->files[i].addr, w->files[i].len))
      return sp_error_new("worker: cannot unmap a file range at %#llx", (unsigned long long)w->files[i].addr);
  w->n_files = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (next[i].addr > w->region->committed || next[i].len > w->region->committed - next[i].addr)
      return sp_error_new("worker: file range at %#llx is outside memory", (unsigned long long)next[i].addr);
    if (mmap(w->region->base + next[i].addr, next[i].len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, next[i].fd,
             (off_t)next[i].file_offset) == MAP_FAILED)
      return sp_error_new("worker: cannot map a granted file at %#llx", (unsigned long long)next[i].addr);
    /* A file that shrinks later reads as zeros here, and the host is told. */
    sp_fault_guard_add(w, w->region->base + next[i].addr, next[i].len, &w->file_shrank, 1);
    w->files[w->n_files++] = next[i];
  }
  return NULL;
}

static sp_error_t *on_file_ranges(worker *w, const sp_wire_msg *m, const void *payload, const int *fds, int nfds) {
  if (m->payload != (uint64_t)m->n * sizeof(sp_wire_file_range)) return sp_error_new("worker: bad file ranges");
  const sp_wire_file_range *in = payload;
  sp_file_range *ranges = calloc((size_t)m->n + 1, sizeof *ranges);
  if (!ranges) return sp_error_new("worker: out of memory");
  sp_error_t *err = NULL;
  for (uint32_t i = 0; i < m->n && !err; i++) {
    int32_t k = in[i].fd_index;
    if (m->a && (k < 0 || k >= nfds)) err = sp_error_new("worker: file range %u has no file", i);
    ranges[i] = (sp_file_range){in[i].addr, in[i].len, k >= 0 && k < nfds ? fds[k] : -1, in[i].file_offset};
  }
  if (!err && m->a) {
    sp_file_range *grown = realloc(w->files, ((size_t)m->n + 1) * sizeof *grown);
    if (!grown) err = sp_error_new("worker: out of memory");
    else w->files = grown, err = remap_files(w, ranges, m->n);
  }
  if (!err) err = sp_backend_file_ranges(w->be, w->binding, ranges, m->n, m->a != 0);
  free(ranges);
  return err;
}

/* Writes the host's bytes of a file page the guest wrote (worker.h). */
static sp_error_t *on_push(worker *w, const sp_wire_msg *m, const void *payload) {
  if (m->a > w->region->committed || m->payload > w->region->committed - m->a)
    return sp_error_new("worker: push outside memory");
  if (payload) memcpy(w->region->base + m->a, payload, m->payload);
  return NULL;
}

/* A new list is kept: decode sends the same bytes every token, and then
 * the host says "the same list" instead of sending them again (backend.h,
 * submit's `same`: the host's runtime decided it, and the backend here
 * gets the same answer). */
/* The host validated the list and asked its copy of the backend's rules
 * (worker_proxy.c); the backend here has the last word, so that a host and
 * a library whose rules differ can never run a command the library does
 * not support. It is refused before it runs, with the status the host
 * would have given it. */
static sp_error_t *unsupported_cmd(worker *w, const sp_cmd *cmds, uint32_t count) {
  for (uint32_t i = 0; i < count; i++)
    if (!sp_backend_supports(w->be, &cmds[i]))
      return sp_error_with_status(SP_E_UNSUPPORTED, "cmd[%u]: op %u on %s is not supported by backend %s", i,
                                  cmds[i].op, sp_dtype_name(cmds[i].src[0].dtype), sp_backend_name(w->be));
  return NULL;
}

static sp_error_t *on_submit(worker *w, const sp_wire_msg *m, void **payload) {
  if (m->c == 1 && !m->payload) {
    if (m->n != w->n_last || !w->last) return sp_error_new("worker: a repeat of a list it does not have");
    return sp_backend_submit(w->be, w->binding, w->last, w->n_last, true);
  }
  if (m->payload != (uint64_t)m->n * sizeof(sp_cmd)) return sp_error_new("worker: bad command list");
  free(w->last);
  w->last = *payload, w->n_last = m->n;
  *payload = NULL;
  sp_error_t *err = unsupported_cmd(w, w->last, w->n_last);
  return err ? err : sp_backend_submit(w->be, w->binding, w->last, w->n_last, false);
}

/* Runs one request; reply values go to reply, a payload to out. */
/* Descriptors a reply carries back to the host (exported device memory). */
typedef struct reply_fds {
  int fd[SP_WIRE_MAX_FDS];
  int n;
} reply_fds;

/* freeze: with a descriptor, map the copy another worker made of the same
 * bytes; a copy made here is exported back with the reply. */
static sp_error_t *on_freeze(worker *w, const sp_wire_msg *m, const int *fds, int nfds, reply_fds *back) {
  int exported = -1;
  sp_error_t *err = sp_backend_freeze_shared(w->be, w->binding, m->a, m->b, m->c, nfds ? fds[0] : -1, &exported);
  if (exported >= 0) back->fd[back->n++] = exported;
  return err;
}

/* wait: the list is done; layouts it derived from shared copies go back
 * with the reply, for the host to hand to later workers. */
static sp_error_t *on_wait(worker *w, sp_wire_msg *reply, char *out, size_t cap, size_t *out_len, reply_fds *back) {
  sp_error_t *err = sp_backend_wait(w->be, w->binding);
  if (err) return err;
  uint32_t max = (uint32_t)(cap / sizeof(sp_derived_desc));
  if (max > SP_WIRE_MAX_FDS) max = SP_WIRE_MAX_FDS;
  reply->n = sp_backend_derived_exports(w->be, w->binding, (sp_derived_desc *)out, back->fd, max);
  back->n = (int)reply->n;
  *out_len = reply->n * sizeof(sp_derived_desc);
  return NULL;
}

/* Layouts another worker derived from a copy this one maps: each one
 * mapped here is one less to make. A failure only means making it. */
static sp_error_t *on_derived(worker *w, const sp_wire_msg *m, const void *payload, const int *fds, int nfds,
                              sp_wire_msg *reply) {
  if (m->payload != (uint64_t)m->n * sizeof(sp_derived_desc) || (int)m->n != nfds)
    return sp_error_new("worker: bad derived layouts");
  const sp_derived_desc *d = payload;
  for (uint32_t i = 0; i < m->n; i++) {
    sp_error_t *err = sp_backend_derived_import(w->be, w->binding, &d[i], fds[i]);
    reply->a += !err;
    sp_error_free(err);
  }
  return NULL;
}

static sp_error_t *handle(worker *w, const sp_wire_msg *m, void **payloadp, int *fds, int nfds, sp_wire_msg *reply,
                          char *out, size_t cap, size_t *out_len, reply_fds *back) {
  void *payload = *payloadp;
  if (m->op == SP_WIRE_HELLO) {
    /* payload: the backend name, a NUL, the knobs' text (sp_knobs_format) */
    char name[32] = {0};
    const char *end = payload ? memchr(payload, '\0', m->payload) : NULL;
    size_t name_len = end ? (size_t)(end - (const char *)payload) : m->payload;
    if (payload) memcpy(name, payload, name_len < sizeof name - 1 ? name_len : sizeof name - 1);
    return on_hello(w, m, name, end ? end + 1 : NULL, end ? m->payload - name_len - 1 : 0, reply, out, out_len);
  }
  if (m->op == SP_WIRE_ADOPT) return on_adopt(w, m, fds, nfds, reply);
  if (m->op == SP_WIRE_RESIDENCY) {
    sp_residency_stats st = sp_backend_residency(w->be);
    memcpy(out, &st, sizeof st);
    *out_len = sizeof st;
    return NULL;
  }
  if (m->op == SP_WIRE_DEVICE_MEMORY) {
    reply->c = sp_backend_device_memory(w->be, &reply->a, &reply->b);
    return NULL;
  }
  if (!w->binding) return no_binding();
  bool done = false;
  sp_error_t *err;
  switch (m->op) {
  case SP_WIRE_GROW: return on_grow(w, m->a, m->d);
  case SP_WIRE_SUBMIT: return on_submit(w, m, payloadp);
  case SP_WIRE_WAIT: return on_wait(w, reply, out, cap, out_len, back);
  case SP_WIRE_FREEZE: return on_freeze(w, m, fds, nfds, back);
  case SP_WIRE_DERIVED: return on_derived(w, m, payload, fds, nfds, reply);
  case SP_WIRE_FLUSH: return sp_backend_flush(w->be, w->binding, m->a, m->b);
  case SP_WIRE_DEVICE_LOCAL: return sp_backend_device_local(w->be, w->binding, m->a, m->b);
  case SP_WIRE_SYNC: return sp_backend_sync(w->be, w->binding, m->a, m->b);
  case SP_WIRE_LOCAL_ZERO:
    err = sp_backend_local_zero(w->be, w->binding, m->a, m->b, &done);
    reply->a = done;
    return err;
  case SP_WIRE_FILE_RANGES: return on_file_ranges(w, m, payload, fds, nfds);
  case SP_WIRE_PUSH: return on_push(w, m, payload);
  default: return sp_error_new("worker: unknown request %u", m->op);
  }
}

/* After an error: whether the device is gone for this process (CUDA after
 * a fault answers no more memory queries), so the worker must end. */
static bool device_lost(worker *w) {
  uint64_t used, total;
  return w->had_device_memory && !sp_backend_device_memory(w->be, &used, &total);
}

int sp_worker_serve(int sock) { return sp_worker_serve_version(sock, SP_WIRE_VERSION); }

int sp_worker_serve_version(int sock, uint32_t version) {
  worker w = {.sock = sock, .version = version};
  sp_fault_guard_install();
  char out[SP_WIRE_MAX_FDS * sizeof(sp_derived_desc)]; /* the largest reply payload */
  bool lost = false;
  while (!lost) {
    sp_wire_msg m;
    void *payload = NULL;
    int fds[SP_WIRE_MAX_FDS], nfds = 0;
    if (!sp_wire_recv(sock, w.spin_us, &m, &payload, fds, &nfds)) break; /* the host is gone or done with us */
    sp_wire_msg reply = {0};
    size_t out_len = 0;
    reply_fds back = {.n = 0};
    sp_error_t *err = handle(&w, &m, &payload, fds, nfds, &reply, out, sizeof out, &out_len, &back);
    if (!err && atomic_exchange(&w.file_shrank, 0))
      err = sp_error_new("a granted file changed on disk while mapped (the worker read zeros past its new end)");
    free(payload);
    for (int i = 0; i < nfds; i++)
      if (fds[i] >= 0) close(fds[i]); /* file mappings keep what they need */
    const char *text = out;
    if (err) { /* its message is the payload; it carries no descriptors */
      lost = w.be && device_lost(&w);
      reply.op = lost ? SP_WIRE_LOST : SP_WIRE_ERROR;
      reply.a = (uint64_t)(int64_t)sp_error_status(err);
      text = sp_error_message(err);
      out_len = strlen(text);
      for (int i = 0; i < back.n; i++) close(back.fd[i]);
      back.n = 0, reply.n = 0;
    }
    reply.payload = out_len;
    bool sent = sp_wire_send(sock, &reply, text, back.fd, back.n);
    for (int i = 0; i < back.n; i++) close(back.fd[i]);
    sp_error_free(err);
    if (!sent || w.refused) break;
  }
  if (lost) _exit(3); /* the device context is poisoned: tearing it down can hang or fault again */
  sp_fault_guard_remove_owner(&w);
  if (w.binding) sp_backend_release(w.be, w.binding);
  sp_backend_free(w.be);
  free(w.knob_text);
  sp_region_free(w.region);
  free(w.files);
  free(w.last);
  return 0;
}
