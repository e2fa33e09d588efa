/* cuda_rules.c: the CUDA backend's op and dtype rules (cuda_rules.h). */
#include "backend/cuda/cuda_rules.h"

#include "core/op_rules.h"

/* Weight dtypes the CUDA matmul and get_rows kernels read. The validator
 * accepts more (every dtype of the ABI); a list naming another is refused
 * up front (SP_E_UNSUPPORTED) rather than launched. */
static bool weight_dtype_supported(uint32_t dtype) {
  switch (dtype) {
  case SP_DTYPE_F32:
  case SP_DTYPE_F16:
  case SP_DTYPE_BF16:
  case SP_DTYPE_Q8_0:
  case SP_DTYPE_Q4_0:
  case SP_DTYPE_Q4_1:
  /* issue 15 (quant_k.cuh): int8 decode kernels for Q5_0, Q4_K, Q6_K,
   * on-the-fly dequantization for the rest, f16 expansion for prompts */
  case SP_DTYPE_Q5_0:
  case SP_DTYPE_Q5_1:
  case SP_DTYPE_Q2_K:
  case SP_DTYPE_Q3_K:
  case SP_DTYPE_Q4_K:
  case SP_DTYPE_Q5_K:
  case SP_DTYPE_Q6_K:
  case SP_DTYPE_IQ4_NL:
  case SP_DTYPE_IQ4_XS: return true;
  default: return false;
  }
}

/* The validator (op_rules.c) has checked every dtype by now; what the CUDA
 * kernels add are the weight dtypes and ops they have, and two size caps. */
bool sp_cuda_supports(const sp_cmd *cmd) {
  if (!sp_op_rule_get(cmd->op)) return false;
  switch (cmd->op) {
  case SP_OP_MATMUL:
  case SP_OP_GET_ROWS: return weight_dtype_supported(cmd->src[0].dtype);
  case SP_OP_ROPE: return cmd->param[0] <= 2048; /* rotated dimensions */
  case SP_OP_ATTENTION: return cmd->src[0].ne[0] <= 256; /* head size; every kernel honours the window */
  default: return true;
  }
}
