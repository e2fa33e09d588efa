/* dtype.c: the dtype table. Names and block sizes are ggml's (ggml-common.h). */
#include "core/dtype.h"

static const sp_dtype_info dtype_table[SP_DTYPE_COUNT] = {
    [SP_DTYPE_F32] = {"f32", 1, 4, 4},
    [SP_DTYPE_F16] = {"f16", 1, 2, 2},
    [SP_DTYPE_BF16] = {"bf16", 1, 2, 2},
    [SP_DTYPE_Q8_0] = {"q8_0", 32, 34, 2},
    [SP_DTYPE_Q4_0] = {"q4_0", 32, 18, 2},
    [SP_DTYPE_Q4_1] = {"q4_1", 32, 20, 2},
    [SP_DTYPE_I32] = {"i32", 1, 4, 4},
    [SP_DTYPE_Q5_0] = {"q5_0", 32, 22, 2},
    [SP_DTYPE_Q5_1] = {"q5_1", 32, 24, 2},
    [SP_DTYPE_Q2_K] = {"q2_K", 256, 84, 2},
    [SP_DTYPE_Q3_K] = {"q3_K", 256, 110, 2},
    [SP_DTYPE_Q4_K] = {"q4_K", 256, 144, 2},
    [SP_DTYPE_Q5_K] = {"q5_K", 256, 176, 2},
    [SP_DTYPE_Q6_K] = {"q6_K", 256, 210, 2},
    [SP_DTYPE_IQ4_NL] = {"iq4_nl", 32, 18, 2},
    [SP_DTYPE_IQ4_XS] = {"iq4_xs", 256, 136, 2},
};

const sp_dtype_info *sp_dtype_get(uint32_t dtype) {
  if (dtype == SP_DTYPE_NONE || dtype >= SP_DTYPE_COUNT || !dtype_table[dtype].name) return NULL;
  return &dtype_table[dtype];
}

const char *sp_dtype_name(uint32_t dtype) {
  if (dtype == SP_DTYPE_NONE) return "none";
  const sp_dtype_info *info = sp_dtype_get(dtype);
  return info ? info->name : "unknown";
}

uint64_t sp_dtype_row_bytes(const sp_dtype_info *info, uint64_t ne0) {
  return ne0 / info->block_elems * info->block_bytes;
}
