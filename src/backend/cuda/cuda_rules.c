/* cuda_rules.c: the CUDA backend's op and dtype rules (cuda_rules.h). */
#include "backend/cuda/cuda_rules.h"

#include "core/op_rules.h"

/* The validator (op_rules.c) has checked every dtype by now; what the CUDA
 * kernels add are two size caps. */
bool sp_cuda_supports(const sp_cmd *cmd) {
  if (!sp_op_rule_get(cmd->op)) return false;
  if (cmd->op == SP_OP_ROPE) return cmd->param[0] <= 2048;         /* rotated dimensions */
  if (cmd->op == SP_OP_ATTENTION) return cmd->src[0].ne[0] <= 256; /* head size */
  return true;
}
