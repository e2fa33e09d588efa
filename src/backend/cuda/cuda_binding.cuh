/*
 * cuda_binding.cuh (private): what the parts of the CUDA backend share: its
 * context, a binding's state, and the error macros every entry point uses.
 *   cuda_backend.cu    the backend and its bindings: a lost device, the
 *                      process's knobs, adopt/grow/release, the tables;
 *   cuda_residency.cu  frozen ranges' resident copies and device-local mirrors;
 *   cuda_submit.cu     a list: resolve, stage, enqueue or capture, replay, wait;
 *   cuda_timing.cu     SP_CUDA_TIMING's events and report (measurement).
 * The cu_* functions are the interface slots (backend.h); the tables that
 * point at them are in cuda_backend.cu.
 */
#ifndef SP_CU_BINDING_CUH
#define SP_CU_BINDING_CUH

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_common.cuh"
extern "C" {
#include "backend/backend.h"
#include "core/clock.h"
#include "core/knobs.h"
#include "core/memory_budget.h"
#include "core/dtype.h"
#include "core/error.h"
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
  struct sp_cu_batch *batch; /* several actors' lists as one (cuda_batch.cu), made on first use */
  pthread_mutex_t batch_mu;  /* one batch at a time: it owns ctx->batch's scratch and graphs */
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
  uint8_t *attn_dev;     /* split decode attention's partials (sp_cu_cmd.attn) */
  size_t attn_bytes;
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
  /* The graph of the list before last, kept while another list runs
   * (cuda_submit.cu, park_graph): a turn's prompt between two runs of
   * decode steps. Valid while gen is parked_gen. */
  cudaGraphExec_t parked;
  bool has_parked;
  sp_cmd *parked_list;
  uint32_t parked_count, parked_cap;
  uint64_t parked_gen;
  /* For graphs of several bindings' lists (cuda_batch.cu): gen counts the
   * times a captured graph went stale (sp_cu_mark_stale), list_serial the
   * lists that differed from the one before; id is unique in the process. */
  uint64_t id, gen, list_serial;
  /* SP_CUDA_TIMING: events around each list (and after each command, 2);
   * [1] sums repeated lists (decode steps), [0] the others */
  cudaEvent_t t_start, t_end, *t_ops;
  uint32_t t_ops_cap;
  bool t_pending, t_same;
  double t_ms[2], op_ms[SP_OP_COUNT];
  uint64_t t_n[2], op_n[SP_OP_COUNT];
} sp_cu_binding;

/* A captured graph of this binding's lists no longer matches its memory
 * (scratch, copies or mirrors moved): recapture before the next replay. */
static inline void sp_cu_mark_stale(sp_cu_binding *b) { b->dirty = true, b->gen++; }

/* ---- a lost device (fault.h), cuda_backend.cu ---- */

/* Records a sticky error (the first one names the cause) and returns the
 * error for the caller that met it. */
sp_error_t *sp_cu_note_fault(cudaError_t e, const char *what);
/* The error every call answers once the device is lost, else NULL. */
sp_error_t *sp_cu_device_lost(void);

#define CU_TRY(call, ...)                                                              \
  do {                                                                                 \
    cudaError_t e_ = (call);                                                           \
    if (e_ != cudaSuccess) {                                                           \
      char what_[256];                                                                 \
      snprintf(what_, sizeof what_, __VA_ARGS__);                                      \
      if (sp_cu_fault_is_sticky(e_)) return sp_cu_note_fault(e_, what_);                     \
      return sp_error_new("cuda: %s: %s (%s)", what_, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
    }                                                                                  \
  } while (0)

/* Every entry point that touches the device starts here. */
#define CU_ENTER(c)                                                                    \
  do {                                                                                 \
    sp_error_t *lost_ = sp_cu_device_lost();                                                 \
    if (lost_) return lost_;                                                           \
    CU_TRY(cudaSetDevice((c)->device), "selecting device %d", (c)->device);           \
  } while (0)

/* The op's name, for messages. */
const char *sp_cu_op_name(uint32_t op);

/* Copies between guest bytes [addr, addr + len) and device memory dev, one
 * registration at a time (cuda_backend.cu). */
cudaError_t sp_cu_copy_guest(const sp_cu_binding *b, uint8_t *dev, uint64_t addr, uint64_t len, bool to_device);

/* ---- residency (cuda_residency.cu) ---- */

/* The frozen range holding [addr, addr + len) (exactly, when exact). */
sp_cu_frozen *sp_cu_frozen_of(sp_cu_binding *b, uint64_t addr, uint64_t len, bool exact);
/* Counts device-local bytes held (held may be negative: freed) and moved. */
void sp_cu_add_local_stats(sp_cu_ctx *c, int64_t held, uint64_t moved, double ms);
sp_error_t *cu_freeze(void *vctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity);
sp_error_t *cu_flush(void *vctx, void *binding, uint64_t addr, uint64_t len);
sp_error_t *cu_device_local(void *vctx, void *binding, uint64_t addr, uint64_t len);
sp_error_t *cu_sync(void *vctx, void *binding, uint64_t addr, uint64_t len);
sp_error_t *cu_local_zero(void *vctx, void *binding, uint64_t addr, uint64_t len, bool *done);
void cu_residency(void *vctx, sp_residency_stats *out);
sp_error_t *cu_freeze_shared(void *vctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity, int import_fd,
                             int *export_fd);
uint32_t cu_derived_exports(void *vctx, void *binding, sp_derived_desc *out, int *fds, uint32_t max);
sp_error_t *cu_derived_import(void *vctx, void *binding, const sp_derived_desc *d, int fd);
sp_error_t *cu_file_ranges(void *vctx, void *binding, const sp_file_range *files, uint32_t n, bool done);

/* ---- lists (cuda_submit.cu) ---- */

bool cu_supports(void *vctx, const sp_cmd *cmd);
sp_error_t *cu_submit(void *vctx, void *binding, const sp_cmd *cmds, uint32_t count, bool same);
sp_error_t *cu_wait(void *vctx, void *binding);

/* The parts of a list's run, for several lists run as one (cuda_batch.cu). */

/* Index tensors already checked in this list, and still unwritten. */
typedef struct sp_cu_checked {
  struct { uint32_t offset, n, limit; } e[SP_CU_MAX_CHECKED];
  int n;
} sp_cu_checked;

/* What enqueueing a list tracks from one command to the next. */
typedef struct sp_cu_walk {
  sp_cu_checked checked;
  sp_tensor xq_of; /* the activations the binding's xq scratch holds, quantized */
} sp_cu_walk;

/* A list that is not the binding's last one (!same): a new serial, and the
 * binding's own graph (of the old list) dropped. */
void sp_cu_note_list(sp_cu_binding *b, bool same);
/* Everything before the first launch: file ranges, scratch, repacks.
 * *gemm: the list wants cuBLAS (prompt products). */
sp_error_t *sp_cu_list_prepare(sp_cu_ctx *c, sp_cu_binding *b, const sp_cmd *cmds, uint32_t count, bool *gemm);
/* Status word reset, staging of index tensors. */
sp_error_t *sp_cu_list_begin(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count);
/* One step of the plan (fuse.h): cmds[i] alone or fused with the next. */
cudaError_t sp_cu_list_step(const sp_cu_binding *b, const sp_cmd *cmds, uint32_t i, const sp_cu_fusion *f,
                            sp_cu_walk *w);
/* What a matmul step wrote, as list_step records it, for a step run elsewhere. */
void sp_cu_walk_after_matmul(sp_cu_walk *w, const sp_cmd *cmds, uint32_t i, uint32_t count);
/* The status word copied back for the host. */
sp_error_t *sp_cu_list_end(sp_cu_binding *b);
/* cmds[index] with its tensors resolved for binding b. */
sp_cu_cmd sp_cu_decode_cmd(const sp_cu_binding *b, const sp_cmd *cmd, uint32_t index);
/* Keeps the list for error messages (and the next replay). */
sp_error_t *sp_cu_remember_list(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count);
/* The finished list's error from its status word, NULL when it all ran. */
sp_error_t *sp_cu_status_error(const sp_cu_binding *b);

/* ---- several lists as one (cuda_batch.cu) ---- */

void cu_submit_batch(void *vctx, sp_batch_item *items, uint32_t n);
/* Frees the batch state (graphs, scratch) at destroy. */
void sp_cu_batch_free(sp_cu_ctx *c);

/* ---- SP_CUDA_TIMING (cuda_timing.cu) ---- */

/* An event before the list (outside any capture), and with mode 2 one per
 * command. */
sp_error_t *sp_cu_timing_start(sp_cu_ctx *c, sp_cu_binding *b, uint32_t count, bool same);
/* Adds the finished list's GPU time (and its commands'). */
void sp_cu_timing_add(sp_cu_binding *b);
/* Prints the binding's sums (at release). */
void sp_cu_timing_report(sp_cu_binding *b);

#endif
