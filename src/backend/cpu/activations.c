/*
 * activations.c: SP_OP_GEGLU and SP_OP_SOFTCAP on the CPU.
 *
 * Numerics follow ggml's CPU build (llama.cpp 0.3.36, ggml-cpu), whose
 * outputs the agreement tests compare with:
 *  - GELU is the tanh form, evaluated in f32 left to right as
 *    0.5f * x * (1 + tanhf(sqrt(2/pi) * x * (1 + 0.044715f * x * x))).
 *    For f32 inputs ggml-cpu does not evaluate it per element: it always
 *    looks x up, rounded to f16, in a table of GELU values rounded to f16,
 *    except x <= -10 (result 0, whatever the other factor) and x >= 10
 *    (GELU(x) taken as x). GEGLU here does the same: dst = 0, x * g, or
 *    f16(gelu(f16(x))) * g. So its results carry f16 rounding (relative
 *    error up to 2^-11 on the GELU factor), as llama.cpp's do.
 *  - SOFTCAP is what llama.cpp builds for Gemma 2's logits: a scale by
 *    1 / cap, tanhf, a scale by cap: dst = tanhf(x * (1 / cap)) * cap,
 *    1 / cap rounded to f32 once per command.
 * Each element is computed alone, so the bits depend on neither the
 * thread count nor the kernel table (no table has its own loop here);
 * tanhf comes from the C library, which may differ between machines, as
 * kernels.h says of expf.
 *
 * In place (dst identical to src0) is safe: each element is read before
 * it is written, by the same thread.
 */
#include "backend/cpu/activations.h"

#include <math.h>
#include <pthread.h>

#include "backend/cpu/fp16.h"

#define SP_ACT_PIECE 8192          /* floats per piece of a long row */
#define SP_ACT_TASK_MIN (16 << 10) /* floats per task, at least */

/* ---- one element ---- */

float sp_cpu_gelu_tanh(float x) {
  const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef_a = 0.044715f;
  return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + coef_a * x * x)));
}

/* gelu of every f16 value, rounded to f16 (as ggml's table): 128 KiB,
 * built once, on first use. */
static uint16_t gelu_f16_table[1 << 16];
static pthread_once_t gelu_table_once = PTHREAD_ONCE_INIT;

static void build_gelu_table(void) {
  for (uint32_t h = 0; h < (1u << 16); h++)
    gelu_f16_table[h] = sp_f32_to_f16(sp_cpu_gelu_tanh(sp_f16_to_f32((uint16_t)h)));
}

static inline float geglu_from_table(float x, float g) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x * g;
  return sp_f16_to_f32(gelu_f16_table[sp_f32_to_f16(x)]) * g;
}

float sp_cpu_geglu_one(float x, float g) {
  pthread_once(&gelu_table_once, build_gelu_table);
  return geglu_from_table(x, g);
}

float sp_cpu_softcap_one(float x, float inv_cap, float cap) { return tanhf(x * inv_cap) * cap; }

/* ---- rows in pieces, on the pool ---- */

typedef struct act_job {
  uint8_t *base;
  sp_tensor d, a, b; /* b: GEGLU's second factor */
  float inv_cap, cap;
  void (*piece)(const struct act_job *j, float *d, const float *a, const float *b, int64_t n);
  int64_t ne0, pieces_per_row, pieces, pieces_per_task;
} act_job;

static void geglu_piece(const act_job *j, float *d, const float *a, const float *b, int64_t n) {
  (void)j;
  for (int64_t i = 0; i < n; i++) d[i] = geglu_from_table(a[i], b[i]);
}

static void softcap_piece(const act_job *j, float *d, const float *a, const float *b, int64_t n) {
  (void)b;
  for (int64_t i = 0; i < n; i++) d[i] = sp_cpu_softcap_one(a[i], j->inv_cap, j->cap);
}

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

static void act_task(void *arg, uint32_t task) {
  const act_job *j = arg;
  int64_t p0 = (int64_t)task * j->pieces_per_task, p1 = min_i64(p0 + j->pieces_per_task, j->pieces);
  for (int64_t p = p0; p < p1; p++) {
    int64_t r = p / j->pieces_per_row, c0 = p % j->pieces_per_row * SP_ACT_PIECE;
    const float *b = j->b.dtype ? (const float *)sp_cpu_row(j->base, &j->b, r) + c0 : NULL;
    j->piece(j, (float *)sp_cpu_row(j->base, &j->d, r) + c0, (const float *)sp_cpu_row(j->base, &j->a, r) + c0, b,
             min_i64(SP_ACT_PIECE, j->ne0 - c0));
  }
}

/* Long rows are cut into pieces so that even one row spreads over the
 * threads (a decode step's feed-forward is a single row). */
static void run_pieces(const sp_cpu_exec *ex, act_job *j) {
  int64_t rows = sp_cpu_rows(&j->d);
  j->ne0 = j->d.ne[0];
  j->pieces_per_row = (j->ne0 + SP_ACT_PIECE - 1) / SP_ACT_PIECE;
  j->pieces = rows * j->pieces_per_row;
  uint32_t tasks = sp_cpu_task_count(ex, (uint64_t)rows * (uint64_t)j->ne0, SP_ACT_TASK_MIN);
  j->pieces_per_task = (j->pieces + tasks - 1) / tasks;
  sp_threadpool_run(ex->pool, (uint32_t)((j->pieces + j->pieces_per_task - 1) / j->pieces_per_task), act_task, j);
}

void sp_cpu_geglu(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  pthread_once(&gelu_table_once, build_gelu_table);
  act_job j = {.base = ex->base, .d = cmd->dst, .a = cmd->src[0], .b = cmd->src[1], .piece = geglu_piece};
  run_pieces(ex, &j);
}

void sp_cpu_softcap(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  float cap = sp_f32_from_bits(cmd->param[0]);
  act_job j = {.base = ex->base, .d = cmd->dst, .a = cmd->src[0], .inv_cap = 1.0f / cap, .cap = cap,
               .piece = softcap_piece};
  run_pieces(ex, &j);
}
