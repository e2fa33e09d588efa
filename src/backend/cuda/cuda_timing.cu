/*
 * cuda_timing.cu: SP_CUDA_TIMING (a measurement knob): GPU time per list,
 * repeated lists (decode steps) apart from the others, and with mode 2 per
 * command, printed when the binding is released.
 */
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_binding.cuh"

/* SP_CUDA_TIMING: an event before the list (outside any capture), and with
 * mode 2 one per command. */
sp_error_t *sp_cu_timing_start(sp_cu_ctx *c, sp_cu_binding *b, uint32_t count, bool same) {
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
void sp_cu_timing_add(sp_cu_binding *b) {
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

void sp_cu_timing_report(sp_cu_binding *b) {
  fprintf(stderr, "samepage: cuda timing: %llu repeated lists, GPU %.3f ms each; %llu other lists, GPU %.3f ms each\n",
          (unsigned long long)b->t_n[1], b->t_n[1] ? b->t_ms[1] / b->t_n[1] : 0.0, (unsigned long long)b->t_n[0],
          b->t_n[0] ? b->t_ms[0] / b->t_n[0] : 0.0);
  for (uint32_t op = 0; op < SP_OP_COUNT && b->t_n[1]; op++)
    if (b->op_n[op])
      fprintf(stderr, "samepage: cuda timing:   %-10s %4llu per list, %7.2f us each, %.3f ms per list\n", sp_cu_op_name(op),
              (unsigned long long)(b->op_n[op] / b->t_n[1]), 1e3 * b->op_ms[op] / b->op_n[op], b->op_ms[op] / b->t_n[1]);
}
