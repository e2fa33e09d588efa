/* cuda_rules.c: the CUDA backend's op and dtype rules (cuda_rules.h). */
#include "backend/cuda/cuda_rules.h"

static bool is_f32(const sp_tensor *t) { return t->dtype == SP_DTYPE_F32; }
static bool is_i32(const sp_tensor *t) { return t->dtype == SP_DTYPE_I32; }
static bool is_float(const sp_tensor *t) {
  return t->dtype == SP_DTYPE_F32 || t->dtype == SP_DTYPE_F16 || t->dtype == SP_DTYPE_BF16;
}
static bool is_weight(const sp_tensor *t) {
  return t->dtype != SP_DTYPE_NONE && t->dtype != SP_DTYPE_I32 && t->dtype < SP_DTYPE_COUNT;
}

bool sp_cuda_supports(const sp_cmd *cmd) {
  const sp_tensor *d = &cmd->dst, *s = cmd->src;
  switch (cmd->op) {
  case SP_OP_NOP: return true;
  case SP_OP_MATMUL: return is_weight(&s[0]) && is_f32(&s[1]) && is_f32(d);
  case SP_OP_ADD:
  case SP_OP_MUL:
  case SP_OP_SWIGLU:
  case SP_OP_RMSNORM: return is_f32(d) && is_f32(&s[0]) && is_f32(&s[1]);
  case SP_OP_SCALE:
  case SP_OP_SOFTMAX: return is_f32(d) && is_f32(&s[0]);
  case SP_OP_ARGMAX: return is_i32(d) && is_f32(&s[0]);
  case SP_OP_GET_ROWS: return is_weight(&s[0]) && is_i32(&s[1]) && is_f32(d);
  case SP_OP_SET_ROWS: return is_float(d) && is_f32(&s[0]) && is_i32(&s[1]);
  case SP_OP_COPY: return is_float(d) && is_float(&s[0]);
  case SP_OP_ROPE:
    return is_f32(d) && is_f32(&s[0]) && is_i32(&s[1]) && (s[2].dtype == SP_DTYPE_NONE || is_f32(&s[2])) &&
           cmd->param[0] <= 2048;
  case SP_OP_ATTENTION:
    return is_f32(d) && is_f32(&s[0]) && (s[1].dtype == SP_DTYPE_F32 || s[1].dtype == SP_DTYPE_F16) &&
           s[2].dtype == s[1].dtype && is_i32(&s[3]) && s[0].ne[0] <= 256;
  default: return false;
  }
}
