/* llm_ops.h: the transformer op drivers of the CPU backend (llm_ops.c;
 * attention in attention.c). */
#ifndef SP_CPU_LLM_OPS_H
#define SP_CPU_LLM_OPS_H

#include "backend/cpu/cpu_exec.h"

/* SP_OP_GET_ROWS / SP_OP_SET_ROWS. Errors: an index out of range (checked
 * before anything is written). */
sp_error_t *sp_cpu_get_rows(const sp_cpu_exec *ex, const sp_cmd *cmd);
sp_error_t *sp_cpu_set_rows(const sp_cpu_exec *ex, const sp_cmd *cmd);

/* SP_OP_ATTENTION (attention.c). Errors: a position outside the cache
 * (SP_E_BOUNDS, nothing written), scratch OOM. */
sp_error_t *sp_cpu_attention(const sp_cpu_exec *ex, const sp_cmd *cmd);

/* SP_OP_RMSNORM, SP_OP_ROPE, SP_OP_SWIGLU, SP_OP_SOFTMAX, SP_OP_COPY. */
void sp_cpu_rmsnorm(const sp_cpu_exec *ex, const sp_cmd *cmd);
void sp_cpu_rope(const sp_cpu_exec *ex, const sp_cmd *cmd);
void sp_cpu_swiglu(const sp_cpu_exec *ex, const sp_cmd *cmd);
void sp_cpu_softmax(const sp_cpu_exec *ex, const sp_cmd *cmd);
/* SP_OP_ARGMAX. */
void sp_cpu_argmax(const sp_cpu_exec *ex, const sp_cmd *cmd);
/* SP_OP_TOPK. */
void sp_cpu_topk(const sp_cpu_exec *ex, const sp_cmd *cmd);
void sp_cpu_copy(const sp_cpu_exec *ex, const sp_cmd *cmd);

#endif
