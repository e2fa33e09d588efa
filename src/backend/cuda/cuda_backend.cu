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
 * Graphs: a list the runtime says is the same as the binding's previous one
 * (backend.h, submit's `same`: a decode step, whose positions and token ids
 * the kernels read from guest memory) is captured once as a CUDA graph and
 * replayed after that.
 *
 * This file holds the backend and its bindings; cuda_binding.cuh names the
 * other parts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_binding.cuh"

/* ---- a lost device (fault.h): process-wide, as CUDA makes it ---- */

static pthread_mutex_t lost_mu = PTHREAD_MUTEX_INITIALIZER;
static int lost;            /* set once, never cleared */
static char lost_why[384];  /* the first fault, as its actor was told */

/* Records a sticky error (the first one names the cause) and returns the
 * error for the caller that met it. */
sp_error_t *sp_cu_note_fault(cudaError_t e, const char *what) {
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
sp_error_t *sp_cu_device_lost(void) {
  if (!__atomic_load_n(&lost, __ATOMIC_ACQUIRE)) return NULL;
  pthread_mutex_lock(&lost_mu);
  sp_error_t *err = sp_error_with_kind(SP_ERROR_DEVICE_LOST,
                                       "cuda: the GPU is lost to this process after a fault in another list (%s); "
                                       "restart the process to use it again (snapshots restore there)", lost_why);
  pthread_mutex_unlock(&lost_mu);
  return err;
}


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

const char *sp_cu_op_name(uint32_t op) {
  static const char *names[SP_OP_COUNT] = {"nop", "matmul", "add", "mul", "scale", "get_rows", "rmsnorm",
                                           "rope", "attention", "set_rows", "swiglu", "softmax", "copy", "argmax",
                                           "geglu", "softcap", "topk"};
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
  static uint64_t next_id;
  b->ctx = c;
  b->view = *view;
  b->id = __atomic_add_fetch(&next_id, 1, __ATOMIC_RELAXED);
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
sp_error_t *cu_file_ranges(void *vctx, void *binding, const sp_file_range *files, uint32_t n, bool done) {
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
  sp_cu_mark_stale(b); /* a captured graph was checked against the old layout */
  return err;
}

static void *cu_device_base(void *vctx, void *binding) { return ((sp_cu_binding *)binding)->dbase; }

/* Copies between guest bytes [addr, addr + len) and device memory dev, one
 * registration at a time: a copy through pinned memory may not span two
 * cudaHostRegister ranges (cudaErrorInvalidValue), and memory.grow and
 * file mappings make several. */
cudaError_t sp_cu_copy_guest(const sp_cu_binding *b, uint8_t *dev, uint64_t addr, uint64_t len, bool to_device) {
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

static void cu_release(void *vctx, void *binding) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  cudaSetDevice(c->device);
  if (b->stream) cudaStreamSynchronize(b->stream);
  if (b->has_exec) cudaGraphExecDestroy(b->exec);
  if (b->has_parked) cudaGraphExecDestroy(b->parked);
  free(b->parked_list);
  if (b->t_start) {
    sp_cu_timing_report(b);
    cudaEventDestroy(b->t_start), cudaEventDestroy(b->t_end);
    for (uint32_t i = 0; i < b->t_ops_cap; i++) cudaEventDestroy(b->t_ops[i]);
    free(b->t_ops);
  }
  for (uint32_t i = 0; i < b->n_frozen; i++) sp_resident_release(&c->cache, b->frozen[i].copy); /* frees the last */
  for (uint32_t i = 0; i < b->n_local; i++) {
    cudaFree(b->local[i].dev);
    sp_cu_add_local_stats(c, -(int64_t)b->local[i].len, 0, 0);
  }
  for (size_t i = 0; i < b->pinned.n; i++) cudaHostUnregister(b->view.base + b->pinned.spans[i].start);
  cudaFree(b->xq), cudaFree(b->xd), cudaFree(b->xs), cudaFree(b->status_dev), cudaFree(b->stage_dev),
      cudaFree(b->reduce_dev), cudaFree(b->attn_dev);
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
  sp_cu_batch_free(c);
  pthread_mutex_destroy(&c->batch_mu);
  sp_resident_cache_deinit(&c->cache);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* The layers (backend.h), filled slot by slot: C++17 has no
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

static struct sp_backend_batching_i make_batching(void) {
  struct sp_backend_batching_i bt = {};
  bt.version = SP_BACKEND_BATCHING_VERSION;
  bt.submit_batch = cu_submit_batch;
  return bt;
}

static const struct sp_backend_memory_i cu_memory = make_memory();
static const struct sp_backend_batching_i cu_batching = make_batching();
static const struct sp_backend_sharing_i cu_sharing = make_sharing();

extern "C" sp_error_t *sp_backend_cuda_new(const sp_backend_options *opts, sp_backend **out) {
  if (!opts || opts->version != SP_BACKEND_OPS_VERSION || !out)
    return sp_error_new("cuda backend: interface version mismatch");
  /* Kernels load lazily (the driver's default): CUDA_MODULE_LOADING=EAGER
   * was tried and measured on an H100 (2026-12-07): it loads every module
   * of the process at the first cuBLAS call, cuBLAS's own included, and a
   * process's first 512-token prefill took 1,601 ms against 34.9 ms lazily
   * (7.8 ms warm either way). */
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
  pthread_mutex_init(&c->batch_mu, NULL);
  sp_resident_cache_init(&c->cache, sp_cu_resident_device(), &c->mu, &c->stats);
  be->iface = make_iface();
  be->memory = &cu_memory;
  be->sharing = &cu_sharing;
  /* measured slower than each actor's own graph on its own stream on an
   * H100 (BATCHING.md): offered only when asked for */
  be->batching = opts->knobs.cuda_batch ? &cu_batching : NULL;
  be->ctx = c;
  *out = be;
  sp_cu_gemm_prewarm_start(device); /* gemm.h: while the guest loads its model */
  return NULL;
}
