/*
 * cuda_batch.cu: several actors' lists run as one (backend.h, layer 4).
 *
 * Each actor's list keeps its own stream, scratch and status word, and
 * every command runs there as it would alone, except its decode products
 * whose weights are the same device bytes as other actors' (the resident
 * cache keeps one copy of a frozen range per identity: the pointers are
 * equal, so the weights are). Those meet in one launch on the batch's
 * stream:
 *
 *   each actor, own stream:  ... rmsnorm -> quantize its input (own xq) --+
 *   batch stream:            gather the inputs -> one product of K rows ->+ scatter each row to its actor's dst
 *   each actor, own stream:  (waits for the scatter) -> rope -> ...
 *
 * The product of K rows is the same kernel with the same arithmetic per
 * row as an actor's product alone (matmul.cu: the row is blockIdx.y,
 * nothing depends on the row count), so every actor's bytes are its lone
 * run's (batch invariance); each actor's inputs come from and its rows go
 * back to its own memory only (isolation). A row whose actor has failed a
 * check (its status word) is not written back, as its product alone would
 * not have run.
 *
 * The whole batch is captured as one graph when the same actors have
 * repeated the same lists for a few batches, and replayed while they go on.
 */
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_binding.cuh"
extern "C" {
#include "core/hash64.h"
}

#define SP_CU_BATCH_GRAPHS 4 /* graphs kept, for as many recurring sets of actors */

typedef struct batch_graph {
  uint32_t n;
  uint64_t ids[SP_BATCH_MAX], gens[SP_BATCH_MAX], serials[SP_BATCH_MAX];
  uint64_t scratch_gen, used;
  cudaGraphExec_t exec;
  bool live;
} batch_graph;

struct sp_cu_batch {
  cudaStream_t stream;
  cudaEvent_t fork, join;
  sp_cu_status *status; /* the batched products' guard: never set */
  uint8_t *scratch;     /* gathered inputs and products' rows */
  size_t scratch_bytes;
  uint64_t scratch_gen, clock;
  batch_graph graphs[SP_CU_BATCH_GRAPHS];
  uint64_t last_set;    /* the set of lanes (and their lists) of the last batch run directly */
  uint32_t set_repeats; /* how many batches in a row ran that set */
};

/* One actor's list in the batch. */
typedef struct lane {
  sp_batch_item *item;
  sp_cu_binding *b;
  sp_cu_fusion *steps; /* the list's launches, in order (fuse.h) */
  uint32_t n_steps;
  sp_cu_walk walk;
  bool live;  /* prepared: runs in this batch */
  bool alone; /* wants cuBLAS (a prompt's products): runs by itself after */
  bool joins; /* its steps are the leader's: products may be shared */
} lane;

/* ---- gather and scatter ---- */

typedef struct gather_args {
  const int8_t *xq[SP_BATCH_MAX];
  const float *xd[SP_BATCH_MAX], *xs[SP_BATCH_MAX];
} gather_args;

/* Row a of the batch's quantized input from actor a's own scratch. */
__global__ void gather_quant_kernel(gather_args g, uint32_t K, int8_t *xq, float *xd, float *xs) {
  uint32_t a = blockIdx.y, nb = K / SP_CU_QK;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < K / 4; i += gridDim.x * blockDim.x)
    ((int32_t *)(xq + (size_t)a * K))[i] = ((const int32_t *)g.xq[a])[i];
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < nb; i += gridDim.x * blockDim.x)
    xd[(size_t)a * nb + i] = g.xd[a][i], xs[(size_t)a * nb + i] = g.xs[a][i];
}

typedef struct gather_float_args {
  const float *x[SP_BATCH_MAX];
} gather_float_args;

__global__ void gather_float_kernel(gather_float_args g, uint32_t K, float *x, uint32_t stride) {
  uint32_t a = blockIdx.y;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < K; i += gridDim.x * blockDim.x)
    x[(size_t)a * stride + i] = g.x[a][i];
}

typedef struct scatter_args {
  float *dst[SP_CU_MAX_GROUP][SP_BATCH_MAX];
  const sp_cu_status *status[SP_BATCH_MAX];
  const float *rows[SP_CU_MAX_GROUP];
  uint32_t N[SP_CU_MAX_GROUP], stride[SP_CU_MAX_GROUP];
} scatter_args;

/* Row a of member m back to actor a's dst: grid.y = actor, grid.z = member. */
__global__ void scatter_kernel(scatter_args s) {
  uint32_t a = blockIdx.y, m = blockIdx.z;
  if (s.status[a]->code) return; /* its list stopped at a failed check */
  const float *src = s.rows[m] + (size_t)a * s.stride[m];
  float *dst = s.dst[m][a];
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < s.N[m]; i += gridDim.x * blockDim.x) dst[i] = src[i];
}

/* ---- the batch's own state ---- */

static sp_error_t *make_batch_state(sp_cu_batch *t) {
  CU_TRY(cudaStreamCreateWithFlags(&t->stream, cudaStreamNonBlocking), "the batch's stream");
  CU_TRY(cudaEventCreateWithFlags(&t->fork, cudaEventDisableTiming), "the batch's events");
  CU_TRY(cudaEventCreateWithFlags(&t->join, cudaEventDisableTiming), "the batch's events");
  CU_TRY(cudaMalloc(&t->status, sizeof(sp_cu_status)), "the batch's status word");
  CU_TRY(cudaMemset(t->status, 0, sizeof(sp_cu_status)), "the batch's status word");
  return NULL;
}

/* The batch's stream, events and status word, made once (whole or not at all). */
static sp_error_t *batch_state(sp_cu_ctx *c, sp_cu_batch **out) {
  if (!c->batch) {
    sp_cu_batch *t = (sp_cu_batch *)calloc(1, sizeof *t);
    if (!t) return sp_error_new("cuda: out of host memory");
    c->batch = t;
    sp_error_t *err = make_batch_state(t);
    if (err) {
      sp_cu_batch_free(c);
      return err;
    }
  }
  *out = c->batch;
  return NULL;
}

static void drop_graph(batch_graph *g) {
  if (g->live) cudaGraphExecDestroy(g->exec);
  g->live = false;
}

void sp_cu_batch_free(sp_cu_ctx *c) {
  sp_cu_batch *t = c->batch;
  if (!t) return;
  for (int i = 0; i < SP_CU_BATCH_GRAPHS; i++) drop_graph(&t->graphs[i]);
  if (t->stream) cudaStreamSynchronize(t->stream), cudaStreamDestroy(t->stream);
  if (t->fork) cudaEventDestroy(t->fork);
  if (t->join) cudaEventDestroy(t->join);
  cudaFree(t->status), cudaFree(t->scratch);
  free(t);
  c->batch = NULL;
}

static size_t align256(size_t n) { return (n + 255) / 256 * 256; }

/* Scratch for k rows of the widest shared product: its inputs (f32 or
 * quantized, each with scales) and every member's rows. */
static size_t scratch_for(const lane *lead, uint32_t k) {
  size_t need = 0;
  const sp_cmd *cmds = lead->item->cmds;
  for (uint32_t s = 0, i = 0; s < lead->n_steps; i += lead->steps[s++].count) {
    const sp_cmd *c = &cmds[i];
    if (c->op != SP_OP_MATMUL) continue;
    size_t K = c->src[0].ne[0];
    size_t x = align256(k * align256(K * 4)) + 2 * align256(k * (K / SP_CU_QK + 1) * 4), rows = 0;
    for (uint32_t m = 0; m < lead->steps[s].count; m++) rows += align256(k * align256((size_t)c[m].src[0].ne[1] * 4));
    need = x + rows > need ? x + rows : need;
  }
  return need;
}

static sp_error_t *reserve_batch_scratch(sp_cu_batch *t, size_t need) {
  if (need <= t->scratch_bytes) return NULL;
  cudaFree(t->scratch);
  t->scratch = NULL, t->scratch_bytes = 0, t->scratch_gen++; /* graphs pointing at the old one are stale */
  CU_TRY(cudaMalloc(&t->scratch, need), "the batch's scratch (%zu bytes)", need);
  t->scratch_bytes = need;
  return NULL;
}

/* ---- graphs of a recurring batch ---- */

static bool graph_matches(const batch_graph *g, const sp_cu_batch *t, lane *const *lanes, uint32_t n) {
  if (!g->live || g->n != n || g->scratch_gen != t->scratch_gen) return false;
  for (uint32_t a = 0; a < n; a++) {
    const sp_cu_binding *b = lanes[a]->b;
    if (g->ids[a] != b->id || g->gens[a] != b->gen || g->serials[a] != b->list_serial) return false;
  }
  return true;
}

static batch_graph *find_graph(sp_cu_batch *t, lane *const *lanes, uint32_t n) {
  for (int i = 0; i < SP_CU_BATCH_GRAPHS; i++)
    if (graph_matches(&t->graphs[i], t, lanes, n)) return &t->graphs[i];
  return NULL;
}

/* Keeps exec for these lanes, in the least recently used slot. */
static void keep_graph(sp_cu_batch *t, lane *const *lanes, uint32_t n, cudaGraphExec_t exec) {
  batch_graph *g = &t->graphs[0];
  for (int i = 1; i < SP_CU_BATCH_GRAPHS; i++)
    if (!t->graphs[i].live || (g->live && t->graphs[i].used < g->used)) g = &t->graphs[i];
  drop_graph(g);
  g->n = n, g->scratch_gen = t->scratch_gen, g->exec = exec, g->live = true, g->used = ++t->clock;
  for (uint32_t a = 0; a < n; a++)
    g->ids[a] = lanes[a]->b->id, g->gens[a] = lanes[a]->b->gen, g->serials[a] = lanes[a]->b->list_serial;
}

/* ---- the plan: each list's launches, and which lists go in step ---- */

static bool same_steps(const lane *a, const lane *b) {
  if (a->n_steps != b->n_steps) return false;
  for (uint32_t s = 0; s < a->n_steps; s++) {
    const sp_cu_fusion *x = &a->steps[s], *y = &b->steps[s];
    if (x->kind != y->kind || x->count != y->count || x->paired != y->paired || x->quantize != y->quantize) return false;
  }
  return true;
}

static sp_error_t *plan_steps(const sp_cu_ctx *c, lane *l) {
  const sp_cmd *cmds = l->item->cmds;
  uint32_t count = l->item->count;
  l->steps = (sp_cu_fusion *)malloc((count ? count : 1) * sizeof *l->steps);
  if (!l->steps) return sp_error_new("cuda: out of host memory");
  l->n_steps = 0;
  for (uint32_t i = 0; i < count;) {
    l->steps[l->n_steps] = sp_cu_fuse_plan(cmds, i, count, c->fusion);
    i += l->steps[l->n_steps++].count;
  }
  return NULL;
}

/* A decode product step (one product, or a group over one input), every
 * member one activation row written apart from its input. */
static bool shareable_step(const sp_cmd *cmds, uint32_t i, const sp_cu_fusion *f) {
  if (cmds[i].op != SP_OP_MATMUL || (f->kind != SP_FUSE_NONE && f->kind != SP_FUSE_MATMUL_GROUP)) return false;
  for (uint32_t m = 0; m < f->count; m++) {
    const sp_cmd *c = &cmds[i + m];
    uint64_t d = c->dst.offset, dl = sp_cu_extent(&c->dst), x = c->src[1].offset, xl = sp_cu_extent(&c->src[1]);
    if (c->src[1].ne[1] != 1 || c->src[1].ne[2] != 1 || c->src[1].ne[3] != 1 || !(d + dl <= x || x + xl <= d))
      return false;
  }
  return true;
}

/* The same weights: every member's device bytes (and repacked layout). */
static bool same_weights(const sp_cu_cmd *x, const sp_cu_cmd *y, uint32_t members) {
  for (uint32_t m = 0; m < members; m++)
    if (x[m].src[0].p != y[m].src[0].p || x[m].src[0].dtype != y[m].src[0].dtype ||
        memcmp(x[m].src[0].ne, y[m].src[0].ne, sizeof x[m].src[0].ne) || x[m].src[0].nb[0] != y[m].src[0].nb[0] ||
        x[m].rq != y[m].rq || x[m].rs != y[m].rs)
      return false;
  return true;
}

static bool is_float(uint32_t dt) { return dt == SP_DTYPE_F32 || dt == SP_DTYPE_F16 || dt == SP_DTYPE_BF16; }

/* ---- enqueueing ---- */

#define TRY_E(call)                   \
  do {                                \
    cudaError_t e_ = (call);          \
    if (e_ != cudaSuccess) return e_; \
  } while (0)

/* The batch's commands: the leader's members with the gathered inputs
 * and the scratch rows, k activation rows. */
static void batch_cmds(const sp_cu_batch *t, const sp_cu_cmd *lead, uint32_t members, uint32_t k, sp_cu_cmd *out) {
  uint32_t K = lead[0].src[0].ne[0];
  size_t xrow = align256((size_t)K * 4);
  uint8_t *p = t->scratch, *xf = p, *xq = p;
  float *xd = (float *)(p + align256(k * xrow)), *xs = (float *)((uint8_t *)xd + align256(k * (K / SP_CU_QK + 1) * 4));
  uint8_t *rows = (uint8_t *)xs + align256(k * (K / SP_CU_QK + 1) * 4);
  for (uint32_t m = 0; m < members; m++) {
    sp_cu_cmd *c = &out[m];
    *c = lead[m];
    c->stream = t->stream, c->status = t->status;
    c->xq = (int8_t *)xq, c->xd = xd, c->xs = xs, c->xq_ready = true;
    c->src[1].p = xf, c->src[1].nb[0] = xrow, c->src[1].ne[1] = k;
    for (int d = 1; d < 3; d++) c->src[1].nb[d] = xrow * k;
    size_t drow = align256((size_t)lead[m].src[0].ne[1] * 4);
    c->dst.p = rows, c->dst.nb[0] = drow, c->dst.ne[1] = k;
    for (int d = 1; d < 3; d++) c->dst.nb[d] = drow * k;
    rows += align256(k * drow);
  }
}

/* Joins the actors' streams into the batch stream, or the reverse. */
static cudaError_t join_lanes(sp_cu_batch *t, lane *const *g, uint32_t k) {
  for (uint32_t a = 0; a < k; a++) {
    TRY_E(cudaEventRecord(t->join, g[a]->b->stream));
    TRY_E(cudaStreamWaitEvent(t->stream, t->join, 0));
  }
  return cudaSuccess;
}

static cudaError_t fork_lanes(sp_cu_batch *t, lane *const *g, uint32_t k) {
  TRY_E(cudaEventRecord(t->fork, t->stream));
  for (uint32_t a = 0; a < k; a++) TRY_E(cudaStreamWaitEvent(g[a]->b->stream, t->fork, 0));
  return cudaSuccess;
}

static cudaError_t gather(sp_cu_batch *t, lane *const *g, uint32_t k, const sp_cu_cmd *const *own, const sp_cu_cmd *bc) {
  uint32_t K = bc[0].src[0].ne[0];
  dim3 grid((K + 1023) / 1024, k);
  if (is_float(bc[0].src[0].dtype)) {
    gather_float_args args = {};
    for (uint32_t a = 0; a < k; a++) args.x[a] = (const float *)own[a][0].src[1].p;
    gather_float_kernel<<<grid, 256, 0, t->stream>>>(args, K, (float *)bc[0].src[1].p, (uint32_t)(bc[0].src[1].nb[0] / 4));
  } else {
    gather_args args = {};
    for (uint32_t a = 0; a < k; a++) args.xq[a] = g[a]->b->xq, args.xd[a] = g[a]->b->xd, args.xs[a] = g[a]->b->xs;
    gather_quant_kernel<<<grid, 256, 0, t->stream>>>(args, K, bc[0].xq, bc[0].xd, bc[0].xs);
  }
  return cudaGetLastError();
}

static cudaError_t scatter(sp_cu_batch *t, lane *const *g, uint32_t k, const sp_cu_cmd *const *own, const sp_cu_cmd *bc,
                           uint32_t members) {
  scatter_args args = {};
  uint32_t widest = 0;
  for (uint32_t m = 0; m < members; m++) {
    args.rows[m] = (const float *)bc[m].dst.p, args.N[m] = bc[m].src[0].ne[1];
    args.stride[m] = (uint32_t)(bc[m].dst.nb[0] / 4);
    widest = args.N[m] > widest ? args.N[m] : widest;
    for (uint32_t a = 0; a < k; a++) args.dst[m][a] = (float *)own[a][m].dst.p;
  }
  for (uint32_t a = 0; a < k; a++) args.status[a] = g[a]->b->status_dev;
  dim3 grid((widest + 1023) / 1024, k, members);
  scatter_kernel<<<grid, 256, 0, t->stream>>>(args);
  return cudaGetLastError();
}

/* One product step shared by the k lanes of g (their weights equal):
 * each quantizes its own input, then gather, the product of k rows,
 * scatter. own[a]: lane a's members, decoded. */
static cudaError_t shared_step(sp_cu_batch *t, lane *const *g, uint32_t k, uint32_t i, const sp_cu_fusion *f,
                               sp_cu_cmd *const *own) {
  sp_cu_cmd bc[SP_CU_MAX_GROUP];
  const sp_cu_cmd *bcp[SP_CU_MAX_GROUP];
  for (uint32_t a = 0; a < k; a++) {
    own[a][0].xq_ready = !memcmp(&g[a]->walk.xq_of, &g[a]->item->cmds[i].src[1], sizeof(sp_tensor));
    TRY_E(sp_cu_matmul_quantize_input(&own[a][0]));
  }
  TRY_E(join_lanes(t, g, k));
  batch_cmds(t, own[0], f->count, k, bc);
  for (uint32_t m = 0; m < f->count; m++) bcp[m] = &bc[m];
  TRY_E(gather(t, g, k, own, bc));
  TRY_E(sp_cu_matvec_rows(bcp, f->count, f->paired));
  TRY_E(scatter(t, g, k, own, bc, f->count));
  TRY_E(fork_lanes(t, g, k));
  for (uint32_t a = 0; a < k; a++) sp_cu_walk_after_matmul(&g[a]->walk, g[a]->item->cmds, i, f->count);
  return cudaSuccess;
}

static cudaError_t own_step(lane *l, uint32_t i, const sp_cu_fusion *f) {
  return sp_cu_list_step(l->b, l->item->cmds, i, f, &l->walk);
}

/* Step s (at command i) of the lanes that go in step: lanes whose product
 * reads the same weights share one launch; the rest run their own. */
static cudaError_t lockstep_product(sp_cu_batch *t, lane *const *in, uint32_t n, uint32_t i, const sp_cu_fusion *f) {
  static thread_local sp_cu_cmd own[SP_BATCH_MAX][SP_CU_MAX_GROUP];
  sp_cu_cmd *ownp[SP_BATCH_MAX];
  lane *g[SP_BATCH_MAX];
  bool done[SP_BATCH_MAX] = {false};
  for (uint32_t a = 0; a < n; a++)
    for (uint32_t m = 0; m < f->count; m++) own[a][m] = sp_cu_decode_cmd(in[a]->b, &in[a]->item->cmds[i + m], i + m);
  for (uint32_t first = 0; first < n; first++) {
    if (done[first]) continue;
    uint32_t k = 0;
    for (uint32_t a = first; a < n; a++)
      if (!done[a] && same_weights(own[first], own[a], f->count)) g[k] = in[a], ownp[k++] = own[a], done[a] = true;
    if (k > 1 && is_float(own[first][0].src[0].dtype)) {
      /* the float kernel's 16-byte path (summation order) must be each
       * lane's own choice: those whose input is not aligned run alone */
      sp_cu_cmd bc[SP_CU_MAX_GROUP];
      batch_cmds(t, own[first], f->count, k, bc);
      bool vec = sp_cu_matvec_vec(&bc[0]);
      uint32_t kept = 0;
      for (uint32_t a = 0; a < k; a++) {
        if (sp_cu_matvec_vec(&ownp[a][0]) == vec) g[kept] = g[a], ownp[kept++] = ownp[a];
        else TRY_E(own_step(g[a], i, f));
      }
      k = kept;
    }
    if (k == 1) TRY_E(own_step(g[0], i, f));
    else if (k > 1) TRY_E(shared_step(t, g, k, i, f, ownp));
  }
  return cudaSuccess;
}

/* Every live lane's list onto its stream, joined into the batch stream at
 * the end; the lanes in `in` in step with the leader's plan. */
static sp_error_t *enqueue_batch(sp_cu_batch *t, lane *const *live, uint32_t n_live, lane *const *in, uint32_t n_in) {
  CU_TRY(fork_lanes(t, live, n_live), "starting a batch");
  for (uint32_t a = 0; a < n_live; a++) {
    sp_error_t *err = sp_cu_list_begin(live[a]->b, live[a]->item->cmds, live[a]->item->count);
    if (err) return err;
  }
  for (uint32_t a = 0; a < n_live; a++) { /* lists not in step run whole on their own streams */
    lane *l = live[a];
    for (uint32_t s = 0, i = 0; !l->joins && s < l->n_steps; i += l->steps[s++].count)
      CU_TRY(own_step(l, i, &l->steps[s]), "cmd[%u] (%s): launch", i, sp_cu_op_name(l->item->cmds[i].op));
  }
  const lane *lead = n_in ? in[0] : NULL;
  for (uint32_t s = 0, i = 0; lead && s < lead->n_steps; i += lead->steps[s++].count) {
    const sp_cu_fusion *f = &lead->steps[s];
    if (n_in > 1 && shareable_step(lead->item->cmds, i, f)) {
      bool all = true;
      for (uint32_t a = 1; a < n_in && all; a++) all = shareable_step(in[a]->item->cmds, i, f);
      if (all) {
        CU_TRY(lockstep_product(t, in, n_in, i, f), "cmd[%u] (matmul, several actors): launch", i);
        continue;
      }
    }
    for (uint32_t a = 0; a < n_in; a++) /* its own plan's step s: the leader's kind, its own command */
      CU_TRY(own_step(in[a], i, &in[a]->steps[s]), "cmd[%u] (%s): launch", i, sp_cu_op_name(in[a]->item->cmds[i].op));
  }
  for (uint32_t a = 0; a < n_live; a++) {
    sp_error_t *err = sp_cu_list_end(live[a]->b);
    if (err) return err;
  }
  CU_TRY(join_lanes(t, live, n_live), "ending a batch");
  return NULL;
}

/* Captures the batch as a graph and launches it; NULL exec when capture
 * is not wanted (a list that does not repeat its last one). */
static sp_error_t *capture_batch(sp_cu_batch *t, lane *const *live, uint32_t n_live, lane *const *in, uint32_t n_in,
                                 cudaGraphExec_t *exec) {
  CU_TRY(cudaStreamBeginCapture(t->stream, cudaStreamCaptureModeThreadLocal), "beginning a batch's capture");
  sp_error_t *err = enqueue_batch(t, live, n_live, in, n_in);
  cudaGraph_t graph = NULL;
  cudaError_t e = cudaStreamEndCapture(t->stream, &graph);
  if (err) {
    if (graph) cudaGraphDestroy(graph);
    return err;
  }
  CU_TRY(e, "ending a batch's capture");
  e = cudaGraphInstantiate(exec, graph, 0);
  cudaGraphDestroy(graph);
  CU_TRY(e, "instantiating a batch's graph");
  return NULL;
}

/* ---- the entry point ---- */

/* err's message and status again, for one more lane. */
static sp_error_t *copy_error(const sp_error_t *err) {
  return sp_error_with_status(sp_error_status(err), "%s", sp_error_message(err));
}

/* Each item by itself, as submit and wait would run it. */
static void run_alone(sp_cu_ctx *c, sp_batch_item *it) {
  it->err = cu_submit(c, it->binding, it->cmds, it->count, it->same);
  if (!it->err) it->err = cu_wait(c, it->binding);
}

static int by_id(const void *x, const void *y) {
  uint64_t a = (*(lane *const *)x)->b->id, b = (*(lane *const *)y)->b->id;
  return a < b ? -1 : a > b;
}

/* Prepares each lane as launch_list does (cuda_submit.cu); a lane whose
 * preparation fails carries its error and stays out. */
static void prepare_lanes(sp_cu_ctx *c, lane *const *lanes, uint32_t n) {
  for (uint32_t a = 0; a < n; a++) {
    lane *l = lanes[a];
    sp_cu_binding *b = l->b;
    sp_cu_note_list(b, l->item->same);
    bool gemm = false;
    sp_error_t *err = sp_cu_list_prepare(c, b, l->item->cmds, l->item->count, &gemm);
    if (!err) err = sp_cu_remember_list(b, l->item->cmds, l->item->count);
    if (!err) err = plan_steps(c, l);
    l->item->err = err;
    l->live = !err && !gemm;
    l->alone = !err && gemm;
  }
}

/* The lanes whose plans are the leader's (the first live one) go in step. */
static uint32_t pick_in_step(lane *const *live, uint32_t n, lane **in) {
  uint32_t k = 0;
  for (uint32_t a = 0; a < n; a++) {
    live[a]->joins = k == 0 || same_steps(in[0], live[a]);
    if (live[a]->joins) in[k++] = live[a];
  }
  return k;
}

/* The lanes and their lists, as one number (their ids, graph generations
 * and list serials, hashed). */
static uint64_t set_of(lane *const *lanes, uint32_t n) {
  sp_hash64 h;
  sp_hash64_init(&h, n);
  for (uint32_t a = 0; a < n; a++) {
    const sp_cu_binding *b = lanes[a]->b;
    uint64_t v[3] = {b->id, b->gen, b->list_serial};
    sp_hash64_update(&h, v, sizeof v);
  }
  return sp_hash64_final(&h);
}

/* Capture only a set that recurs: capturing and instantiating a graph of
 * K lists costs about two direct runs, and in a server the set changes
 * whenever a conversation starts or ends. The second batch in a row of
 * the same set runs directly, the third is captured, later ones replay. */
static bool worth_capturing(sp_cu_batch *t, lane *const *live, uint32_t n_live) {
  uint64_t set = set_of(live, n_live);
  t->set_repeats = set == t->last_set ? t->set_repeats + 1 : 1;
  t->last_set = set;
  return t->set_repeats >= 3;
}

/* Runs the prepared batch: replays its graph, captures one, or enqueues
 * directly when some list is new. Errors of the whole batch go to every
 * lane; each lane's own failed check is read from its status word. */
static sp_error_t *run_prepared(sp_cu_ctx *c, sp_cu_batch *t, lane **live, uint32_t n_live, bool all_same) {
  lane *in[SP_BATCH_MAX];
  uint32_t n_in = pick_in_step(live, n_live, in);
  sp_error_t *err = reserve_batch_scratch(t, n_in ? scratch_for(in[0], n_in) : 0);
  if (err) return err;
  if (!all_same || !c->graphs || !worth_capturing(t, live, n_live)) {
    err = enqueue_batch(t, live, n_live, in, n_in);
  } else {
    cudaGraphExec_t exec;
    if (!(err = capture_batch(t, live, n_live, in, n_in, &exec))) {
      keep_graph(t, live, n_live, exec);
      CU_TRY(cudaGraphLaunch(exec, t->stream), "launching a batch's graph");
    }
  }
  return err;
}

void cu_submit_batch(void *vctx, sp_batch_item *items, uint32_t n) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  if (c->timing || sp_cu_fault_sync_each() || n < 2) { /* measurement and fault tests see lists one by one */
    for (uint32_t a = 0; a < n; a++) run_alone(c, &items[a]);
    return;
  }
  sp_error_t *lost = sp_cu_device_lost();
  if (!lost && cudaSetDevice(c->device) != cudaSuccess) lost = sp_error_new("cuda: selecting device %d", c->device);
  if (lost) {
    for (uint32_t a = 0; a < n; a++) items[a].err = a ? copy_error(lost) : lost;
    return;
  }
  pthread_mutex_lock(&c->batch_mu);
  lane lanes[SP_BATCH_MAX] = {}, *order[SP_BATCH_MAX], *live[SP_BATCH_MAX];
  for (uint32_t a = 0; a < n; a++) lanes[a].item = &items[a], lanes[a].b = (sp_cu_binding *)items[a].binding, order[a] = &lanes[a];
  qsort(order, n, sizeof *order, by_id); /* a recurring set of actors finds its graph whatever their order */
  sp_cu_batch *t = NULL;
  sp_error_t *err = batch_state(c, &t);
  bool all_same = true;
  for (uint32_t a = 0; a < n; a++) all_same = all_same && items[a].same;
  batch_graph *g = err || !all_same || !c->graphs ? NULL : find_graph(t, order, n);
  uint32_t n_live = 0;
  if (g) { /* the same actors repeating the same lists: nothing to prepare */
    g->used = ++t->clock;
    for (uint32_t a = 0; a < n; a++) live[n_live++] = order[a], order[a]->live = true;
    if (cudaGraphLaunch(g->exec, t->stream) != cudaSuccess) err = sp_error_new("cuda: replaying a batch's graph");
  } else if (!err) {
    prepare_lanes(c, order, n);
    for (uint32_t a = 0; a < n; a++)
      if (order[a]->live) live[n_live++] = order[a];
    err = n_live ? run_prepared(c, t, live, n_live, all_same) : NULL;
  }
  cudaError_t e = t ? cudaStreamSynchronize(t->stream) : cudaSuccess;
  if (!err && e != cudaSuccess)
    err = sp_cu_fault_is_sticky(e) ? sp_cu_note_fault(e, "running a batch of lists")
                                   : sp_error_new("cuda: running a batch of lists failed: %s", cudaGetErrorString(e));
  for (uint32_t a = 0; a < n_live; a++)
    live[a]->item->err = err ? copy_error(err) : sp_cu_status_error(live[a]->b);
  for (uint32_t a = 0; a < n && err && !n_live; a++)
    if (!items[a].err) items[a].err = copy_error(err);
  sp_error_free(err);
  for (uint32_t a = 0; a < n; a++) free(lanes[a].steps);
  pthread_mutex_unlock(&c->batch_mu);
  for (uint32_t a = 0; a < n; a++)
    if (lanes[a].alone) run_alone(c, lanes[a].item);
}
