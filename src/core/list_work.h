/*
 * list_work.h: how much work one command list asks for, so one submit
 * cannot keep the host busy for hours.
 *
 * A submit runs to completion: time limits (actor_limits.h) are checked in
 * guest code, not inside host calls, and max_cmds bounds only the number of
 * commands. 65536 commands of 512x512x512 matmuls are 17 TFLOP, hours on a
 * CPU. So before anything runs, the validated list's cost is summed from
 * its shapes and checked against the actor's caps:
 *  - FLOPs: matmul 2*K*N*M, attention 4*D*Hq*T*C (scores and weighted sum
 *    over the whole cache: an upper bound), any other op a few per element
 *    of its destination (counted as 8);
 *  - bytes: the extents of every tensor of every command (what the kernels
 *    stream through memory at least once).
 * Sums saturate at UINT64_MAX instead of wrapping.
 */
#ifndef SP_LIST_WORK_H
#define SP_LIST_WORK_H

#include <stddef.h>
#include <stdint.h>

#include "samepage_abi.h"

/* Defaults when an actor sets no cap: far above any single step of the
 * models we run (a 512-token prefill of a 1B model is 1.3 TFLOP and reads
 * 2.5 GB of weights), low enough that one list ends within a minute or two
 * on a CPU. */
#define SP_DEFAULT_MAX_LIST_FLOPS ((uint64_t)1 << 42) /* 4.4 TFLOP */
#define SP_DEFAULT_MAX_LIST_BYTES ((uint64_t)1 << 40) /* 1 TiB */

/* A list's running cost. */
typedef struct sp_list_work {
  uint64_t flops, bytes;
} sp_list_work;

/* Adds one validated (normalized) command's cost to *w. */
void sp_list_work_add(sp_list_work *w, const sp_cmd *cmd);

/* SP_OK while *w is within both caps; else SP_E_LIMIT with a message naming
 * the cap, the command at which it was passed and the amounts. */
sp_status sp_list_work_check(const sp_list_work *w, uint64_t max_flops, uint64_t max_bytes,
                             uint32_t index, char *msg, size_t msg_cap);

#endif
