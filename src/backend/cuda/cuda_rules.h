/*
 * cuda_rules.h: which validated commands the CUDA backend can run.
 *
 * Plain C, so that the host can answer "supported?" for a CUDA backend that
 * runs in a worker process (backend/worker) without loading CUDA itself.
 */
#ifndef SP_CUDA_RULES_H
#define SP_CUDA_RULES_H

#include <stdbool.h>

#include "samepage_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether the CUDA backend runs cmd, which passed the validator (the op's
 * dtypes are checked there): the op is known, and sizes its kernels cap. */
bool sp_cuda_supports(const sp_cmd *cmd);

#ifdef __cplusplus
}
#endif

#endif
