/*
 * llm_ops.c: the transformer ops on the CPU: get_rows, set_rows, rmsnorm,
 * rope, attention, swiglu, softmax and copy.
 *
 * Numerics follow ggml's CPU reference where it matters for agreement with
 * llama.cpp: rmsnorm sums squares in double, rope advances the angle by
 * repeated float multiplication, f16 conversion rounds to nearest even.
 * Each op splits its rows (or heads) into tasks for the thread pool.
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "backend/cpu/llm_ops.h"
#include "backend/cpu/fp16.h"
#include "dtype.h"

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

/* Runs fn over `rows` rows in about-even chunks on the pool. */
typedef struct rows_job {
  const sp_cpu_exec *ex;
  const sp_cmd *cmd;
  int64_t rows, per_task;
  void (*fn)(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r);
} rows_job;

static void rows_task(void *arg, uint32_t task) {
  const rows_job *j = arg;
  int64_t r0 = (int64_t)task * j->per_task, r1 = r0 + j->per_task < j->rows ? r0 + j->per_task : j->rows;
  for (int64_t r = r0; r < r1; r++) j->fn(j->ex, j->cmd, r);
}

static void for_each_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t rows, uint64_t row_work,
                         void (*fn)(const sp_cpu_exec *, const sp_cmd *, int64_t)) {
  uint32_t tasks = sp_cpu_task_count(ex, (uint64_t)rows * row_work, 16384);
  if ((int64_t)tasks > rows) tasks = (uint32_t)(rows > 0 ? rows : 1);
  rows_job job = {ex, cmd, rows, (rows + tasks - 1) / tasks, fn};
  sp_threadpool_run(ex->pool, tasks, rows_task, &job);
}

/* ---- conversions ---- */

static inline float sp_f16_round(float x) { return sp_f16_to_f32(sp_f32_to_f16(x)); }

/* Dequantizes one row of n elements of any weight dtype into f32. */
static void dequantize_row(uint32_t dtype, const uint8_t *src, float *dst, int64_t n) {
  switch (dtype) {
    case SP_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return;
    case SP_DTYPE_F16: sp_cpu_f16_to_f32_row((const uint16_t *)src, dst, (size_t)n); return;
    case SP_DTYPE_BF16: sp_cpu_bf16_to_f32_row((const uint16_t *)src, dst, (size_t)n); return;
    default: break;
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

/* Checks every index before anything is written. */
static sp_error_t *check_indices(const uint8_t *base, const sp_tensor *idx, uint32_t limit, const char *op) {
  const int32_t *ids = (const int32_t *)(base + idx->offset);
  for (uint32_t i = 0; i < idx->ne[0]; i++)
    if (ids[i] < 0 || (uint32_t)ids[i] >= limit)
      return sp_error_with_status(SP_E_BOUNDS, "%s: src[1][%u] = %d is outside 0..%u", op, i, ids[i], limit - 1);
  return NULL;
}

static void get_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  int32_t id = ((const int32_t *)(ex->base + cmd->src[1].offset))[r];
  dequantize_row(cmd->src[0].dtype, row_at(ex->base, &cmd->src[0], id, 0, 0),
                 (float *)row_at(ex->base, &cmd->dst, r, 0, 0), cmd->dst.ne[0]);
}

sp_error_t *sp_cpu_get_rows(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  sp_error_t *err = check_indices(ex->base, &cmd->src[1], cmd->src[0].ne[1], "get_rows");
  if (err) return err;
  for_each_row(ex, cmd, cmd->dst.ne[1], cmd->dst.ne[0], get_row);
  return NULL;
}

static void set_row(const sp_cpu_exec *ex, const sp_cmd *cmd, int64_t r) {
  int32_t id = ((const int32_t *)(ex->base + cmd->src[1].offset))[r];
  store_row(cmd->dst.dtype, (const float *)row_at(ex->base, &cmd->src[0], r, 0, 0),
            row_at(ex->base, &cmd->dst, id, 0, 0), cmd->dst.ne[0]);
}

sp_error_t *sp_cpu_set_rows(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  sp_error_t *err = check_indices(ex->base, &cmd->src[1], cmd->dst.ne[1], "set_rows");
  if (err) return err;
  for_each_row(ex, cmd, cmd->src[0].ne[1], cmd->dst.ne[0], set_row);
  return NULL;
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

/* ---- attention ---- */

/* Work item: one token t and one kv head; it serves the G = Hq / Hkv query
 * heads that share that kv head, so each k and v row is loaded once per
 * group. Per task scratch: G score rows [C], G query rows [D], G
 * accumulators [D] and one converted v row [D]. */
typedef struct attention_job {
  const sp_cpu_exec *ex;
  const sp_cmd *cmd;
  float *scratch;
  size_t per_task_floats;
  int64_t items, per_task, group; /* group: query heads per item */
  int64_t subgroups;               /* items per (token, kv head) */
} attention_job;

static void load_kv_row(const uint8_t *src, uint32_t dtype, float *dst, int64_t n) {
  if (dtype == SP_DTYPE_F16) sp_cpu_f16_to_f32_row((const uint16_t *)src, dst, (size_t)n);
  else memcpy(dst, src, (size_t)n * 4);
}

/* scores[g][c] = scale * q_g . k_c for c in 0..pos, with the kernel
 * table's dot (k as the "weight" row, up to SP_CPU_MAX_NX queries). */
static void attention_scores(const attention_job *j, const float *qs, float *scores, int64_t hk, int32_t pos) {
  const sp_tensor *k = &j->cmd->src[1];
  int64_t D = k->ne[0], C = k->ne[2], G = j->group;
  float scale = sp_f32_from_bits(j->cmd->param[0]), out[SP_CPU_MAX_NX];
  sp_dot_fn dot = j->ex->kern->dot[k->dtype];
  for (int64_t c = 0; c <= pos; c++) {
    const uint8_t *krow = row_at(j->ex->base, k, hk, c, 0);
    for (int64_t g0 = 0; g0 < G; g0 += SP_CPU_MAX_NX) {
      int nx = (int)(G - g0 < SP_CPU_MAX_NX ? G - g0 : SP_CPU_MAX_NX);
      dot(D, krow, qs + g0 * D, (size_t)D * sizeof(float), nx, out);
      for (int x = 0; x < nx; x++) scores[(g0 + x) * C + c] = out[x] * scale;
    }
  }
}

/* Query group of token t over kv head hk:
 * softmax(scale * q.k[0..pos]) . v[0..pos] for each of the G query heads. */
static inline __attribute__((always_inline)) void attend_group_body(const attention_job *j, float *buf,
                                                                   int64_t item) {
  const sp_cmd *cmd = j->cmd;
  uint8_t *base = j->ex->base;
  const sp_tensor *q = &cmd->src[0], *k = &cmd->src[1], *v = &cmd->src[2];
  int64_t D = q->ne[0], C = k->ne[2], G = j->group, Hkv = k->ne[1];
  int64_t sub = item % j->subgroups, hk = item / j->subgroups % Hkv, t = item / j->subgroups / Hkv;
  int64_t h0 = hk * G * j->subgroups + sub * G; /* first query head of this item */
  int32_t pos = ((const int32_t *)(base + cmd->src[3].offset))[t];
  float *scores = buf, *qs = scores + G * C, *acc = qs + G * D, *row = acc + G * D;
  /* With an f16 cache, ggml multiplies in f16 operands (f32 sums): q, and
   * then the probabilities, are rounded to f16 first. We do the same so our
   * attention matches llama.cpp's to float-summation noise. */
  bool f16 = k->dtype == SP_DTYPE_F16;
  for (int64_t g = 0; g < G; g++) {
    const float *q_row = (const float *)row_at(base, q, h0 + g, t, 0);
    for (int64_t i = 0; i < D; i++) qs[g * D + i] = f16 ? sp_f16_round(q_row[i]) : q_row[i];
  }
  attention_scores(j, qs, scores, hk, pos);
  for (int64_t g = 0; g < G; g++) {
    softmax_in_place(scores + g * C, pos + 1);
    if (v->dtype == SP_DTYPE_F16)
      for (int64_t c = 0; c <= pos; c++) scores[g * C + c] = sp_f16_round(scores[g * C + c]);
  }
  memset(acc, 0, (size_t)(G * D) * sizeof *acc);
  for (int64_t c = 0; c <= pos; c++) {
    load_kv_row(row_at(base, v, hk, c, 0), v->dtype, row, D);
    for (int64_t g = 0; g < G; g++) {
      float p = scores[g * C + c], *a = acc + g * D;
      for (int64_t i = 0; i < D; i++) a[i] += p * row[i];
    }
  }
  for (int64_t g = 0; g < G; g++)
    memcpy(row_at(base, &cmd->dst, h0 + g, t, 0), acc + g * D, (size_t)D * sizeof *acc);
}

/* The v accumulation and the f16 rounding are plain loops: compile them
 * twice, baseline and AVX2+FMA+F16C, and pick by what the CPU has. */
static void attend_group(const attention_job *j, float *buf, int64_t item) { attend_group_body(j, buf, item); }

#if defined(__x86_64__)
__attribute__((target("avx2,fma,f16c"))) static void attend_group_avx2(const attention_job *j, float *buf,
                                                                      int64_t item) {
  attend_group_body(j, buf, item);
}
#endif

static void attention_task(void *arg, uint32_t task) {
  const attention_job *j = arg;
  void (*attend)(const attention_job *, float *, int64_t) = attend_group;
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && strcmp(j->ex->kern->name, "generic"))
    attend = attend_group_avx2;
#endif
  float *buf = j->scratch + (size_t)task * j->per_task_floats;
  int64_t i0 = (int64_t)task * j->per_task, i1 = i0 + j->per_task < j->items ? i0 + j->per_task : j->items;
  for (int64_t item = i0; item < i1; item++) attend(j, buf, item);
}

sp_error_t *sp_cpu_attention(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  const sp_tensor *q = &cmd->src[0], *k = &cmd->src[1];
  sp_error_t *err = check_indices(ex->base, &cmd->src[3], k->ne[2], "attention: positions");
  if (err) return err;
  if (!ex->kern->dot[k->dtype]) return sp_error_new("attention: no dot kernel for %s", sp_dtype_name(k->dtype));
  int64_t G = q->ne[1] / k->ne[1], D = q->ne[0], C = k->ne[2];
  /* Few items (decode: one token) would leave threads idle: then split
   * each kv head's query group into single heads, at the cost of loading
   * k and v rows once per head (they stay in cache). */
  int64_t subgroups = (int64_t)k->ne[1] * q->ne[2] < 4 * (int64_t)sp_threadpool_threads(ex->pool) ? G : 1;
  G /= subgroups;
  int64_t items = (int64_t)k->ne[1] * q->ne[2] * subgroups;
  uint32_t tasks = sp_cpu_task_count(ex, (uint64_t)items * G * C * D / 4, 16384);
  if ((int64_t)tasks > items) tasks = (uint32_t)items;
  size_t per_task = ((size_t)(G * C + 2 * G * D + D) + 15) & ~(size_t)15;
  float *scratch = sp_cpu_scratch_reserve(ex->scratch, per_task * tasks * sizeof(float));
  if (!scratch) return sp_error_new("attention: out of scratch memory");
  attention_job job = {ex, cmd, scratch, per_task, items, (items + tasks - 1) / tasks, G, subgroups};
  sp_threadpool_run(ex->pool, tasks, attention_task, &job);
  return NULL;
}
