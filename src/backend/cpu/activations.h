/* activations.h: the CPU's elementwise activations of issue 15
 * (activations.c): GEGLU (Gemma's feed-forward) and SOFTCAP (soft-capping
 * of logits). */
#ifndef SP_CPU_ACTIVATIONS_H
#define SP_CPU_ACTIVATIONS_H

#include "backend/cpu/cpu_exec.h"

/* SP_OP_GEGLU: dst = gelu_tanh(src0) * src1. Never fails. */
void sp_cpu_geglu(const sp_cpu_exec *ex, const sp_cmd *cmd);

/* SP_OP_SOFTCAP: dst = cap * tanh(src0 / cap), cap = param[0]. Never fails. */
void sp_cpu_softcap(const sp_cpu_exec *ex, const sp_cmd *cmd);

/* One element of each, as the kernels compute it (tests compare these
 * with a double-precision reference, and CUDA's kernels with them). */
float sp_cpu_gelu_tanh(float x);
float sp_cpu_geglu_one(float x, float g);
float sp_cpu_softcap_one(float x, float inv_cap, float cap);

#endif
