/*
 * cuda_submit.cu: running a validated list: each tensor resolved to its
 * device address (a mirror, a resident copy or guest memory), small index
 * tensors staged, commands enqueued one by one or fused (fuse.h), the list
 * captured as a graph on its first repeat and replayed after that, and the
 * status word read back by wait.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_binding.cuh"

/* ---- supports (cuda_rules.c, shared with the host's worker proxy) ---- */

bool cu_supports(void *vctx, const sp_cmd *cmd) { return sp_cuda_supports(cmd); }

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

static bool checked_has(const sp_cu_checked *s, const sp_tensor *idx, uint32_t limit) {
  for (int i = 0; i < s->n; i++)
    if (s->e[i].offset == idx->offset && s->e[i].n == idx->ne[0] && s->e[i].limit <= limit) return true;
  return false;
}

static void checked_forget(sp_cu_checked *s, uint64_t dst, uint64_t dst_len) {
  for (int i = 0; i < s->n;)
    if (overlaps(dst, dst_len, s->e[i].offset, (uint64_t)s->e[i].n * 4)) s->e[i] = s->e[--s->n];
    else i++;
}

/* Checks one index tensor (unless already checked in this list). */
static cudaError_t check_once(const sp_cu_binding *b, sp_cu_checked *s, const sp_tensor *idx, uint32_t limit,
                              uint32_t index) {
  if (checked_has(s, idx, limit)) return cudaSuccess;
  cudaError_t e = sp_cu_check_indices((const int32_t *)resolve(b, idx, true).p, idx->ne[0], limit, index,
                                      b->status_dev, b->stream);
  if (e == cudaSuccess && s->n < SP_CU_MAX_CHECKED) s->e[s->n++] = {idx->offset, idx->ne[0], limit};
  return e;
}

/* Scratch elements the list's matmuls need for quantized activations. */
static size_t scratch_need(const sp_cmd *cmds, uint32_t count, uint32_t *largest) {
  size_t need = 0;
  *largest = 0;
  for (uint32_t i = 0; i < count; i++) {
    const sp_cmd *c = &cmds[i];
    if (c->op != SP_OP_MATMUL || !sp_cu_matmul_quantizes(c->src[0].dtype, c->src[1].ne[1])) continue;
    size_t n = (size_t)c->src[1].ne[0] * c->src[1].ne[1];
    if (n > need) need = n, *largest = i;
  }
  return need;
}

/* Device bytes of the scratch for `elems` quantized activations: the
 * int8 values, a scale and a sum per block of 32. */
static uint64_t scratch_bytes(size_t elems) { return elems + 2 * ((uint64_t)elems / SP_CU_QK * sizeof(float) + 16); }

/* Scratch within the actor's share (memory_budget.h), as on the CPU: a
 * guest's shapes cannot make the device hold more for it than its limit
 * allows, whatever it is beside. */
static sp_error_t *check_scratch_budget(const sp_cu_binding *b, size_t elems, uint32_t index) {
  uint64_t budget = b->view.host_budget ? b->view.host_budget : SP_BUDGET_SCRATCH_MAX;
  if (scratch_bytes(elems) <= budget) return NULL;
  char msg[256];
  sp_budget_scratch_message("matmul", scratch_bytes(elems), budget, msg, sizeof msg);
  return sp_error_with_status(SP_E_LIMIT, "cmd[%u]: %s", index, msg);
}

static sp_error_t *reserve_scratch(sp_cu_binding *b, size_t elems, uint32_t index) {
  if (elems <= b->xq_cap) return NULL;
  sp_error_t *err = check_scratch_budget(b, elems, index);
  if (err) return err;
  cudaFree(b->xq), cudaFree(b->xd), cudaFree(b->xs);
  b->xq = NULL, b->xd = b->xs = NULL, b->xq_cap = 0;
  CU_TRY(cudaMalloc(&b->xq, elems), "activation scratch (%zu bytes)", elems);
  CU_TRY(cudaMalloc(&b->xd, elems / SP_CU_QK * sizeof(float) + 16), "activation scales");
  CU_TRY(cudaMalloc(&b->xs, elems / SP_CU_QK * sizeof(float) + 16), "activation sums");
  b->xq_cap = elems;
  sp_cu_mark_stale(b); /* a captured graph points at the old scratch */
  return NULL;
}

/* The split decode attention's scratch for the list's largest need, within
 * the actor's share like the matmul scratch. Not an error when it cannot be
 * had: those commands then take the one-block kernels. */
static void reserve_attention_scratch(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  size_t need = 0;
  for (uint32_t i = 0; i < count; i++) {
    size_t n = sp_cu_attention_scratch_bytes(&cmds[i], !b->ctx->flash);
    need = n > need ? n : need;
  }
  uint64_t budget = b->view.host_budget ? b->view.host_budget : SP_BUDGET_SCRATCH_MAX;
  if (need <= b->attn_bytes || need > budget) return;
  cudaStreamSynchronize(b->stream); /* kernels in flight may still use the old one */
  cudaFree(b->attn_dev);
  b->attn_dev = NULL, b->attn_bytes = 0;
  sp_cu_mark_stale(b); /* a captured graph points at the old scratch */
  if (cudaMalloc(&b->attn_dev, need) != cudaSuccess || cudaMemsetAsync(b->attn_dev, 0, need, b->stream) != cudaSuccess) {
    cudaFree(b->attn_dev), b->attn_dev = NULL;
    cudaGetLastError(); /* no room: the one-block kernels run */
    return;
  }
  b->attn_bytes = need;
}

/* A command with its tensors resolved, ready for a launcher. */
sp_cu_cmd sp_cu_decode_cmd(const sp_cu_binding *b, const sp_cmd *cmd, uint32_t index) {
  sp_cu_cmd c = {};
  c.cmd = cmd, c.index = index, c.stream = b->stream, c.status = b->status_dev;
  c.no_flash = !b->ctx->flash;
  c.dst = resolve(b, &cmd->dst, false);
  for (int i = 0; i < SP_MAX_SRC; i++) c.src[i] = resolve(b, &cmd->src[i], true);
  c.xq = b->xq, c.xd = b->xd, c.xs = b->xs;
  c.reduce = b->reduce_dev, c.reduce_bytes = SP_CU_REDUCE_BYTES;
  c.attn = b->attn_dev, c.attn_bytes = b->attn_bytes;
  c.gemm = b->gemm;
  if (cmd->op == SP_OP_MATMUL && b->repacked) c.rq = b->repacked[index].qs, c.rs = b->repacked[index].sc;
  return c;
}

/* What cmd wrote is no longer index-checked nor quantized. */
static void forget_written(sp_cu_checked *checked, sp_tensor *xq_of, const sp_cmd *cmd) {
  uint64_t dst_len = extent_of(&cmd->dst);
  checked_forget(checked, cmd->dst.offset, dst_len);
  if (xq_of->dtype && overlaps(cmd->dst.offset, dst_len, xq_of->offset, extent_of(xq_of))) memset(xq_of, 0, sizeof *xq_of);
}

/* Enqueues one command. */
static cudaError_t enqueue_cmd(const sp_cu_binding *b, const sp_cmd *cmd, uint32_t index, sp_cu_walk *w) {
  sp_cu_checked *checked = &w->checked;
  sp_tensor *xq_of = &w->xq_of;
  sp_cu_cmd c = sp_cu_decode_cmd(b, cmd, index);
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
  case SP_OP_GEGLU:
  case SP_OP_SOFTCAP:
  case SP_OP_COPY: e = sp_cu_elementwise(&c); break;
  case SP_OP_RMSNORM: e = sp_cu_rmsnorm(&c); break;
  case SP_OP_SOFTMAX: e = sp_cu_softmax(&c); break;
  case SP_OP_ARGMAX: e = sp_cu_argmax(&c); break;
  case SP_OP_TOPK: e = sp_cu_topk(&c); break;
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
                                 sp_cu_walk *w) {
  sp_cu_checked *checked = &w->checked;
  sp_tensor *xq_of = &w->xq_of;
  sp_cu_cmd c[SP_CU_MAX_FUSED];
  const sp_cu_cmd *cp[SP_CU_MAX_FUSED];
  for (uint32_t k = 0; k < f->count; k++) c[k] = sp_cu_decode_cmd(b, &cmds[i + k], i + k), cp[k] = &c[k];
  sp_cu_qdst q = {};
  if (f->quantize) q.xq = b->xq, q.xd = b->xd, q.xs = b->xs;
  cudaError_t e = cudaSuccess;
  switch (f->kind) {
  case SP_FUSE_MATMUL_GROUP:
    c[0].xq_ready = !memcmp(xq_of, &cmds[i].src[1], sizeof *xq_of);
    e = sp_cu_matmul_group(cp, f->count, f->paired);
    break;
  case SP_FUSE_ADD_RMSNORM: e = sp_cu_rmsnorm_fused(NULL, &c[0], &c[1], q); break;
  case SP_FUSE_NORM_ADD_RMSNORM: e = sp_cu_rmsnorm_fused(&c[0], &c[1], &c[2], q); break;
  case SP_FUSE_RMSNORM_PAIR: e = sp_cu_rmsnorm_pair(&c[0], &c[1]); break;
  case SP_FUSE_BIAS_ROWS: e = sp_cu_bias_rows(cp, f->count); break;
  case SP_FUSE_RMSNORM: e = sp_cu_rmsnorm_fused(NULL, NULL, &c[0], q); break;
  case SP_FUSE_GATE: e = sp_cu_gate_quant(&c[0], q); break;
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

cudaError_t sp_cu_list_step(const sp_cu_binding *b, const sp_cmd *cmds, uint32_t i, const sp_cu_fusion *f,
                            sp_cu_walk *w) {
  return f->kind == SP_FUSE_NONE ? enqueue_cmd(b, &cmds[i], i, w) : enqueue_fused(b, cmds, i, f, w);
}

/* The same order as enqueue_cmd (one product) and enqueue_fused (a group). */
void sp_cu_walk_after_matmul(sp_cu_walk *w, const sp_cmd *cmds, uint32_t i, uint32_t count) {
  bool quantizes = sp_cu_matmul_quantizes(cmds[i].src[0].dtype, cmds[i].src[1].ne[1]);
  if (count == 1 && quantizes) w->xq_of = cmds[i].src[1];
  for (uint32_t k = 0; k < count; k++) forget_written(&w->checked, &w->xq_of, &cmds[i + k]);
  if (count > 1) w->xq_of = cmds[i].src[1];
}

sp_error_t *sp_cu_list_begin(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  CU_TRY(cudaMemsetAsync(b->status_dev, 0, sizeof(sp_cu_status), b->stream), "resetting the status word");
  sp_cu_fault_inject(b->stream);
  plan_staging(b, cmds, count);
  CU_TRY(enqueue_staging(b), "staging index tensors");
  return NULL;
}

sp_error_t *sp_cu_list_end(sp_cu_binding *b) {
  CU_TRY(cudaMemcpyAsync(b->status_host, b->status_dev, sizeof(sp_cu_status), cudaMemcpyDeviceToHost, b->stream),
         "reading the status word");
  return NULL;
}

/* Enqueues the whole list: reset the status word, every command (fused
 * where fuse.h allows), then copy the status word back for wait(). */
static sp_error_t *enqueue_list(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  sp_cu_walk w = {};
  sp_error_t *err = sp_cu_list_begin(b, cmds, count);
  if (err) return err;
  for (uint32_t i = 0; i < count;) {
    sp_cu_fusion f = sp_cu_fuse_plan(cmds, i, count, b->ctx->fusion);
    cudaError_t e = sp_cu_list_step(b, cmds, i, &f, &w);
    for (uint32_t k = 0; k < f.count && e == cudaSuccess && b->t_ops && i + k < b->t_ops_cap; k++)
      e = cudaEventRecord(b->t_ops[i + k], b->stream);
    CU_TRY(e, "cmd[%u] (%s%s): launch", i, sp_cu_op_name(cmds[i].op), f.count > 1 ? ", fused with the next" : "");
    CU_TRY(sp_cu_fault_sync_each() ? cudaStreamSynchronize(b->stream) : cudaSuccess, "cmd[%u] (%s%s)", i,
           sp_cu_op_name(cmds[i].op), f.count > 1 ? ", fused with the next" : "");
    i += f.count;
  }
  return sp_cu_list_end(b);
}

sp_error_t *sp_cu_remember_list(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
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

static sp_error_t *launch_list(sp_cu_ctx *c, sp_cu_binding *b, const sp_cmd *cmds, uint32_t count, bool same);

/* same (backend.h): the runtime's answer to "the list of the last
 * successful submit", which a captured graph replays. */
sp_error_t *cu_submit(void *vctx, void *binding, const sp_cmd *cmds, uint32_t count, bool same) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  CU_ENTER(c);
  same = same && b->last && count == b->last_count; /* a binding that has not seen a list yet */
  sp_error_t *err = c->timing ? sp_cu_timing_start(c, b, count, same) : NULL;
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
    sp_cu_frozen *f = sp_cu_frozen_of(b, w->offset, extent_of(w), false);
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
                                  i, sp_cu_op_name(cmds[i].op), which, (unsigned long long)t->offset);
    }
  }
  return NULL;
}

sp_error_t *sp_cu_list_prepare(sp_cu_ctx *c, sp_cu_binding *b, const sp_cmd *cmds, uint32_t count, bool *gemm) {
  sp_error_t *err = check_file_ranges(b, cmds, count);
  if (err) return err;
  uint32_t largest;
  size_t need = scratch_need(cmds, count, &largest);
  if ((err = reserve_scratch(b, need, largest))) return err;
  reserve_attention_scratch(b, cmds, count);
  *gemm = sp_cu_gemm_wanted(cmds, count);
  if (*gemm && sp_cu_gemm_reserve(&c->gemm, cmds, count) != cudaSuccess)
    cudaGetLastError(); /* no room for cuBLAS's scratch: the tiles run (gemm.h) */
  b->gemm = c->gemm;
  return prepare_repacks(c, b, cmds, count);
}

/* ---- the parked graph ----
 * A conversation alternates a prompt's list with runs of one decode list.
 * Capturing the decode list again after every prompt cost each turn tens
 * of ms on an H100 (`samepage serve`'s inter-token p99), so when another
 * list comes, the binding's graph is parked with a copy of its list, and a
 * later list equal to it byte for byte replays it, while nothing has
 * marked the binding stale since (its scratch, copies and mirrors are where
 * the graph points). A list equal byte for byte is the same commands, on
 * the same guest addresses: what the runtime's `same` promises. */
static void park_graph(sp_cu_binding *b) {
  if (!b->has_exec || b->dirty || !b->last) return;
  if (b->last_count > b->parked_cap) {
    sp_cmd *grown = (sp_cmd *)realloc(b->parked_list, (size_t)b->last_count * sizeof *grown);
    if (!grown) return; /* then it is destroyed, as before */
    b->parked_list = grown, b->parked_cap = b->last_count;
  }
  memcpy(b->parked_list, b->last, (size_t)b->last_count * sizeof *b->last);
  if (b->has_parked) cudaGraphExecDestroy(b->parked);
  b->parked = b->exec, b->parked_count = b->last_count, b->parked_gen = b->gen;
  b->has_parked = true, b->has_exec = false;
}

/* The parked graph back as the binding's, when cmds are its list. */
static bool unpark_graph(sp_cu_binding *b, const sp_cmd *cmds, uint32_t count) {
  if (!b->has_parked || b->parked_gen != b->gen || count != b->parked_count ||
      memcmp(b->parked_list, cmds, (size_t)count * sizeof *cmds))
    return false;
  if (b->has_exec) cudaGraphExecDestroy(b->exec);
  b->exec = b->parked, b->has_exec = true, b->dirty = false, b->has_parked = false;
  return true;
}

void sp_cu_note_list(sp_cu_binding *b, bool same) {
  if (same) return;
  b->list_serial++;
  if (b->has_exec) cudaGraphExecDestroy(b->exec), b->has_exec = false; /* another list's graph */
}

/* Replays, captures or enqueues the list. */
static sp_error_t *launch_list(sp_cu_ctx *c, sp_cu_binding *b, const sp_cmd *cmds, uint32_t count, bool same) {
  if (!same && unpark_graph(b, cmds, count)) {
    b->list_serial++;
    sp_error_t *err = sp_cu_remember_list(b, cmds, count); /* for the status word's messages */
    if (err) return err;
    CU_TRY(cudaGraphLaunch(b->exec, b->stream), "replaying a parked graph");
    return NULL;
  }
  if (!same) park_graph(b);
  sp_cu_note_list(b, same);
  if (same && b->has_exec && !b->dirty) { /* its scratch was reserved when it was captured */
    CU_TRY(cudaGraphLaunch(b->exec, b->stream), "replaying a graph");
    return NULL;
  }
  bool gemm = false;
  sp_error_t *err = sp_cu_list_prepare(c, b, cmds, count, &gemm);
  if (err) return err;
  if (same && c->graphs && !sp_cu_fault_sync_each() && !gemm) return capture_and_launch(b, cmds, count);
  if (b->has_exec) cudaGraphExecDestroy(b->exec), b->has_exec = false;
  if ((err = sp_cu_remember_list(b, cmds, count))) return err;
  return enqueue_list(b, cmds, count);
}

sp_error_t *cu_wait(void *vctx, void *binding) {
  sp_cu_ctx *c = (sp_cu_ctx *)vctx;
  sp_cu_binding *b = (sp_cu_binding *)binding;
  CU_ENTER(c);
  cudaError_t e = cudaStreamSynchronize(b->stream);
  if (e != cudaSuccess && sp_cu_fault_is_sticky(e)) return sp_cu_note_fault(e, "running this actor's list");
  if (e != cudaSuccess)
    return sp_error_new("cuda: running the list failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
  if (b->t_pending) sp_cu_timing_add(b);
  return sp_cu_status_error(b);
}

sp_error_t *sp_cu_status_error(const sp_cu_binding *b) {
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
                              cmd ? sp_cu_op_name(cmd->op) : "?", st->at, st->value, limit ? limit - 1 : 0);
}
