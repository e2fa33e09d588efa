/*
 * elementwise.c: SP_OP_ADD, SP_OP_MUL and SP_OP_SCALE on up to 4-D f32
 * tensors with strides.
 *
 * Every tensor is a set of contiguous rows of ne[0] floats; row r of dst
 * pairs with row r of src0 and with row r of src1, or with src1's only row
 * when it is broadcast. Long rows are cut into pieces so that even a single
 * row spreads over the threads. In place (dst identical to a source) is
 * safe because each element is read before it is written, by the same
 * thread.
 */
#include <string.h>

#include "backend/cpu/cpu_exec.h"

#define SP_EW_PIECE 8192             /* floats per piece of a long row */
#define SP_EW_TASK_MIN (32 << 10)    /* floats per task, at least */

typedef struct sp_ew_job {
  const sp_cpu_kernels *kern;
  uint32_t op;
  float s; /* SP_OP_SCALE's factor */
  uint8_t *base;
  sp_tensor d, a, b;
  int b_broadcast;
  int64_t ne0, pieces_per_row, pieces, pieces_per_task;
} sp_ew_job;

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }

static void ew_task(void *arg, uint32_t task) {
  const sp_ew_job *j = arg;
  int64_t p0 = (int64_t)task * j->pieces_per_task;
  int64_t p1 = min_i64(p0 + j->pieces_per_task, j->pieces);
  for (int64_t p = p0; p < p1; p++) {
    int64_t r = p / j->pieces_per_row, c0 = p % j->pieces_per_row * SP_EW_PIECE;
    int64_t n = min_i64(SP_EW_PIECE, j->ne0 - c0);
    float *d = (float *)sp_cpu_row(j->base, &j->d, r) + c0;
    const float *a = (const float *)sp_cpu_row(j->base, &j->a, r) + c0;
    if (j->op == SP_OP_SCALE) {
      j->kern->scale(d, a, j->s, n);
      continue;
    }
    const float *b = (const float *)sp_cpu_row(j->base, &j->b, j->b_broadcast ? 0 : r) + c0;
    if (j->op == SP_OP_ADD)
      j->kern->add(d, a, b, n);
    else
      j->kern->mul(d, a, b, n);
  }
}

void sp_cpu_elementwise(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  sp_ew_job j = {
      .kern = ex->kern,
      .op = cmd->op,
      .base = ex->base,
      .d = cmd->dst,
      .a = cmd->src[0],
      .b = cmd->src[1],
      .ne0 = cmd->dst.ne[0],
  };
  if (cmd->op == SP_OP_SCALE) {
    memcpy(&j.s, &cmd->param[0], sizeof j.s);
  } else {
    const sp_tensor *b = &cmd->src[1];
    j.b_broadcast = b->ne[1] == 1 && b->ne[2] == 1 && b->ne[3] == 1;
  }
  int64_t rows = sp_cpu_rows(&j.d);
  j.pieces_per_row = (j.ne0 + SP_EW_PIECE - 1) / SP_EW_PIECE;
  j.pieces = rows * j.pieces_per_row;
  uint32_t tasks = sp_cpu_task_count(ex, (uint64_t)rows * (uint64_t)j.ne0, SP_EW_TASK_MIN);
  j.pieces_per_task = (j.pieces + tasks - 1) / tasks;
  sp_threadpool_run(ex->pool, (uint32_t)((j.pieces + j.pieces_per_task - 1) / j.pieces_per_task),
                    ew_task, &j);
}
