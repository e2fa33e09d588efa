/*
 * llm_ops.c: the transformer ops on the CPU: get_rows, set_rows, rmsnorm,
 * rope, swiglu, softmax, argmax, topk and copy (attention has attention.c).
 *
 * Numerics follow ggml's CPU reference where it matters for agreement with
 * llama.cpp: rmsnorm sums squares in double, rope advances the angle by
 * repeated float multiplication, f16 conversion rounds to nearest even.
 * Each op splits its rows (or heads) into tasks for the thread pool.
 *
 * Read once: get_rows and set_rows copy their index tensor out of guest
 * memory into scratch once, check the copy and use only the copy (the
 * tensor may sit in a file mapping that another process writes; a second
 * read after the check would let it pick the row, and with the guest's
 * row stride, the address). rope's positions only set angles, never an
 * address, so rope reads them in place (a racing writer changes numbers,
 * not where they go).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/llm_ops.h"
#include "backend/cpu/fp16.h"
#include "backend/cpu/quant_blocks.h"
#include "core/dtype.h"
#include "core/topk_rank.h"

/* Address of row (i1, i2, i3) of a validated tensor. */
static inline uint8_t *row_at(uint8_t *base, const sp_tensor *t, int64_t i1, int64_t i2, int64_t i3) {
  return base + t->offset + (size_t)i1 * t->nb[0] + (size_t)i2 * t->nb[1] + (size_t)i3 * t->nb[2];
}

static inline int64_t n_rows(const sp_tensor *t) {
  return (int64_t)t->ne[1] * t->ne[2] * t->ne[3];
}

/* Row r of a tensor counted over dims 1..3. */
static inline uint8_t *row_flat(uint8_t *base, const sp_tensor *t, int64_t r) {
  int64_t i1 = r % t->ne[1], i2 = r / t->ne[1] % t->ne[2], i3 = r / t->ne[1] / t->ne[2];
  return row_at(base, t, i1, i2, i3);
}

/* Runs fn (or, with ids, id_fn with row r's checked index) over `rows`
 * rows in about-even chunks on the pool. */
typedef struct rows_job {
  const sp_cpu_exec *ex;
  const sp_cmd *cmd;
  int64_t rows, per_task;
  void (*fn)(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r);
  void (*id_fn)(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r, int32_t id);
  const int32_t *ids; /* [rows] host copy, checked; NULL for fn */
} rows_job;

static void rows_task(void *arg, uint32_t task) {
  const rows_job *j = arg;
  int64_t r0 = (int64_t)task * j->per_task, r1 = r0 + j->per_task < j->rows ? r0 + j->per_task : j->rows;
  for (int64_t r = r0; r < r1; r++)
    if (j->ids) j->id_fn(j->ex, j->cmd, r, j->ids[r]);
    else j->fn(j->ex, j->cmd, r);
}

static void run_rows(const sp_cpu_exec *ex, rows_job *job, uint64_t row_work) {
  uint32_t tasks = sp_cpu_task_count(ex, (uint64_t)job->rows * row_work, 16384);
  if ((int64_t)tasks > job->rows) tasks = (uint32_t)(job->rows > 0 ? job->rows : 1);
  job->per_task = (job->rows + tasks - 1) / tasks;
  sp_threadpool_run(ex->pool, tasks, rows_task, job);
}

static void for_each_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t rows, uint64_t row_work,
                         void (*fn)(const sp_cpu_exec *, const sp_cmd *, int64_t)) {
  rows_job job = {.ex = ex, .cmd = cmd, .rows = rows, .fn = fn};
  run_rows(ex, &job, row_work);
}

/* ---- conversions ---- */

/* Dequantizes one row of n elements of any weight dtype into f32. */
static void dequantize_row(uint32_t dtype, const uint8_t *src, float *dst, int64_t n) {
  switch (dtype) {
    case SP_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return;
    case SP_DTYPE_F16: sp_cpu_f16_to_f32_row((const uint16_t *)src, dst, (size_t)n); return;
    case SP_DTYPE_BF16: sp_cpu_bf16_to_f32_row((const uint16_t *)src, dst, (size_t)n); return;
    default: break;
  }
  if (sp_quant_block_known(dtype)) {
    sp_quant_dequantize_row(dtype, src, dst, n);
    return;
  }
  const sp_dtype_info *info = sp_dtype_get(dtype);
  for (int64_t b = 0; b < n / SP_QK; b++, src += info->block_bytes, dst += SP_QK) {
    uint16_t dh, mh = 0;
    memcpy(&dh, src, 2);
    float d = sp_f16_to_f32(dh);
    if (dtype == SP_DTYPE_Q8_0) {
      for (int i = 0; i < SP_QK; i++) dst[i] = d * (float)(int8_t)src[2 + i];
      continue;
    }
    const uint8_t *qs = src + (dtype == SP_DTYPE_Q4_1 ? 4 : 2);
    if (dtype == SP_DTYPE_Q4_1) memcpy(&mh, src + 2, 2);
    float m = dtype == SP_DTYPE_Q4_1 ? sp_f16_to_f32(mh) : -8.0f * d;
    for (int i = 0; i < SP_QK / 2; i++) {
      dst[i] = d * (float)(qs[i] & 0x0f) + m;
      dst[i + SP_QK / 2] = d * (float)(qs[i] >> 4) + m;
    }
  }
}

/* Writes n f32 values as dtype (f32, f16 or bf16). */
static void store_row(uint32_t dtype, const float *src, uint8_t *dst, int64_t n) {
  if (dtype == SP_DTYPE_F32) memmove(dst, src, (size_t)n * 4);
  else if (dtype == SP_DTYPE_F16) sp_cpu_f32_to_f16_row(src, (uint16_t *)dst, (size_t)n);
  else sp_cpu_f32_to_bf16_row(src, (uint16_t *)dst, (size_t)n);
}

/* ---- get_rows / set_rows ---- */

/* Copies the index tensor out of guest memory into scratch (one read of
 * the guest's bytes) and checks the copy, before anything is written;
 * *ids is the copy, all that is used afterwards. */
static sp_error_t *copy_indices(const sp_cpu_exec *ex, const sp_tensor *idx, uint32_t limit, const char *op,
                                const int32_t **ids) {
  int32_t *copy = sp_cpu_scratch_reserve(ex->scratch, (size_t)idx->ne[0] * sizeof *copy);
  if (!copy) return sp_error_new("%s: out of scratch memory for the indices", op);
  memcpy(copy, ex->base + idx->offset, (size_t)idx->ne[0] * sizeof *copy);
  for (uint32_t i = 0; i < idx->ne[0]; i++)
    if (copy[i] < 0 || (uint32_t)copy[i] >= limit)
      return sp_error_with_status(SP_E_BOUNDS, "%s: src[1][%u] = %d is outside 0..%u", op, i, copy[i], limit - 1);
  *ids = copy;
  return NULL;
}

static void get_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r, int32_t id) {
  dequantize_row(cmd->src[0].dtype, row_at(ex->base, &cmd->src[0], id, 0, 0),
                 (float *)row_at(ex->base, &cmd->dst, r, 0, 0), cmd->dst.ne[0]);
}

/* The validator makes src[1] a vector of `rows` indices (op_rules.c). */
static sp_error_t *indexed_rows(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t rows, uint32_t limit,
                                const char *op, void (*fn)(const sp_cpu_exec *, const sp_cmd *, int64_t, int32_t)) {
  rows_job job = {.ex = ex, .cmd = cmd, .rows = rows, .id_fn = fn};
  sp_error_t *err = copy_indices(ex, &cmd->src[1], limit, op, &job.ids);
  if (err) return err;
  run_rows(ex, &job, cmd->dst.ne[0]);
  return NULL;
}

sp_error_t *sp_cpu_get_rows(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  return indexed_rows(ex, cmd, cmd->dst.ne[1], cmd->src[0].ne[1], "get_rows", get_row);
}

static void set_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r, int32_t id) {
  store_row(cmd->dst.dtype, (const float *)row_at(ex->base, &cmd->src[0], r, 0, 0),
            row_at(ex->base, &cmd->dst, id, 0, 0), cmd->dst.ne[0]);
}

sp_error_t *sp_cpu_set_rows(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  return indexed_rows(ex, cmd, cmd->src[0].ne[1], cmd->dst.ne[1], "set_rows", set_row);
}

/* ---- rmsnorm, swiglu, softmax, copy: row-wise ---- */

static void rmsnorm_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  const float *x = (const float *)row_flat(ex->base, &cmd->src[0], r);
  const float *w = (const float *)(ex->base + cmd->src[1].offset);
  float *y = (float *)row_flat(ex->base, &cmd->dst, r);
  float eps = sp_f32_from_bits(cmd->param[0]);
  int64_t n = cmd->dst.ne[0];
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
  float scale = 1.0f / sqrtf((float)(sum / (double)n) + eps);
  for (int64_t i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void sp_cpu_rmsnorm(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  for_each_row(ex, cmd, n_rows(&cmd->dst), cmd->dst.ne[0], rmsnorm_row);
}

static void swiglu_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  const float *g = (const float *)row_flat(ex->base, &cmd->src[0], r);
  const float *u = (const float *)row_flat(ex->base, &cmd->src[1], r);
  float *y = (float *)row_flat(ex->base, &cmd->dst, r);
  for (int64_t i = 0; i < cmd->dst.ne[0]; i++) y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void sp_cpu_swiglu(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  for_each_row(ex, cmd, n_rows(&cmd->dst), cmd->dst.ne[0] * 8, swiglu_row);
}

static void softmax_in_place(float *y, int64_t n) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; i++) max = y[i] > max ? y[i] : max;
  double sum = 0;
  for (int64_t i = 0; i < n; i++) sum += y[i] = expf(y[i] - max);
  float inv = (float)(1.0 / sum);
  for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

static void softmax_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  const float *x = (const float *)row_flat(ex->base, &cmd->src[0], r);
  float *y = (float *)row_flat(ex->base, &cmd->dst, r);
  float scale = sp_f32_from_bits(cmd->param[0]);
  for (int64_t i = 0; i < cmd->dst.ne[0]; i++) y[i] = x[i] * scale;
  softmax_in_place(y, cmd->dst.ne[0]);
}

/* The first largest value's index; NaN never wins (all NaN: 0). */
static void argmax_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  const float *x = (const float *)row_flat(ex->base, &cmd->src[0], r);
  int32_t best = 0;
  float top = NAN;
  for (int64_t i = 0; i < cmd->src[0].ne[0]; i++)
    if (x[i] > top || (isnan(top) && !isnan(x[i]))) top = x[i], best = (int32_t)i;
  int32_t *y = (int32_t *)(ex->base + cmd->dst.offset);
  y[r] = best;
}

void sp_cpu_argmax(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  for_each_row(ex, cmd, cmd->src[0].ne[1], cmd->src[0].ne[0], argmax_row);
}

/* Restores the min-heap of ranks below position i (least at the root). */
static void rank_sift_down(uint64_t *h, uint32_t n, uint32_t i) {
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && h[l] < h[m]) m = l;
    if (r < n && h[r] < h[m]) m = r;
    if (m == i) return;
    uint64_t t = h[i];
    h[i] = h[m], h[m] = t;
    i = m;
  }
}

static int by_rank_desc(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x < y) - (x > y);
}

/* The K best indices of a row in the order of core/topk_rank.h: one pass
 * keeps a min-heap of the K best ranks seen (a value enters only when it
 * beats the least, so a 128k-entry row costs about a comparison per
 * value), then the survivors are sorted, best first. */
static void topk_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  const float *x = (const float *)row_flat(ex->base, &cmd->src[0], r);
  int32_t *y = (int32_t *)row_flat(ex->base, &cmd->dst, r);
  uint32_t n = cmd->src[0].ne[0], k = cmd->dst.ne[0];
  uint64_t heap[SP_TOPK_MAX];
  for (uint32_t i = 0; i < k; i++) heap[i] = sp_topk_rank(sp_topk_key(x[i]), i);
  for (uint32_t i = k / 2; i-- > 0;) rank_sift_down(heap, k, i);
  for (uint32_t i = k; i < n; i++) {
    uint64_t rank = sp_topk_rank(sp_topk_key(x[i]), i);
    if (rank <= heap[0]) continue;
    heap[0] = rank;
    rank_sift_down(heap, k, 0);
  }
  qsort(heap, k, sizeof *heap, by_rank_desc);
  for (uint32_t i = 0; i < k; i++) y[i] = (int32_t)sp_topk_index(heap[i]);
}

void sp_cpu_topk(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  for_each_row(ex, cmd, cmd->src[0].ne[1], (uint64_t)cmd->src[0].ne[0] * 2, topk_row);
}

void sp_cpu_softmax(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  for_each_row(ex, cmd, n_rows(&cmd->dst), cmd->dst.ne[0] * 8, softmax_row);
}

static void copy_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  float tmp[1024];
  const uint8_t *src = row_flat(ex->base, &cmd->src[0], r);
  uint8_t *dst = row_flat(ex->base, &cmd->dst, r);
  int64_t n = cmd->dst.ne[0];
  size_t src_elem = cmd->src[0].dtype == SP_DTYPE_F32 ? 4 : 2, dst_elem = cmd->dst.dtype == SP_DTYPE_F32 ? 4 : 2;
  for (int64_t i = 0; i < n; i += 1024) {
    int64_t len = n - i < 1024 ? n - i : 1024;
    dequantize_row(cmd->src[0].dtype, src + (size_t)i * src_elem, tmp, len);
    store_row(cmd->dst.dtype, tmp, dst + (size_t)i * dst_elem, len);
  }
}

void sp_cpu_copy(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  for_each_row(ex, cmd, n_rows(&cmd->dst), cmd->dst.ne[0], copy_row);
}

/* ---- rope ---- */

/* Rotates one head vector of token t. theta advances by repeated float
 * multiplication, as ggml does, so angles match bit for bit. */
static void rope_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  const sp_tensor *d = &cmd->dst;
  int64_t h = r % d->ne[1], t = r / d->ne[1];
  const float *x = (const float *)row_at(ex->base, &cmd->src[0], h, t, 0);
  float *y = (float *)row_at(ex->base, d, h, t, 0);
  int32_t pos = ((const int32_t *)(ex->base + cmd->src[1].offset))[t];
  uint32_t n_rot = cmd->param[0], mode = cmd->param[2];
  float base = sp_f32_from_bits(cmd->param[1]), freq_scale = sp_f32_from_bits(cmd->param[3]);
  const float *factors = cmd->src[2].dtype ? (const float *)(ex->base + cmd->src[2].offset) : NULL;
  float theta_scale = powf(base, -2.0f / (float)n_rot), theta = (float)pos;
  uint32_t half = n_rot / 2;
  for (uint32_t i = 0; i < half; i++, theta *= theta_scale) {
    float angle = freq_scale * theta / (factors ? factors[i] : 1.0f);
    float c = cosf(angle), s = sinf(angle);
    uint32_t i0 = mode == 2 ? i : 2 * i, i1 = mode == 2 ? i + half : 2 * i + 1;
    float x0 = x[i0], x1 = x[i1];
    y[i0] = x0 * c - x1 * s;
    y[i1] = x0 * s + x1 * c;
  }
  if (y != x) memmove(y + n_rot, x + n_rot, (d->ne[0] - n_rot) * sizeof *y);
}

void sp_cpu_rope(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  for_each_row(ex, cmd, (int64_t)cmd->dst.ne[1] * cmd->dst.ne[2], cmd->dst.ne[0] * 16, rope_row);
}
