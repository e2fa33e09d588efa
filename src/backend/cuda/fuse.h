/*
 * fuse.h: which neighbouring commands of a list the CUDA backend runs as one
 * launch.
 *
 * A decode step is some 20 small commands per layer; on an H100 each launch
 * costs a few microseconds however little it does, and every matrix-vector
 * product re-reads and re-quantizes its input. The planner looks at the
 * command at position i and its successors and picks a fused launch only
 * when running it gives the same bytes as running the commands one by one:
 * the same kernels' arithmetic in the same order, on tensors whose overlaps
 * cannot make the order of the writes matter. Everything else runs alone.
 * The planner sees only validated commands and knows nothing of models.
 */
#ifndef SP_CUDA_FUSE_H
#define SP_CUDA_FUSE_H

#include "backend/cuda/cuda_common.cuh"

typedef enum sp_cu_fusion_kind {
  SP_FUSE_NONE,          /* the command alone */
  SP_FUSE_MATMUL_GROUP,  /* 2-3 quantized matrix-vector products over one input */
  SP_FUSE_ADD_RMSNORM,   /* add, then rmsnorm of the sum */
  SP_FUSE_NORM_ADD_RMSNORM, /* rmsnorm in place of what the add then adds, the add, the rmsnorm of the sum */
  SP_FUSE_RMSNORM_PAIR,  /* two independent rmsnorms of rows of one width (q and k heads) */
  SP_FUSE_RMSNORM,       /* rmsnorm, quantizing its output for the next matmul */
  SP_FUSE_GATE,          /* swiglu or geglu, quantizing its output for the next matmul */
  SP_FUSE_ATTENTION,     /* attention, quantizing its output for the next matmul */
  SP_FUSE_ROPE_PAIR,     /* two independent ropes with the same positions */
  SP_FUSE_ROPE_CACHE,    /* that pair, then set_rows of k and v into f16 caches */
  SP_FUSE_SET_ROWS_PAIR, /* two independent set_rows with the same indices */
  SP_FUSE_BIAS_ROWS,     /* 2-3 independent in-place adds of one broadcast row (biases) */
} sp_cu_fusion_kind;

#define SP_CU_MAX_FUSED 4 /* the most commands one fused launch runs (rope with cache writes) */

typedef struct sp_cu_fusion {
  sp_cu_fusion_kind kind;
  uint32_t count; /* commands it runs, from position i */
  bool paired;    /* matmul group: every member has the same row count */
  bool quantize;  /* rmsnorm/gate: also quantize the output for cmds[i + count] */
} sp_cu_fusion;

/* The launch for cmds[i] (and maybe the next ones) of a validated list;
 * cmds[i] alone when !enabled (the backend's knob SP_CUDA_NO_FUSION, for
 * measurement and bisection). */
sp_cu_fusion sp_cu_fuse_plan(const sp_cmd *cmds, uint32_t i, uint32_t count, bool enabled);

/* Bytes from a tensor's first element to one past its last. */
uint64_t sp_cu_extent(const sp_tensor *t);


#endif
