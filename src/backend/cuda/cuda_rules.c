/* cuda_rules.c: the CUDA backend's op and dtype rules (cuda_rules.h). */
#include "backend/cuda/cuda_rules.h"

/* The validator (op_rules.c) has checked every dtype by now; what the CUDA
 * kernels add are two size caps. */
bool sp_cuda_supports(const sp_cmd *cmd) {
  switch (cmd->op) {
  case SP_OP_ROPE: return cmd->param[0] <= 2048;            /* rotated dimensions */
  case SP_OP_ATTENTION: return cmd->src[0].ne[0] <= 256;    /* head size */
  case SP_OP_NOP:
  case SP_OP_MATMUL:
  case SP_OP_GET_ROWS:
  case SP_OP_ADD:
  case SP_OP_MUL:
  case SP_OP_SWIGLU:
  case SP_OP_RMSNORM:
  case SP_OP_SCALE:
  case SP_OP_SOFTMAX:
  case SP_OP_SET_ROWS:
  case SP_OP_COPY:
  case SP_OP_ARGMAX: return true;
  default: return false;
  }
}
