/* vk_rules.c: what the Vulkan backend runs (vk_rules.h); plain C. */
#include "backend/vulkan/vk_rules.h"

#include "core/op_rules.h"

static bool is_float_dtype(uint32_t dt) { return dt == SP_DTYPE_F32 || dt == SP_DTYPE_F16 || dt == SP_DTYPE_BF16; }

/* Every weight dtype the shaders decode (shaders/quant.glsl). */
static bool is_weight_dtype(uint32_t dt) { return dt >= SP_DTYPE_F32 && dt < SP_DTYPE_COUNT && dt != SP_DTYPE_I32; }

bool sp_vk_rules_supports(const sp_cmd *cmd) {
  if (!sp_op_rule_get(cmd->op)) return false;
  switch (cmd->op) {
  case SP_OP_NOP:
  case SP_OP_ADD:
  case SP_OP_MUL:
  case SP_OP_SCALE:
  case SP_OP_RMSNORM:
  case SP_OP_ROPE:
  case SP_OP_SWIGLU:
  case SP_OP_SOFTMAX:
  case SP_OP_ARGMAX:
  case SP_OP_GEGLU:
  case SP_OP_SOFTCAP:
  case SP_OP_TOPK: return true;
  case SP_OP_COPY: return is_float_dtype(cmd->src[0].dtype) && is_float_dtype(cmd->dst.dtype);
  case SP_OP_SET_ROWS: return is_float_dtype(cmd->dst.dtype);
  case SP_OP_MATMUL:
  case SP_OP_GET_ROWS: return is_weight_dtype(cmd->src[0].dtype);
  case SP_OP_ATTENTION: return cmd->src[0].ne[0] <= SP_VK_ATTN_MAX_D;
  default: return false;
  }
}
