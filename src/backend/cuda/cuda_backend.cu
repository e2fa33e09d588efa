/*
 * cuda_backend.cu: the CUDA backend, computing on guest memory in place.
 *
 * Adopting a region registers the actor's committed memory with the device,
 * mapped (cudaHostRegister), so kernels read and write the guest's own bytes
 * at the same address (pointer identity is checked and reported); each
 * memory.grow registers the newly committed pages. submit() enqueues the
 * list on the binding's stream and wait() synchronizes it: GPU writes to
 * guest memory happen only while the guest is blocked inside its submit
 * host call (docs/CUDA.md).
 *
 * Residency: freeze() copies an immutable range (weights) to device memory
 * once; a source tensor wholly inside a frozen range is read from the copy.
 * The validator guarantees no command writes a frozen range; a guest that
 * rewrites one with its own stores calls flush(). The bytes and milliseconds
 * are counted and reported, never hidden. Copies whose bytes the runtime
 * named (an identity: the same granted file's bytes) are one device copy
 * for every actor of the backend, refcounted; a flush gives the flushing
 * actor a copy of its own first (resident_cache.h).
 *
 * Device-local ranges (activations, KV cache) get a mirror in device memory,
 * uploaded once when declared: every tensor wholly inside one (source or
 * destination) is computed on the mirror, so kernels never cross the bus for
 * it. The guest reads such bytes only after sync() (device -> guest memory)
 * and flushes what it writes itself; a snapshot syncs them all.
 *
 * Graphs: a list byte-identical to the previous one on the binding (a decode
 * step: positions and token ids are read from guest memory by the kernels)
 * is captured once as a CUDA graph and replayed after that.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cuda/cuda_common.cuh"
extern "C" {
#include "backend/backend.h"
#include "clock.h"
#include "knobs.h"
#include "dtype.h"
#include "error.h"
}
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_rules.h"
#include "backend/cuda/fault.h"
#include "backend/cuda/fuse.h"
#include "backend/cuda/gemm.h"
#include "backend/cuda/pin_plan.h"
#include "backend/cuda/repack.h"
#include "backend/cuda/resident_device.h"

#define SP_CU_MAX_FROZEN 16
#define SP_CU_MAX_LOCAL 16
#define SP_CU_MAX_CHECKED 16
#define SP_CU_STAGE_BYTES 16384 /* staging buffer per binding */
#define SP_CU_STAGE_MAX 4096    /* largest tensor staged */

typedef struct sp_cu_ctx {
  int device;
  bool residency, graphs, integrated;
  bool local; /* device-local ranges get mirrors (the knob SP_CUDA_NO_DEVICE_LOCAL turns it off) */
  bool fusion, staging, flash; /* knobs SP_CUDA_NO_FUSION, _NO_STAGING, _NO_FLASH, negated */
  int timing; /* SP_CUDA_TIMING (measurement): 1 = GPU time per list, 2 = per command (graphs off) */
  pthread_mutex_t mu; /* guards stats and cache */
  sp_residency_stats stats;
  sp_resident_cache cache; /* frozen ranges' copies, shared across bindings by identity */
  sp_cu_gemm *gemm;        /* prefill products through cuBLAS, for every binding (gemm.h) */
} sp_cu_ctx;

/* A frozen range's resident copy, or a device-local range's mirror. */
typedef struct sp_cu_frozen {
  uint64_t addr, len;
  uint8_t *dev; /* device copy, NULL when the copy could not be afforded */
  sp_resident_copy *copy; /* frozen ranges: the (maybe shared) copy dev points into */
} sp_cu_frozen;

typedef struct sp_cu_binding {
  const sp_cu_ctx *ctx;  /* the backend it belongs to (its knobs) */
  sp_memory_view view;
  uint8_t *dbase;        /* device address of guest address 0 */
  sp_pin_set pinned;     /* registrations: [0, committed) minus holes (pin_plan.h) */
  sp_pin_span *holes;    /* file-backed ranges: never registered, never read by kernels */
  size_t n_holes;
  cudaStream_t stream;
  sp_cu_status *status_dev, *status_host;
  sp_cu_frozen frozen[SP_CU_MAX_FROZEN];
  uint32_t n_frozen;
  sp_cu_frozen local[SP_CU_MAX_LOCAL]; /* device-local mirrors */
  uint32_t n_local;
  sp_cu_repacked *repacked; /* per command of the list: its weight's repacked layout */
  uint32_t repacked_cap;
  uint8_t *stage_dev;    /* staged index tensors (plan_staging) */
  uint8_t *reduce_dev;   /* argmax partials and counters (sp_cu_cmd.reduce) */
  struct { uint32_t offset, len, at; } staged[SP_CU_MAX_STAGED];
  uint32_t n_staged;
  sp_cu_gemm *gemm;      /* the backend's cuBLAS state (gemm.h), once a list needed it */
  int8_t *xq;            /* quantized activations scratch */
  float *xd, *xs;
  size_t xq_cap;         /* elements of xq */
  sp_cmd *last;          /* the previous list, for replay */
  uint32_t last_count, last_cap;
  cudaGraphExec_t exec;
  bool has_exec, dirty;
  /* SP_CUDA_TIMING: events around each list (and after each command, 2);
   * [1] sums repeated lists (decode steps), [0] the others */
  cudaEvent_t t_start, t_end, *t_ops;
  uint32_t t_ops_cap;
  bool t_pending, t_same;
  double t_ms[2], op_ms[SP_OP_COUNT];
  uint64_t t_n[2], op_n[SP_OP_COUNT];
} sp_cu_binding;

/* ---- a lost device (fault.h): process-wide, as CUDA makes it ---- */

static pthread_mutex_t lost_mu = PTHREAD_MUTEX_INITIALIZER;
static int lost;            /* set once, never cleared */
static char lost_why[384];  /* the first fault, as its actor was told */

/* Records a sticky error (the first one names the cause) and returns the
 * error for the caller that met it. */
static sp_error_t *note_fault(cudaError_t e, const char *what) {
  pthread_mutex_lock(&lost_mu);
  bool first = !lost;
  if (first)
    snprintf(lost_why, sizeof lost_why, "%s: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
  __atomic_store_n(&lost, 1, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&lost_mu);
  /* A worker process (process isolation) serves one actor: nothing else to say. */
  const char *others = sp_cu_worker_process()
                           ? ""
                           : "; CUDA ends every context of a process after a fault, so the device is lost to this "
                             "process (other actors' CUDA calls now fail at once; restart the process to use it "
                             "again: snapshots restore there; --isolation process confines a fault to one actor)";
  return sp_error_new("cuda: %s: %s (%s): the GPU faulted%s%s", what, cudaGetErrorString(e), cudaGetErrorName(e),
                      others, first ? "" : " [not the first fault]");
}

/* The error every call answers once the device is lost, else NULL. */
static sp_error_t *device_lost(void) {
  if (!__atomic_load_n(&lost, __ATOMIC_ACQUIRE)) return NULL;
  pthread_mutex_lock(&lost_mu);
  sp_error_t *err = sp_error_with_kind(SP_ERROR_DEVICE_LOST,
                                       "cuda: the GPU is lost to this process after a fault in another list (%s); "
                                       "restart the process to use it again (snapshots restore there)", lost_why);
  pthread_mutex_unlock(&lost_mu);
  return err;
}

#define CU_TRY(call, ...)                                                              \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                           \
      char what_[256];                                                                 \
      snprintf(what_, sizeof what_, __VA_ARGS__);                                      \
      if (sp_cu_fault_is_sticky(e_)) return note_fault(e_, what_);                     \
      return sp_error_new("cuda: %s: %s (%s)", what_, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
    }                                                                                  \
  } while (0)

/* Every entry point that touches the device starts here. */
#define CU_ENTER(c)                                                                    \
  do {                                                                                 \
    sp_error_t *lost_ = device_lost();                                                 \
    if (lost_) return lost_;                                                           \
    CU_TRY(cudaSetDevice((c)->device), "selecting device %d", (c)->device);           \
  } while (0)

/* The process's settings (cuda_common.cuh): the first backend's knobs. */
static struct sp_knobs process_knobs;
static bool process_worker;
static pthread_once_t process_once = PTHREAD_ONCE_INIT;
static const sp_backend_options *first_opts;

static void set_process_knobs(void) { process_knobs = first_opts->knobs, process_worker = first_opts->worker_process; }

const struct sp_knobs *sp_cu_knobs(void) { return &process_knobs; }
bool sp_cu_worker_process(void) { return process_worker; }

/* The launch helper asks for every kernel: a field read. */
bool sp_cu_pdl_enabled(void) { return !process_knobs.cuda_no_pdl; }

static const char *op_name(uint32_t op) {
  static const char *names[SP_OP_COUNT] = {"nop", "matmul", "add", "mul", "scale", "get_rows", "rmsnorm",
                                           "rope", "attention", "set_rows", "swiglu", "softmax", "copy", "argmax"};
  return op < SP_OP_COUNT ? names[op] : "unknown";
}

/* ---- the vtable: capabilities, adopt, grow ---- */

static sp_backend_caps cu_caps(void *vctx) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_backend_caps caps = {};
  caps.zero_copy = true;
  caps.unified_memory = c->integrated;
  caps.residency = c->residency && !c->integrated;
  /* a file-mapped range is never registered (registering file-backed pages
   * can hang): kernels can read it only from a resident copy */
  caps.no_file_maps = !caps.residency;
  caps.device_local = c->local;
  caps.shares_frozen = caps.residency;
  return caps;
}

/* Makes the registrations match [0, committed) minus holes (pin_plan.h).
 * With drops_only, only unregisters: before a mapping change, when what is
 * about to become anonymous is still file-backed and must not be pinned. */
static sp_error_t *pin_to(sp_cu_binding *b, size_t committed, const sp_pin_span *holes, size_t n_holes,
                          bool drops_only) {
  sp_pin_set drop = {}, add = {};
  sp_error_t *err = NULL;
  if (!sp_pin_plan(&b->pinned, committed, holes, n_holes, &drop, &add)) err = sp_error_new("cuda: out of host memory");
  for (size_t i = 0; i < drop.n && !err; i++) {
    cudaError_t e = cudaHostUnregister(b->view.base + drop.spans[i].start);
    for (size_t k = 0; k < b->pinned.n; k++)
      if (b->pinned.spans[k].start == drop.spans[i].start) {
        sp_pin_set_remove(&b->pinned, k);
        break;
      }
    if (e != cudaSuccess)
      err = sp_error_new("cuda: unregistering guest memory [%llu, +%llu): %s", (unsigned long long)drop.spans[i].start,
                         (unsigned long long)drop.spans[i].len, cudaGetErrorString(e));
  }
  for (size_t i = 0; i < add.n && !err && !drops_only; i++) {
    const sp_pin_span *s = &add.spans[i];
    cudaError_t e = cudaHostRegister(b->view.base + s->start, s->len, cudaHostRegisterMapped | cudaHostRegisterPortable);
    if (e != cudaSuccess)
      err = sp_error_new("cuda: registering guest memory [%llu, %llu): %s", (unsigned long long)s->start,
                         (unsigned long long)(s->start + s->len), cudaGetErrorString(e));
    else if (!sp_pin_set_add(&b->pinned, s->start, s->len))
      cudaHostUnregister(b->view.base + s->start), err = sp_error_new("cuda: out of host memory");
  }
  sp_pin_set_free(&drop), sp_pin_set_free(&add);
  return err;
}

static void cu_release(void *vctx, void *binding);

static sp_error_t *cu_adopt(void *vctx, const sp_memory_view *view, void **binding) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  CU_ENTER(c);
  sp_cu_binding *b = (sp_cu_binding *)calloc(1, sizeof *b);
  if (!b) return sp_error_new("cuda adopt: out of memory");
  b->ctx = c;
  b->view = *view;
  sp_error_t *err = pin_to(b, view->committed, NULL, 0, false);
  void *dptr = NULL;
  cudaError_t e = cudaSuccess;
  if (!err && (e = cudaHostGetDevicePointer(&dptr, view->base, 0)) != cudaSuccess)
    err = sp_error_new("cuda: no device pointer for guest memory: %s", cudaGetErrorString(e));
  b->dbase = (uint8_t *)dptr;
  if (!err && (e = cudaStreamCreateWithFlags(&b->stream, cudaStreamNonBlocking)) != cudaSuccess)
    err = sp_error_new("cuda: creating a stream: %s", cudaGetErrorString(e));
  if (!err && (e = cudaMalloc(&b->status_dev, sizeof(sp_cu_status))) != cudaSuccess)
    err = sp_error_new("cuda: status word: %s", cudaGetErrorString(e));
  if (!err && (e = cudaMalloc(&b->stage_dev, SP_CU_STAGE_BYTES)) != cudaSuccess)
    err = sp_error_new("cuda: staging buffer: %s", cudaGetErrorString(e));
  if (!err && (e = cudaMalloc(&b->reduce_dev, SP_CU_REDUCE_BYTES)) != cudaSuccess)
    err = sp_error_new("cuda: reduction scratch: %s", cudaGetErrorString(e));
  if (!err && (e = cudaMemset(b->reduce_dev, 0, SP_CU_REDUCE_BYTES)) != cudaSuccess)
    err = sp_error_new("cuda: reduction scratch: %s", cudaGetErrorString(e));
  if (!err && (e = cudaMallocHost(&b->status_host, sizeof(sp_cu_status))) != cudaSuccess)
    err = sp_error_new("cuda: host status word: %s", cudaGetErrorString(e));
  if (err) {
    cu_release(vctx, b);
    return err;
  }
  memset(b->status_host, 0, sizeof *b->status_host);
  *binding = b;
  return NULL;
}

static sp_error_t *cu_grow(void *vctx, void *binding, const sp_memory_view *view) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  CU_ENTER(c);
  b->view = *view;
  return pin_to(b, view->committed, b->holes, b->n_holes, false);
}

/* The runtime changes which ranges are file-backed (backend.h): unpin what
 * they will cover first, pin what is anonymous again after. */
static sp_error_t *cu_file_ranges(void *vctx, void *binding, const sp_file_range *files, uint32_t n, bool done) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  CU_ENTER(c);
  CU_TRY(cudaStreamSynchronize(b->stream), "remapping guest memory: waiting for the stream");
  sp_pin_span *holes = (sp_pin_span *)malloc((n ? n : 1) * sizeof *holes);
  if (!holes) return sp_error_new("cuda: out of host memory");
  for (uint32_t i = 0; i < n; i++) holes[i] = sp_pin_span{files[i].addr, files[i].len};
  sp_error_t *err = pin_to(b, b->view.committed, holes, n, !done);
  if (done) free(b->holes), b->holes = holes, b->n_holes = n;
  else free(holes);
  b->dirty = true; /* a captured graph was checked against the old layout */
  return err;
}

static void *cu_device_base(void *vctx, void *binding) { return ((sp_cu_binding *)binding)->dbase; }

/* Copies between guest bytes [addr, addr + len) and device memory dev, one
 * registration at a time: a copy through pinned memory may not span two
 * cudaHostRegister ranges (cudaErrorInvalidValue), and memory.grow and
 * file mappings make several. */
static cudaError_t copy_guest(const sp_cu_binding *b, uint8_t *dev, uint64_t addr, uint64_t len, bool to_device) {
  for (uint64_t at = addr, end = addr + len; at < end;) {
    uint64_t stop = sp_pin_run_end(&b->pinned, at, end); /* file-backed runs copy as pageable memory */
    uint8_t *host = b->view.base + at, *d = dev + (at - addr);
    cudaError_t e = to_device ? cudaMemcpy(d, host, stop - at, cudaMemcpyHostToDevice)
                              : cudaMemcpy(host, d, stop - at, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return e;
    at = stop;
  }
  return cudaSuccess;
}

/* ---- residency: freeze and flush ---- */

static void count_copy(sp_cu_ctx *c, double ms) {
  pthread_mutex_lock(&c->mu);
  c->stats.copies++, c->stats.ms += ms;
  pthread_mutex_unlock(&c->mu);
}

/* The binding's upload of guest bytes into a resident copy (timed). */
typedef struct frozen_upload {
  sp_cu_ctx *c;
  sp_cu_binding *b;
} frozen_upload;

static sp_error_t *upload_frozen(void *ctx, void *dev, uint64_t addr, uint64_t len) {
  frozen_upload *u = (frozen_upload *)ctx;
  double t0 = sp_now_ms();
  CU_TRY(copy_guest(u->b, (uint8_t *)dev, addr, len, true), "copying %llu frozen bytes", (unsigned long long)len);
  count_copy(u->c, sp_now_ms() - t0);
  return NULL;
}

/* Points kernels at f's copy, or at guest memory when it has none. A moved
 * pointer (copy-on-flush, a restore taking another actor's copy) makes a
 * captured graph stale. */
static void point_at_copy(sp_cu_binding *b, sp_cu_frozen *f) {
  uint8_t *dev = f->copy ? (uint8_t *)f->copy->dev : NULL;
  if (dev != f->dev) b->dirty = true;
  f->dev = dev;
}

/* The frozen range holding [addr, addr + len) (exactly, when exact). */
static sp_cu_frozen *frozen_of(sp_cu_binding *b, uint64_t addr, uint64_t len, bool exact) {
  for (uint32_t i = 0; i < b->n_frozen; i++) {
    sp_cu_frozen *f = &b->frozen[i];
    if (exact ? addr == f->addr && len == f->len : addr >= f->addr && addr + len <= f->addr + f->len) return f;
  }
  return NULL;
}

/* Refreshes f's copy with guest bytes [addr, addr + len) (resident_cache.h:
 * copy-on-flush, or a restore's re-declaration under identity), once the
 * binding's kernels are done reading it. */
static sp_error_t *refresh_frozen(sp_cu_ctx *c, sp_cu_binding *b, sp_cu_frozen *f, uint64_t addr, uint64_t len,
                                  uint64_t identity) {
  CU_ENTER(c);
  CU_TRY(cudaStreamSynchronize(b->stream), "refreshing a resident copy: waiting for the stream");
  frozen_upload u = {c, b};
  sp_resident_upload up = {&u, upload_frozen};
  sp_error_t *err = sp_resident_refresh(&c->cache, &up, &f->copy, f->addr, f->len, addr, len, identity);
  point_at_copy(b, f);
  b->dirty = true; /* a copy rewritten in place dropped its repacked weights (repack.h) */
  return err;
}

static sp_error_t *cu_freeze_shared(void *vctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity,
                                    int import_fd, int *export_fd) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  *export_fd = -1;
  if (!c->residency || c->integrated) return NULL;
  sp_cu_frozen *f = frozen_of(b, addr, len, true);
  if (f) return refresh_frozen(c, b, f, addr, len, identity); /* a restore re-declared it */
  bool mapped = sp_pin_overlaps(b->holes, b->n_holes, addr, len);
  if (b->n_frozen == SP_CU_MAX_FROZEN) /* no room for another copy: zero-copy, or read if file-mapped */
    return mapped ? sp_error_with_status(SP_E_UNSUPPORTED, "no room for another resident copy (%d held)",
                                         SP_CU_MAX_FROZEN)
                  : NULL;
  CU_ENTER(c);
  frozen_upload u = {c, b};
  sp_resident_upload up = {&u, upload_frozen};
  sp_resident_copy *copy = NULL;
  sp_error_t *err = sp_resident_freeze_shared(&c->cache, &up, addr, len, identity, import_fd, export_fd, &copy);
  if (!err && !copy && mapped) /* the runtime reads the file instead */
    return sp_error_with_status(SP_E_UNSUPPORTED, "no device memory for a resident copy of file-mapped "
                                "[0x%llx, +%llu)", (unsigned long long)addr, (unsigned long long)len);
  if (err || !copy) return err; /* no copy: the range stays zero-copy */
  f = &b->frozen[b->n_frozen++];
  *f = (sp_cu_frozen){addr, len, NULL, copy};
  point_at_copy(b, f);
  return NULL;
}

/* Repacked layouts of shared copies, for other worker processes (repack.h). */
static uint32_t cu_derived_exports(void *vctx, void *binding, sp_derived_desc *out, int *fds, uint32_t max) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  uint32_t n = 0; /* exporting needs no current device: this runs after every list */
  for (uint32_t i = 0; i < b->n_frozen && n < max; i++) {
    sp_resident_copy *copy = b->frozen[i].copy;
    if (copy && copy->cross_process && copy->identity)
      n += sp_cu_repack_exports(copy, &c->mu, out + n, fds + n, max - n);
  }
  return n;
}

static sp_error_t *cu_derived_import(void *vctx, void *binding, const sp_derived_desc *d, int fd) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  cudaSetDevice(c->device);
  for (uint32_t i = 0; i < b->n_frozen; i++) {
    sp_resident_copy *copy = b->frozen[i].copy;
    if (copy && copy->identity == d->identity)
      return sp_cu_repack_import(copy, &c->mu, d, fd) ? NULL
                                                      : sp_error_new("cuda: cannot map a repacked layout another "
                                                                     "worker made (it will be made here)");
  }
  return sp_error_new("cuda: no frozen copy of identity %llx for a repacked layout", (unsigned long long)d->identity);
}

static sp_error_t *cu_freeze(void *vctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity) {
  int unused;
  return cu_freeze_shared(vctx, binding, addr, len, identity, -1, &unused);
}

static void add_local_stats(sp_cu_ctx *c, int64_t held, uint64_t moved, double ms) {
  pthread_mutex_lock(&c->mu);
  c->stats.local_bytes = (uint64_t)((int64_t)c->stats.local_bytes + held);
  if (moved) c->stats.transfers++, c->stats.transfer_bytes += moved, c->stats.transfer_ms += ms;
  pthread_mutex_unlock(&c->mu);
}

/* The mirror holding all of [addr, addr + len), or NULL. */
static sp_cu_frozen *local_of(sp_cu_binding *b, uint64_t addr, uint64_t len) {
  for (uint32_t i = 0; i < b->n_local; i++) {
    sp_cu_frozen *l = &b->local[i];
    if (l->dev && addr >= l->addr && addr + len <= l->addr + l->len) return l;
  }
  return NULL;
}

/* Copies guest bytes [addr, addr + len) into mirror l, or back from it,
 * once the stream's kernels are done with it; counted. */
static sp_error_t *move_local(sp_cu_ctx *c, sp_cu_binding *b, sp_cu_frozen *l, uint64_t addr, uint64_t len,
                              bool to_device) {
  const char *what = to_device ? "device_local: uploading" : "sync: copying back";
  double t0 = sp_now_ms();
  CU_TRY(cudaStreamSynchronize(b->stream), "%s: waiting for the stream", what);
  CU_TRY(copy_guest(b, l->dev + (addr - l->addr), addr, len, to_device), "%s %llu bytes", what,
         (unsigned long long)len);
  add_local_stats(c, 0, len, sp_now_ms() - t0);
  return NULL;
}

static sp_error_t *cu_device_local(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  if (!c->local || b->n_local == SP_CU_MAX_LOCAL) return NULL;
  CU_ENTER(c);
  uint8_t *dev = NULL;
  if (cudaMalloc(&dev, len) != cudaSuccess) {
    cudaGetLastError(); /* not sticky: clear it and compute on guest memory */
    fprintf(stderr, "samepage: cuda: no device memory for a %.1f MiB device-local mirror; computing on host "
            "memory instead\n", len / 1048576.0);
    return NULL;
  }
  sp_cu_frozen *l = &b->local[b->n_local];
  *l = (sp_cu_frozen){addr, len, dev};
  add_local_stats(c, (int64_t)len, 0, 0);
  sp_error_t *err = move_local(c, b, l, addr, len, true);
  if (err) {
    cudaFree(dev);
    add_local_stats(c, -(int64_t)len, 0, 0);
    return err;
  }
  b->n_local++;
  b->dirty = true; /* a captured graph points at guest memory for these bytes */
  return NULL;
}

static sp_error_t *cu_sync(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  sp_cu_frozen *l = local_of(b, addr, len);
  if (!l) return NULL; /* no mirror: guest memory is already current */
  CU_ENTER(c);
  return move_local(c, b, l, addr, len, false);
}

/* A restore zeroes part of a device-local range on its mirror alone: the
 * guest's copy is not authoritative until sync, so it is left as it is. */
static sp_error_t *cu_local_zero(void *vctx, void *binding, uint64_t addr, uint64_t len, bool *done) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  sp_cu_frozen *l = local_of(b, addr, len);
  if (!l) return NULL; /* no mirror: the caller zeroes guest memory */
  CU_ENTER(c);
  CU_TRY(cudaStreamSynchronize(b->stream), "restoring a device-local range: waiting for the stream");
  CU_TRY(cudaMemset(l->dev + (addr - l->addr), 0, len), "zeroing %llu device-local bytes", (unsigned long long)len);
  *done = true;
  return NULL;
}

static sp_error_t *cu_flush(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  sp_cu_frozen *l = local_of(b, addr, len);
  if (l) {
    CU_ENTER(c);
    return move_local(c, b, l, addr, len, true);
  }
  sp_cu_frozen *f = frozen_of(b, addr, len, false);
  if (f) return refresh_frozen(c, b, f, addr, len, 0); /* never writes a shared copy */
  return NULL; /* no copy of that range: guest memory is read directly */
}

static void cu_residency(void *vctx, sp_residency_stats *out) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  pthread_mutex_lock(&c->mu);
  *out = c->stats;
  pthread_mutex_unlock(&c->mu);
  out->repacked_bytes = sp_cu_repack_bytes();
}

/* ---- supports (cuda_rules.c, shared with the host's worker proxy) ---- */

static bool cu_supports(void *vctx, const sp_cmd *cmd) { return sp_cuda_supports(cmd); }

/* ---- submit: decode, plan, enqueue (directly or into a graph) ---- */

static uint64_t extent_of(const sp_tensor *t) { return sp_cu_extent(t); }

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen) { return a < b + blen && b < a + alen; }

/* Where a device copy holds bytes [off, off + ext) wholly: a device-local
 * mirror, or (for sources) a frozen range's resident copy; NULL if none. */
static uint8_t *device_copy_of(const sp_cu_binding *b, uint64_t off, uint64_t ext, bool is_src) {
  for (uint32_t i = 0; i < b->n_local; i++) {
    const sp_cu_frozen *l = &b->local[i];
    if (l->dev && off >= l->addr && off + ext <= l->addr + l->len) return l->dev + (off - l->addr);
  }
  for (uint32_t i = 0; i < b->n_frozen && is_src; i++) {
    const sp_cu_frozen *f = &b->frozen[i];
    if (f->dev && off >= f->addr && off + ext <= f->addr + f->len) return f->dev + (off - f->addr);
  }
  return NULL;
}

/* Device pointer of a tensor: a tensor wholly inside a device-local range
 * uses its mirror, a source wholly inside a frozen range its resident copy,
 * anything else guest memory itself (mapped). The validator rejects tensors
 * straddling a device-local boundary. */
static sp_cu_tensor resolve(const sp_cu_binding *b, const sp_tensor *t, bool is_src) {
  sp_cu_tensor r = {};
  if (t->dtype == SP_DTYPE_NONE) return r;
  r.p = b->dbase + t->offset;
  r.dtype = t->dtype;
  memcpy(r.ne, t->ne, sizeof r.ne);
  memcpy(r.nb, t->nb, sizeof r.nb);
  uint64_t ext = extent_of(t);
  for (uint32_t i = 0; i < b->n_staged && is_src; i++)
    if (t->offset >= b->staged[i].offset && t->offset + ext <= (uint64_t)b->staged[i].offset + b->staged[i].len) {
      r.p = b->stage_dev + b->staged[i].at + (t->offset - b->staged[i].offset);
      return r;
    }
  uint8_t *copy = device_copy_of(b, t->offset, ext, is_src);
  if (copy) r.p = copy;
  return r;
}

/* ---- staging: small index tensors read from device memory ---- */

/* Positions and token ids live in plain guest memory: the guest writes them
 * with stores each step. Read there, they cross PCIe once per kernel that
 * uses them, a microsecond or two each and dozens of times per decode step.
 * So an I32 source that no command of the list writes, outside any mirror
 * or resident copy, is copied into device memory once at the start of the
 * list (the guest is inside submit: nothing changes those bytes meanwhile)
 * and the kernels read the copy. */

static bool in_device_copy(const sp_cu_binding *b, uint64_t off, uint64_t ext) {
  for (uint32_t i = 0; i < b->n_local; i++)
    if (b->local[i].dev && overlaps(off, ext, b->local[i].addr, b->local[i].len)) return true;
  for (uint32_t i = 0; i < b->n_frozen; i++)
    if (b->frozen[i].dev && overlaps(off, ext, b->frozen[i].addr, b->frozen[i].len)) return true;
  return false;
}

static bool written_by(const sp_cmd *cmds, uint32_t count, uint64_t off, uint64_t ext) {
  for (uint32_t i = 0; i < count; i++)
    if (cmds[i].op != SP_OP_NOP && overlaps(off, ext, cmds[i].dst.offset, extent_of(&cmds[i].dst))) return true;
  return false;
}

static bool already_staged(const sp_cu_binding *b, uint32_t off, uint64_t ext) {
  for (uint32_t i = 0; i < b->n_staged; i++)
    if (off >= b->staged[i].offset && off + ext <= (uint64_t)b->staged[i].offset + b->staged[i].len) return true;
  return false;
}

/* Picks the list's staged tensors (b->staged). */
static void plan_staging(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  uint32_t used = 0;
  b->n_staged = 0;
  if (!b->ctx->staging) return; /* measurement (SP_CUDA_NO_STAGING): read guest memory directly */
  for (uint32_t i = 0; i < count; i++)
    for (int s = 0; s < SP_MAX_SRC; s++) {
      const sp_tensor *t = &cmds[i].src[s];
      uint64_t ext = t->dtype == SP_DTYPE_I32 ? extent_of(t) : 0;
      if (!ext || ext > SP_CU_STAGE_MAX || t->offset % 4 || ext % 4 || already_staged(b, t->offset, ext)) continue;
      if (b->n_staged == SP_CU_MAX_STAGED || used + ext > SP_CU_STAGE_BYTES) return;
      if (in_device_copy(b, t->offset, ext) || written_by(cmds, count, t->offset, ext)) continue;
      b->staged[b->n_staged++] = {t->offset, (uint32_t)ext, used};
      used += ((uint32_t)ext + 15) / 16 * 16;
    }
}

static cudaError_t enqueue_staging(const sp_cu_binding *b) {
  if (!b->n_staged) return cudaSuccess;
  sp_cu_spans spans = {};
  for (uint32_t i = 0; i < b->n_staged; i++) {
    spans.src[i] = (const uint32_t *)(b->dbase + b->staged[i].offset);
    spans.dst[i] = (uint32_t *)(b->stage_dev + b->staged[i].at);
    spans.words[i] = b->staged[i].len / 4;
  }
  spans.n = b->n_staged;
  return sp_cu_stage(&spans, b->stream);
}

/* Index tensors already checked in this list, and still unwritten. */
typedef struct checked_set {
  struct { uint32_t offset, n, limit; } e[SP_CU_MAX_CHECKED];
  int n;
} checked_set;

static bool checked_has(const checked_set *s, const sp_tensor *idx, uint32_t limit) {
  for (int i = 0; i < s->n; i++)
    if (s->e[i].offset == idx->offset && s->e[i].n == idx->ne[0] && s->e[i].limit <= limit) return true;
  return false;
}

static void checked_forget(checked_set *s, uint64_t dst, uint64_t dst_len) {
  for (int i = 0; i < s->n;)
    if (overlaps(dst, dst_len, s->e[i].offset, (uint64_t)s->e[i].n * 4)) s->e[i] = s->e[--s->n];
    else i++;
}

/* Checks one index tensor (unless already checked in this list). */
static cudaError_t check_once(const sp_cu_binding *b, checked_set *s, const sp_tensor *idx, uint32_t limit,
                              uint32_t index) {
  if (checked_has(s, idx, limit)) return cudaSuccess;
  cudaError_t e = sp_cu_check_indices((const int32_t *)resolve(b, idx, true).p, idx->ne[0], limit, index,
                                      b->status_dev, b->stream);
  if (e == cudaSuccess && s->n < SP_CU_MAX_CHECKED) s->e[s->n++] = {idx->offset, idx->ne[0], limit};
  return e;
}

/* Scratch elements the list's matmuls need for quantized activations. */
static size_t scratch_need(const sp_cmd *cmds, uint32_t count) {
  size_t need = 0;
  for (uint32_t i = 0; i < count; i++) {
    const sp_cmd *c = &cmds[i];
    if (c->op != SP_OP_MATMUL || !sp_cu_matmul_quantizes(c->src[0].dtype, c->src[1].ne[1])) continue;
    size_t n = (size_t)c->src[1].ne[0] * c->src[1].ne[1];
    if (n > need) need = n;
  }
  return need;
}

static sp_error_t *reserve_scratch(sp_cu_binding *b, size_t elems) {
  if (elems <= b->xq_cap) return NULL;
  cudaFree(b->xq), cudaFree(b->xd), cudaFree(b->xs);
  b->xq = NULL, b->xd = b->xs = NULL, b->xq_cap = 0;
  CU_TRY(cudaMalloc(&b->xq, elems), "activation scratch (%zu bytes)", elems);
  CU_TRY(cudaMalloc(&b->xd, elems / SP_CU_QK * sizeof(float) + 16), "activation scales");
  CU_TRY(cudaMalloc(&b->xs, elems / SP_CU_QK * sizeof(float) + 16), "activation sums");
  b->xq_cap = elems;
  b->dirty = true; /* a captured graph points at the old scratch */
  return NULL;
}

/* A command with its tensors resolved, ready for a launcher. */
static sp_cu_cmd decode_cmd(const sp_cu_binding *b, const sp_cmd *cmd, uint32_t index) {
  sp_cu_cmd c = {};
  c.cmd = cmd, c.index = index, c.stream = b->stream, c.status = b->status_dev;
  c.no_flash = !b->ctx->flash;
  c.dst = resolve(b, &cmd->dst, false);
  for (int i = 0; i < SP_MAX_SRC; i++) c.src[i] = resolve(b, &cmd->src[i], true);
  c.xq = b->xq, c.xd = b->xd, c.xs = b->xs;
  c.reduce = b->reduce_dev, c.reduce_bytes = SP_CU_REDUCE_BYTES;
  c.gemm = b->gemm;
  if (cmd->op == SP_OP_MATMUL && b->repacked) c.rq = b->repacked[index].qs, c.rs = b->repacked[index].sc;
  return c;
}

/* What cmd wrote is no longer index-checked nor quantized. */
static void forget_written(checked_set *checked, sp_tensor *xq_of, const sp_cmd *cmd) {
  uint64_t dst_len = extent_of(&cmd->dst);
  checked_forget(checked, cmd->dst.offset, dst_len);
  if (xq_of->dtype && overlaps(cmd->dst.offset, dst_len, xq_of->offset, extent_of(xq_of))) memset(xq_of, 0, sizeof *xq_of);
}

/* Enqueues one command. */
static cudaError_t enqueue_cmd(const sp_cu_binding *b, const sp_cmd *cmd, uint32_t index, checked_set *checked,
                               sp_tensor *xq_of) {
  sp_cu_cmd c = decode_cmd(b, cmd, index);
  cudaError_t e = cudaSuccess;
  switch (cmd->op) {
  case SP_OP_NOP: return cudaSuccess;
  case SP_OP_MATMUL:
    c.xq_ready = !memcmp(xq_of, &cmd->src[1], sizeof *xq_of);
    e = sp_cu_matmul(&c);
    if (sp_cu_matmul_quantizes(cmd->src[0].dtype, cmd->src[1].ne[1])) *xq_of = cmd->src[1];
    break;
  case SP_OP_ADD:
  case SP_OP_MUL:
  case SP_OP_SCALE:
  case SP_OP_SWIGLU:
  case SP_OP_COPY: e = sp_cu_elementwise(&c); break;
  case SP_OP_RMSNORM: e = sp_cu_rmsnorm(&c); break;
  case SP_OP_SOFTMAX: e = sp_cu_softmax(&c); break;
  case SP_OP_ARGMAX: e = sp_cu_argmax(&c); break;
  case SP_OP_ROPE: e = sp_cu_rope(&c); break;
  case SP_OP_GET_ROWS:
    e = check_once(b, checked, &cmd->src[1], cmd->src[0].ne[1], index);
    if (e == cudaSuccess) e = sp_cu_get_rows(&c);
    break;
  case SP_OP_SET_ROWS:
    e = check_once(b, checked, &cmd->src[1], cmd->dst.ne[1], index);
    if (e == cudaSuccess) e = sp_cu_set_rows(&c);
    break;
  case SP_OP_ATTENTION:
    e = check_once(b, checked, &cmd->src[3], cmd->src[1].ne[2], index);
    if (e == cudaSuccess) e = sp_cu_attention(&c);
    break;
  default: return cudaErrorNotSupported;
  }
  if (e != cudaSuccess) return e;
  forget_written(checked, xq_of, cmd);
  return cudaSuccess;
}

/* Enqueues cmds[i, i + f->count) as one fused launch (fuse.h). */
static cudaError_t enqueue_fused(const sp_cu_binding *b, const sp_cmd *cmds, uint32_t i, const sp_cu_fusion *f,
                                 checked_set *checked, sp_tensor *xq_of) {
  sp_cu_cmd c[SP_CU_MAX_FUSED];
  const sp_cu_cmd *cp[SP_CU_MAX_FUSED];
  for (uint32_t k = 0; k < f->count; k++) c[k] = decode_cmd(b, &cmds[i + k], i + k), cp[k] = &c[k];
  sp_cu_qdst q = {};
  if (f->quantize) q.xq = b->xq, q.xd = b->xd, q.xs = b->xs;
  cudaError_t e = cudaSuccess;
  switch (f->kind) {
  case SP_FUSE_MATMUL_GROUP:
    c[0].xq_ready = !memcmp(xq_of, &cmds[i].src[1], sizeof *xq_of);
    e = sp_cu_matmul_group(cp, f->count, f->paired);
    break;
  case SP_FUSE_ADD_RMSNORM: e = sp_cu_rmsnorm_fused(&c[0], &c[1], q); break;
  case SP_FUSE_RMSNORM: e = sp_cu_rmsnorm_fused(NULL, &c[0], q); break;
  case SP_FUSE_SWIGLU: e = sp_cu_swiglu_quant(&c[0], q); break;
  case SP_FUSE_ATTENTION:
    e = check_once(b, checked, &cmds[i].src[3], cmds[i].src[1].ne[2], i);
    if (e == cudaSuccess) e = sp_cu_attention_quant(&c[0], q);
    break;
  case SP_FUSE_ROPE_PAIR: e = sp_cu_rope_pair(&c[0], &c[1]); break;
  case SP_FUSE_ROPE_CACHE:
    e = check_once(b, checked, &cmds[i + 2].src[1], cmds[i + 2].dst.ne[1], i + 2);
    if (e == cudaSuccess) e = check_once(b, checked, &cmds[i + 3].src[1], cmds[i + 3].dst.ne[1], i + 3);
    if (e == cudaSuccess) e = sp_cu_rope_cache(&c[0], &c[1], &c[2], &c[3]);
    break;
  case SP_FUSE_SET_ROWS_PAIR:
    e = check_once(b, checked, &cmds[i].src[1], cmds[i].dst.ne[1], i);
    if (e == cudaSuccess) e = check_once(b, checked, &cmds[i + 1].src[1], cmds[i + 1].dst.ne[1], i + 1);
    if (e == cudaSuccess) e = sp_cu_set_rows_pair(&c[0], &c[1]);
    break;
  default: return cudaErrorNotSupported;
  }
  if (e != cudaSuccess) return e;
  for (uint32_t k = 0; k < f->count; k++) forget_written(checked, xq_of, &cmds[i + k]);
  if (f->kind == SP_FUSE_MATMUL_GROUP) *xq_of = cmds[i].src[1];
  if (f->quantize) *xq_of = cmds[i + f->count].src[1];
  return cudaSuccess;
}

/* Enqueues the whole list: reset the status word, every command (fused
 * where fuse.h allows), then copy the status word back for wait(). */
static sp_error_t *enqueue_list(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  checked_set checked = {};
  sp_tensor xq_of = {};
  CU_TRY(cudaMemsetAsync(b->status_dev, 0, sizeof(sp_cu_status), b->stream), "resetting the status word");
  sp_cu_fault_inject(b->stream);
  plan_staging(b, cmds, count);
  CU_TRY(enqueue_staging(b), "staging index tensors");
  for (uint32_t i = 0; i < count;) {
    sp_cu_fusion f = sp_cu_fuse_plan(cmds, i, count, b->ctx->fusion);
    cudaError_t e = f.kind == SP_FUSE_NONE ? enqueue_cmd(b, &cmds[i], i, &checked, &xq_of)
                                           : enqueue_fused(b, cmds, i, &f, &checked, &xq_of);
    for (uint32_t k = 0; k < f.count && e == cudaSuccess && b->t_ops && i + k < b->t_ops_cap; k++)
      e = cudaEventRecord(b->t_ops[i + k], b->stream);
    CU_TRY(e, "cmd[%u] (%s%s): launch", i, op_name(cmds[i].op), f.count > 1 ? ", fused with the next" : "");
    CU_TRY(sp_cu_fault_sync_each() ? cudaStreamSynchronize(b->stream) : cudaSuccess, "cmd[%u] (%s%s)", i,
           op_name(cmds[i].op), f.count > 1 ? ", fused with the next" : "");
    i += f.count;
  }
  CU_TRY(cudaMemcpyAsync(b->status_host, b->status_dev, sizeof(sp_cu_status), cudaMemcpyDeviceToHost, b->stream),
         "reading the status word");
  return NULL;
}

static sp_error_t *remember_list(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  if (count > b->last_cap) {
    sp_cmd *grown = (sp_cmd *)realloc(b->last, (size_t)count * sizeof *grown);
    if (!grown) return sp_error_new("cuda: out of host memory");
    b->last = grown, b->last_cap = count;
  }
  memcpy(b->last, cmds, (size_t)count * sizeof *cmds);
  b->last_count = count;
  return NULL;
}

/* Captures the list as a graph, instantiates it and launches it. */
static sp_error_t *capture_and_launch(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  if (b->has_exec) cudaGraphExecDestroy(b->exec), b->has_exec = false;
  CU_TRY(cudaStreamBeginCapture(b->stream, cudaStreamCaptureModeThreadLocal), "beginning a graph capture");
  sp_error_t *err = enqueue_list(b, cmds, count);
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture(b->stream, &graph);
  if (err) {
    if (graph) cudaGraphDestroy(graph);
    return err;
  }
  CU_TRY(e, "ending a graph capture");
  e = cudaGraphInstantiate(&b->exec, graph, 0);
  cudaGraphDestroy(graph);
  CU_TRY(e, "instantiating a graph of %u commands", count);
  b->has_exec = true, b->dirty = false;
  CU_TRY(cudaGraphLaunch(b->exec, b->stream), "launching a graph");
  return NULL;
}

/* SP_CUDA_TIMING: an event before the list (outside any capture), and with
 * mode 2 one per command. */
static sp_error_t *timing_start(sp_cu_ctx *c, sp_cu_binding *b, uint32_t count, bool same) {
  if (!b->t_start) {
    CU_TRY(cudaEventCreate(&b->t_start), "timing events");
    CU_TRY(cudaEventCreate(&b->t_end), "timing events");
  }
  if (c->timing == 2 && count > b->t_ops_cap) {
    cudaEvent_t *grown = (cudaEvent_t *)realloc(b->t_ops, count * sizeof *grown);
    if (!grown) return sp_error_new("cuda: out of host memory");
    b->t_ops = grown;
    for (; b->t_ops_cap < count; b->t_ops_cap++) CU_TRY(cudaEventCreate(&b->t_ops[b->t_ops_cap]), "timing events");
  }
  b->t_same = same;
  CU_TRY(cudaEventRecord(b->t_start, b->stream), "timing events");
  return NULL;
}

/* SP_CUDA_TIMING: adds the finished list's GPU time (and its commands'). */
static void timing_add(sp_cu_binding *b) {
  float ms = 0;
  b->t_pending = false;
  if (cudaEventElapsedTime(&ms, b->t_start, b->t_end) != cudaSuccess) return;
  b->t_ms[b->t_same] += ms, b->t_n[b->t_same]++;
  if (!b->t_same || !b->t_ops) return;
  cudaEvent_t prev = b->t_start;
  for (uint32_t i = 0; i < b->last_count && i < b->t_ops_cap; i++) {
    if (cudaEventElapsedTime(&ms, prev, b->t_ops[i]) != cudaSuccess) return;
    uint32_t op = b->last[i].op < SP_OP_COUNT ? b->last[i].op : 0;
    b->op_ms[op] += ms, b->op_n[op]++;
    prev = b->t_ops[i];
  }
}

static void timing_report(sp_cu_binding *b) {
  fprintf(stderr, "samepage: cuda timing: %llu repeated lists, GPU %.3f ms each; %llu other lists, GPU %.3f ms each\n",
          (unsigned long long)b->t_n[1], b->t_n[1] ? b->t_ms[1] / b->t_n[1] : 0.0, (unsigned long long)b->t_n[0],
          b->t_n[0] ? b->t_ms[0] / b->t_n[0] : 0.0);
  for (uint32_t op = 0; op < SP_OP_COUNT && b->t_n[1]; op++)
    if (b->op_n[op])
      fprintf(stderr, "samepage: cuda timing:   %-10s %4llu per list, %7.2f us each, %.3f ms per list\n", op_name(op),
              (unsigned long long)(b->op_n[op] / b->t_n[1]), 1e3 * b->op_ms[op] / b->op_n[op], b->op_ms[op] / b->t_n[1]);
}

static sp_error_t *launch_list(sp_cu_ctx *c, sp_cu_binding *b, const sp_cmd *cmds, uint32_t count, bool same);

static sp_error_t *cu_submit(void *vctx, void *binding, const sp_cmd *cmds, uint32_t count) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  CU_ENTER(c);
  bool same = b->last && count == b->last_count && !memcmp(cmds, b->last, (size_t)count * sizeof *cmds);
  sp_error_t *err = c->timing ? timing_start(c, b, count, same) : NULL;
  if (!err) err = launch_list(c, b, cmds, count, same);
  if (!err && c->timing) {
    CU_TRY(cudaEventRecord(b->t_end, b->stream), "timing events");
    b->t_pending = true;
  }
  return err;
}

/* The repacked layout (repack.h) of each quantized weight of the list that
 * lies in a resident copy, made on first use (by a prompt's list too, so
 * decode steps find it ready); before any capture, since it may allocate
 * and wait. */
static sp_error_t *prepare_repacks(sp_cu_ctx *c, sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  if (count > b->repacked_cap) {
    sp_cu_repacked *grown = (sp_cu_repacked *)realloc(b->repacked, count * sizeof *grown);
    if (!grown) return sp_error_new("cuda: out of host memory");
    b->repacked = grown, b->repacked_cap = count;
  }
  for (uint32_t i = 0; i < count; i++) {
    const sp_cmd *cmd = &cmds[i];
    const sp_tensor *w = &cmd->src[0];
    b->repacked[i] = sp_cu_repacked{NULL, NULL};
    /* made for a prompt's products too (M > 8, which read the original
     * layout), so that the first decode step does not pay for it */
    if (cmd->op != SP_OP_MATMUL || !sp_cu_matmul_quantizes(w->dtype, 1)) continue;
    sp_cu_frozen *f = frozen_of(b, w->offset, extent_of(w), false);
    if (f && f->copy && f->dev)
      b->repacked[i] = sp_cu_repack_get(f->copy, &c->mu, w->offset - f->addr, w->dtype, w->ne[0], w->ne[1], w->nb[0],
                                        b->stream);
  }
  return NULL;
}

/* Kernels cannot read file-backed guest pages (never registered): every
 * tensor touching a file-mapped range must be a source wholly inside a
 * resident copy, or lie wholly inside a device-local mirror. Checked before
 * anything is enqueued, so such a list is refused, not run into a fault. */
static sp_error_t *check_file_ranges(const sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  if (!b->n_holes) return NULL;
  for (uint32_t i = 0; i < count; i++) {
    if (cmds[i].op == SP_OP_NOP) continue;
    for (int k = -1; k < SP_MAX_SRC; k++) {
      const sp_tensor *t = k < 0 ? &cmds[i].dst : &cmds[i].src[k];
      if (t->dtype == SP_DTYPE_NONE) continue;
      uint64_t ext = extent_of(t);
      if (!sp_pin_overlaps(b->holes, b->n_holes, t->offset, ext)) continue;
      if (device_copy_of(b, t->offset, ext, k >= 0)) continue;
      char which[16] = "dst";
      if (k >= 0) snprintf(which, sizeof which, "src[%d]", k);
      return sp_error_with_status(SP_E_UNSUPPORTED,
                                  "cmd[%u] (%s): %s at 0x%llx lies in a file-mapped range with no device copy: the "
                                  "GPU cannot read file-backed pages in place (freeze the range, with residency "
                                  "weights and device memory to hold it, or read the file instead of mapping it)",
                                  i, op_name(cmds[i].op), which, (unsigned long long)t->offset);
    }
  }
  return NULL;
}

/* Replays, captures or enqueues the list. */
static sp_error_t *launch_list(sp_cu_ctx *c, sp_cu_binding *b, const sp_cmd *cmds, uint32_t count, bool same) {
  if (same && b->has_exec && !b->dirty) { /* its scratch was reserved when it was captured */
    CU_TRY(cudaGraphLaunch(b->exec, b->stream), "replaying a graph");
    return NULL;
  }
  sp_error_t *err = check_file_ranges(b, cmds, count);
  if (err) return err;
  if ((err = reserve_scratch(b, scratch_need(cmds, count)))) return err;
  bool gemm = sp_cu_gemm_wanted(cmds, count);
  if (gemm && sp_cu_gemm_reserve(&c->gemm, cmds, count) != cudaSuccess)
    cudaGetLastError(); /* no room for cuBLAS's scratch: the tiles run (gemm.h) */
  b->gemm = c->gemm;
  if ((err = prepare_repacks(c, b, cmds, count))) return err;
  if (same && c->graphs && !sp_cu_fault_sync_each() && !gemm) return capture_and_launch(b, cmds, count);
  if (b->has_exec) cudaGraphExecDestroy(b->exec), b->has_exec = false;
  if ((err = remember_list(b, cmds, count))) return err;
  return enqueue_list(b, cmds, count);
}

static sp_error_t *cu_wait(void *vctx, void *binding) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  CU_ENTER(c);
  cudaError_t e = cudaStreamSynchronize(b->stream);
  if (e != cudaSuccess && sp_cu_fault_is_sticky(e)) return note_fault(e, "running this actor's list");
  if (e != cudaSuccess)
    return sp_error_new("cuda: running the list failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
  if (b->t_pending) timing_add(b);
  const sp_cu_status *st = b->status_host;
  if (!st->code) return NULL;
  uint32_t i = (uint32_t)st->cmd;
  const sp_cmd *cmd = b->last && i < b->last_count ? &b->last[i] : NULL;
  uint32_t limit = !cmd ? 0
                   : cmd->op == SP_OP_GET_ROWS ? cmd->src[0].ne[1]
                   : cmd->op == SP_OP_SET_ROWS ? cmd->dst.ne[1]
                                               : cmd->src[1].ne[2];
  /* SP_E_BOUNDS, as the CPU backend: the guest's submit returns it */
  return sp_error_with_status(SP_E_BOUNDS, "cmd[%u]: %s: index [%d] = %d is outside 0..%u", i,
                              cmd ? op_name(cmd->op) : "?", st->at, st->value, limit ? limit - 1 : 0);
}

static void cu_release(void *vctx, void *binding) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  cudaSetDevice(c->device);
  if (b->stream) cudaStreamSynchronize(b->stream);
  if (b->has_exec) cudaGraphExecDestroy(b->exec);
  if (b->t_start) {
    timing_report(b);
    cudaEventDestroy(b->t_start), cudaEventDestroy(b->t_end);
    for (uint32_t i = 0; i < b->t_ops_cap; i++) cudaEventDestroy(b->t_ops[i]);
    free(b->t_ops);
  }
  for (uint32_t i = 0; i < b->n_frozen; i++) sp_resident_release(&c->cache, b->frozen[i].copy); /* frees the last */
  for (uint32_t i = 0; i < b->n_local; i++) {
    cudaFree(b->local[i].dev);
    add_local_stats(c, -(int64_t)b->local[i].len, 0, 0);
  }
  for (size_t i = 0; i < b->pinned.n; i++) cudaHostUnregister(b->view.base + b->pinned.spans[i].start);
  cudaFree(b->xq), cudaFree(b->xd), cudaFree(b->xs), cudaFree(b->status_dev), cudaFree(b->stage_dev),
      cudaFree(b->reduce_dev);
  if (b->status_host) cudaFreeHost(b->status_host);
  if (b->stream) cudaStreamDestroy(b->stream);
  cudaGetLastError();
  sp_pin_set_free(&b->pinned);
  free(b->holes);
  free(b->last);
  free(b->repacked);
  free(b);
}

static bool cu_device_memory(void *vctx, uint64_t *used, uint64_t *total) { return sp_cu_device_memory(used, total); }

static void cu_destroy(void *vctx) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_gemm_prewarm_join();
  sp_cu_gemm_free(c->gemm);
  sp_resident_cache_deinit(&c->cache);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* The three layers (backend.h), filled slot by slot: C++17 has no
 * designated initializers. */
static struct sp_backend_i make_iface(void) {
  struct sp_backend_i i = {};
  i.version = SP_BACKEND_CORE_VERSION;
  i.name = "cuda";
  i.caps = cu_caps;
  i.adopt = cu_adopt;
  i.grow = cu_grow;
  i.supports = cu_supports;
  i.submit = cu_submit;
  i.wait = cu_wait;
  i.device_base = cu_device_base;
  i.release = cu_release;
  i.destroy = cu_destroy;
  return i;
}

static struct sp_backend_memory_i make_memory(void) {
  struct sp_backend_memory_i m = {};
  m.version = SP_BACKEND_MEMORY_VERSION;
  m.freeze = cu_freeze;
  m.flush = cu_flush;
  m.device_local = cu_device_local;
  m.sync = cu_sync;
  m.local_zero = cu_local_zero;
  m.file_ranges = cu_file_ranges;
  m.residency = cu_residency;
  m.device_memory = cu_device_memory;
  return m;
}

static struct sp_backend_sharing_i make_sharing(void) {
  struct sp_backend_sharing_i sh = {};
  sh.version = SP_BACKEND_SHARING_VERSION;
  sh.freeze_shared = cu_freeze_shared;
  sh.derived_exports = cu_derived_exports;
  sh.derived_import = cu_derived_import;
  return sh;
}

static const struct sp_backend_memory_i cu_memory = make_memory();
static const struct sp_backend_sharing_i cu_sharing = make_sharing();

extern "C" sp_error_t *sp_backend_cuda_new(const sp_backend_options *opts, sp_backend **out) {
  if (!opts || opts->version != SP_BACKEND_OPS_VERSION || !out)
    return sp_error_new("cuda backend: interface version mismatch");
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0)
    return sp_error_new("cuda backend: no CUDA device (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "count 0");
  first_opts = opts;
  pthread_once(&process_once, set_process_knobs);
  int device = (int)opts->knobs.cuda_device;
  if (device < 0 || device >= n) return sp_error_new("cuda backend: device %d does not exist (%d found)", device, n);
  CU_TRY(cudaSetDevice(device), "selecting device %d", device);
  int integrated = 0, mapped = 0;
  CU_TRY(cudaDeviceGetAttribute(&integrated, cudaDevAttrIntegrated, device), "device attributes");
  CU_TRY(cudaDeviceGetAttribute(&mapped, cudaDevAttrCanMapHostMemory, device), "device attributes");
  if (!mapped) return sp_error_new("cuda backend: device %d cannot map host memory", device);
  sp_backend *be = (sp_backend *)calloc(1, sizeof *be);
  sp_cu_ctx *c = (sp_cu_ctx *)calloc(1, sizeof *c);
  if (!be || !c) {
    free(be), free(c);
    return sp_error_new("cuda backend: out of memory");
  }
  c->device = device;
  c->residency = opts->residency;
  c->graphs = opts->graphs;
  c->integrated = integrated != 0;
  c->timing = (int)opts->knobs.cuda_timing;
  if (c->timing == 2) c->graphs = false; /* an event after each command: no capture */
  c->local = c->residency && !c->integrated && !opts->knobs.cuda_no_device_local;
  c->fusion = !opts->knobs.cuda_no_fusion;
  c->staging = !opts->knobs.cuda_no_staging;
  c->flash = !opts->knobs.cuda_no_flash;
  pthread_mutex_init(&c->mu, NULL);
  sp_resident_cache_init(&c->cache, sp_cu_resident_device(), &c->mu, &c->stats);
  be->iface = make_iface();
  be->memory = &cu_memory;
  be->sharing = &cu_sharing;
  be->ctx = c;
  *out = be;
  sp_cu_gemm_prewarm_start(device); /* gemm.h: while the guest loads its model */
  return NULL;
}
