/*
 * samepage_abi.h: the wire format between a guest and the samepage host.
 *
 * This header is shared, byte for byte, by the host (which validates and
 * executes) and by guests (which build command lists in their own linear
 * memory). It has no dependencies beyond <stdint.h> so that it compiles for
 * wasm32-wasi and for the host alike. Every field is little-endian and every
 * address is a guest address: an offset from the start of the guest's linear
 * memory, which is also the start of the accelerator's buffer.
 *
 * The host/guest ABI, import module "samepage":
 *
 *  1. `i32 abi_version()` returns SP_ABI_VERSION.
 *  2. `i32 submit(i32 list_addr, i32 list_bytes)` validates a whole command
 *     list (below), then runs it to completion. It returns SP_OK or a negative
 *     sp_status; nothing runs unless every command validated. Kernels write
 *     guest memory only while the guest is blocked inside this call.
 *  3. `i32 last_error(i32 buf_addr, i32 buf_cap)` copies the message of the
 *     last failed call (NUL-terminated, truncated to buf_cap) and returns the
 *     full message length. The message names the bad field, e.g.
 *     "cmd[2].src[0].offset: 0xfffffff0 + 64 bytes is outside committed memory".
 *  4. `i32 freeze(i32 addr, i32 len)` declares guest bytes [addr, addr+len)
 *     immutable (weights). From then on no command's dst may overlap the
 *     range (SP_E_ALIAS), and a discrete GPU may keep a device copy, made
 *     once and reported in the residency stats. At most 16 ranges, never
 *     overlapping each other. Returns SP_OK or a negative sp_status.
 *  5. `i32 flush(i32 addr, i32 len)`: the coherence rule. A guest that
 *     rewrites bytes of a frozen or device-local range with its own stores
 *     must flush them (a sub-range of one such range) before the next
 *     submit; until then kernels may read the stale copy. Host calls that
 *     write guest memory for the guest (blob_read, last_error) count as the
 *     guest's stores. Returns SP_OK or a negative status.
 *  6. `i32 device_local(i32 addr, i32 len)` declares guest bytes [addr,
 *     addr+len) device-local (activations, KV cache): their authoritative
 *     copy may live on the accelerator between submits, and commands read
 *     and write them there (a discrete GPU keeps a mirror, uploaded once
 *     from the current bytes and counted in the residency stats). From the
 *     guest's view the bytes are undefined until it calls sync; its own
 *     stores need a flush (item 5) before the next submit. Every tensor of
 *     a command must lie wholly inside or wholly outside each device-local
 *     range (SP_E_BOUNDS otherwise). At most 16 ranges, overlapping neither
 *     each other nor a frozen range (SP_E_ALIAS). On a CPU, or where the
 *     host memory is the device memory, it changes nothing.
 *  7. `i32 sync(i32 addr, i32 len)` copies a sub-range of one device-local
 *     range from the accelerator back to guest memory, after everything
 *     submitted has finished; the guest may then read those bytes. A
 *     snapshot syncs every device-local range itself. Returns SP_OK or a
 *     negative status (SP_E_PARAM: not inside one device-local range).
 *
 * A command list in guest memory is:
 *
 *  1. a 16-byte sp_cmd_list_header: magic SP_CMD_LIST_MAGIC, version
 *     SP_ABI_VERSION, cmd_size = sizeof(sp_cmd), count, dropped = 0;
 *  2. immediately followed by `count` sp_cmd records (240 bytes each);
 *  3. list_bytes must equal 16 + count * 240 exactly.
 *
 * A tensor (sp_tensor) names bytes in guest memory: dtype, up to 4 extents
 * ne[0..3] (ne[0] innermost and contiguous; unused dims are 1) and byte
 * strides nb[0..2] for dims 1..3 (0 means packed). Quantized dtypes store
 * ne[0] elements per row as ne[0] / block_size blocks.
 *
 * Validation rules, checked for every command before any kernel runs:
 *
 *  1. Bounds: offset + extent lies inside committed memory, computed in 64
 *     bits with overflow checks. Every extent is >= 1 in every dimension.
 *  2. Types: dtype is known; offset and strides are multiples of the dtype's
 *     alignment; quantized rows hold a whole number of blocks.
 *  3. Shapes: the op's shape and dtype relations hold (see enum sp_op).
 *  4. Aliasing: a destination never overlaps the command list itself, never
 *     overlaps itself (rows may not overlap), and never overlaps a source of
 *     the same command, except the identical tensor for ops marked in-place.
 *     Overlap is judged on [offset, offset + extent) and is conservative.
 *  5. Commands run in list order; each sees the results of the ones before.
 *  6. flags, reserved fields and unused tensor slots must be zero.
 */
#ifndef SAMEPAGE_ABI_H
#define SAMEPAGE_ABI_H

#include <stdint.h>

#define SP_ABI_VERSION 1

/* The largest K of SP_OP_TOPK. */
#define SP_TOPK_MAX 1024
#define SP_CMD_LIST_MAGIC 0x4c435053u /* "SPCL" little-endian */
#define SP_MAX_SRC 4
#define SP_MAX_PARAMS 8

/* Element types. Block layouts follow GGUF/ggml. */
typedef enum sp_dtype {
  SP_DTYPE_NONE = 0, /* unused tensor slot */
  SP_DTYPE_F32 = 1,
  SP_DTYPE_F16 = 2,
  SP_DTYPE_BF16 = 3,
  SP_DTYPE_Q8_0 = 4, /* 32 elems: f16 scale + 32 x int8           (34 bytes) */
  SP_DTYPE_Q4_0 = 5, /* 32 elems: f16 scale + 16 bytes of nibbles  (18 bytes) */
  SP_DTYPE_Q4_1 = 6, /* 32 elems: f16 scale, f16 min + 16 bytes    (20 bytes) */
  SP_DTYPE_I32 = 7,
  /* The types of llama.cpp's "K-quant" and i-quant files (issue 15). The
   * K-quants pack 256 elements in a super-block with sub-block scales. */
  SP_DTYPE_Q5_0 = 8,    /* 32 elems: f16 d, 4 bytes of high bits, 16 bytes of nibbles (22 bytes) */
  SP_DTYPE_Q5_1 = 9,    /* 32 elems: f16 d, f16 m, 4 bytes high bits, 16 bytes       (24 bytes) */
  SP_DTYPE_Q2_K = 10,   /* 256 elems                                                 (84 bytes) */
  SP_DTYPE_Q3_K = 11,   /* 256 elems                                                 (110 bytes) */
  SP_DTYPE_Q4_K = 12,   /* 256 elems                                                 (144 bytes) */
  SP_DTYPE_Q5_K = 13,   /* 256 elems                                                 (176 bytes) */
  SP_DTYPE_Q6_K = 14,   /* 256 elems                                                 (210 bytes) */
  SP_DTYPE_IQ4_NL = 15, /* 32 elems: f16 d, 16 bytes of nibbles indexing a table     (18 bytes) */
  SP_DTYPE_IQ4_XS = 16, /* 256 elems: f16 d, scales, 128 bytes of nibbles            (136 bytes) */
  SP_DTYPE_COUNT
} sp_dtype;

/* Operations. Shapes use [ne0, ne1] = [columns, rows]. */
typedef enum sp_op {
  /* Does nothing; all tensor slots must be empty. */
  SP_OP_NOP = 0,
  /* dst[f32: N, M] = src1[f32: K, M] x src0[W: K, N]^T, i.e.
   * dst[m][n] = sum_k W[n][k] * X[m][k]. W is any weight dtype. */
  SP_OP_MATMUL = 1,
  /* dst = src0 + src1, all f32 of one shape (src1 may also be one row,
   * broadcast over rows). In place allowed (dst == src0). */
  SP_OP_ADD = 2,
  /* dst = src0 * src1, as SP_OP_ADD. */
  SP_OP_MUL = 3,
  /* dst = src0 * param[0] (f32 bits). In place allowed. */
  SP_OP_SCALE = 4,
  /* dst[f32: K, M] = rows src1[i32: M] of src0[W: K, V], dequantized.
   * Indices are checked when the op runs: an index outside 0..V-1 stops the
   * list with SP_E_BOUNDS before anything of this op is written. */
  SP_OP_GET_ROWS = 5,
  /* dst[f32: K, M] = src0[f32: K, M] / sqrt(mean(src0^2) + eps) * src1[f32: K]
   * per row; param[0] = eps (f32). In place allowed (dst == src0). */
  SP_OP_RMSNORM = 6,
  /* Rotary position embedding of src0[f32: D, H, T] into dst (same shape):
   * token t is at position src1[i32: T][t]. param[0] = n_rot (even, <= D:
   * dims rotated), param[1] = theta base (f32), param[2] = mode
   * (0: adjacent pairs, as Llama GGUFs; 2: NeoX halves), param[3] =
   * frequency scale (f32, 1 = none). src2 (optional) = f32 [n_rot / 2]
   * frequency factors dividing each frequency (Llama 3 rope scaling).
   * In place allowed (dst == src0). */
  SP_OP_ROPE = 7,
  /* Causal grouped-query attention. src0 = q[f32: D, Hq, T], src1 = k cache
   * [f16|f32: D, Hkv, C], src2 = v cache [same dtype and shape as k],
   * src3 = positions[i32: T]. Query t attends to cache rows 0..pos[t]
   * (pos[t] < C, checked when the op runs). dst[f32: D, Hq, T].
   * param[0] = scale (f32), Hq % Hkv == 0. param[1] = sliding window W
   * (u32; 0 = none): query t then attends to rows max(0, pos[t] - W + 1)
   * .. pos[t] only (Gemma 3's local layers, Mistral). With an f16 cache, q and then
   * the softmax probabilities are rounded to f16 before they meet k and v
   * (as ggml does), so results agree with llama.cpp's to summation noise. */
  SP_OP_ATTENTION = 8,
  /* Scatter rows: dst[X: K, R] row src1[i32: M][m] = src0[f32: K, M] row m,
   * converted to X in {f32, f16, bf16}. Indices checked when it runs, as
   * SP_OP_GET_ROWS. Used to append to a KV cache at positions held in guest
   * memory, so a decode step's list does not change between tokens. */
  SP_OP_SET_ROWS = 9,
  /* dst = silu(src0) * src1, all f32 of one shape. In place allowed. */
  SP_OP_SWIGLU = 10,
  /* dst = softmax(src0 * param[0]) over each row, f32. In place allowed. */
  SP_OP_SOFTMAX = 11,
  /* dst = src0 converted between f32, f16 and bf16 (same shape). */
  SP_OP_COPY = 12,
  /* dst[i32: M] = the index of the largest value in each row of src0[f32:
   * N, M]: the first one when several are equal; NaN is never chosen (a
   * row of NaN gives 0). Greedy decoding reads one integer per token
   * instead of a vocabulary of logits. */
  SP_OP_ARGMAX = 13,
  /* dst = gelu(src0) * src1, all f32 of one shape, with the tanh form of
   * GELU: gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (Gemma's
   * GeGLU feed-forward). In place allowed (dst == src0). */
  SP_OP_GEGLU = 14,
  /* dst = param[0] * tanh(src0 / param[0]), f32, param[0] = cap (f32, > 0):
   * soft-capping of logits or attention scores. In place allowed. */
  SP_OP_SOFTCAP = 15,
  /* dst[i32: K, M] = the indices of the K largest values of each row of
   * src0[f32: N, M], largest first; equal values in increasing index order
   * (-0 equals +0); NaN ranks below every number, so it is chosen only when
   * fewer than K numbers remain. 1 <= K <= min(N, SP_TOPK_MAX). A sampler
   * reads K integers a token (then their values with SP_OP_GET_ROWS over
   * the logits as [1, N] rows) instead of a vocabulary of logits. */
  SP_OP_TOPK = 16,
  SP_OP_COUNT
} sp_op;

/* Status codes returned by the "samepage" imports. */
typedef enum sp_status {
  SP_OK = 0,
  SP_E_LIST = -1,        /* malformed list header or length */
  SP_E_BOUNDS = -2,      /* offset/extent outside committed memory */
  SP_E_DTYPE = -3,       /* unknown dtype or dtype not allowed here */
  SP_E_SHAPE = -4,       /* zero extent, overflow, or op shape mismatch */
  SP_E_ALIAS = -5,       /* forbidden overlap */
  SP_E_OP = -6,          /* unknown op */
  SP_E_UNSUPPORTED = -7, /* valid, but the backend cannot run it */
  SP_E_PARAM = -8,       /* bad op parameter, flag or reserved field */
  SP_E_LIMIT = -9,       /* over a limit: commands, work, scratch, a full list */
  SP_E_ALIGN = -10,      /* misaligned offset or stride */
  SP_E_BACKEND = -11     /* the backend failed while running the list */
} sp_status;

typedef struct sp_tensor {
  uint32_t offset;   /* guest address of the first element */
  uint32_t dtype;    /* sp_dtype */
  uint32_t ne[4];    /* extents, innermost first; unused dims are 1 */
  uint32_t nb[3];    /* byte strides of dims 1..3, 0 = packed */
  uint32_t reserved; /* must be 0 */
} sp_tensor;         /* 40 bytes */

typedef struct sp_cmd {
  uint32_t op;                    /* sp_op */
  uint32_t flags;                 /* must be 0 */
  sp_tensor dst;                  /* written by the op */
  sp_tensor src[SP_MAX_SRC];      /* read by the op; unused slots all zero */
  uint32_t param[SP_MAX_PARAMS];  /* op parameters: u32, i32 or f32 bits */
} sp_cmd;                         /* 240 bytes */

typedef struct sp_cmd_list_header {
  uint32_t magic;    /* SP_CMD_LIST_MAGIC */
  uint16_t version;  /* SP_ABI_VERSION */
  uint16_t cmd_size; /* sizeof(sp_cmd) */
  uint32_t count;    /* number of sp_cmd records that follow */
  uint32_t dropped;  /* commands the guest's list builder could not fit
                        (its storage was full); must be 0: a list that lost
                        commands is refused with SP_E_LIMIT, never run
                        short. The guest SDK sets it (sp_list_push). */
} sp_cmd_list_header; /* 16 bytes */

_Static_assert(sizeof(sp_tensor) == 40, "sp_tensor is 40 bytes");
_Static_assert(sizeof(sp_cmd) == 240, "sp_cmd is 240 bytes");
_Static_assert(sizeof(sp_cmd_list_header) == 16, "header is 16 bytes");

#endif /* SAMEPAGE_ABI_H */
