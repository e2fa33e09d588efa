/*
 * vk_backend.h (private): what the parts of the Vulkan backend share: its
 * context, a binding's state, and the pieces each file provides.
 *   vk_backend.c    instance and device, adopt/grow/release, the tables,
 *                   the constructor sp_backend_vulkan_new;
 *   vk_import.c     checking a guest range before the driver sees it, and
 *                   importing it (VK_EXT_external_memory_host);
 *   vk_pipelines.c  the embedded SPIR-V shaders and their pipelines;
 *   vk_submit.c     supports, recording a list, submit, wait, replay;
 *   vk_residency.c  the memory layer on discrete cards: device-local
 *                   copies of frozen ranges (weights), shared by identity,
 *                   and mirrors of device-local ranges (activations, KV).
 *
 * How kernels reach guest memory: the committed prefix of the actor's
 * region is imported as one VkDeviceMemory and bound to one VkBuffer with
 * device-address usage. Every dispatch gets, in push constants, that
 * buffer's device address (guest address 0), the address of its command
 * (a copy of the validated sp_cmd) and the address of the binding's status
 * word. Shaders index guest memory from a base per tensor slot with guest
 * offsets (32-bit: guest memory is under 4 GiB): the import's address of
 * guest address 0, or, where the tensor lies wholly inside a device-local
 * range with a mirror or a frozen range with a device copy, the mirror's
 * (copy's) address of guest address 0 (vk_residency.c). With the memory
 * layer on, the command copies, the status word and scratch live in
 * device-local buffers too (vk_submit.c).
 */
#ifndef SP_VK_BACKEND_H
#define SP_VK_BACKEND_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <vulkan/vulkan.h>

#include "backend/backend.h"
#include "core/error.h"

/* The shaders (shaders/<name>.comp), one per op family. */
typedef enum sp_vk_shader {
  SP_VK_ELEMENTWISE, /* add, mul, scale, swiglu, geglu, softcap, copy */
  SP_VK_ROWS,        /* rmsnorm, softmax: a workgroup per row */
  SP_VK_ARGMAX,
  SP_VK_TOPK,
  SP_VK_ROPE,
  SP_VK_GET_ROWS,
  SP_VK_SET_ROWS,
  SP_VK_CHECK,       /* index checks before get_rows, set_rows, attention */
  SP_VK_MATMUL,      /* one pipeline per weight dtype (specialization constant) */
  SP_VK_ATTENTION,
  SP_VK_QUANTIZE,    /* a matmul's activations as int8 blocks, into scratch */
  SP_VK_SHADER_COUNT
} sp_vk_shader;

/* Tensor slots of a command: dst, then src[0..3]. */
#define SP_VK_SLOTS 5

/* Push constants of every shader (shaders/common.glsl, 72 bytes). */
typedef struct sp_vk_push {
  uint64_t slot_base[SP_VK_SLOTS]; /* per tensor slot, the device address of
                      guest address 0 where the tensor lies: the guest
                      import, or a mirror's or frozen copy's address minus
                      its range's guest start (mod 2^64; vk_residency.c) */
  uint64_t cmd;    /* device address of this command's sp_cmd copy */
  uint64_t status; /* device address of the binding's status word */
  uint64_t scratch; /* device address of the binding's scratch */
  uint32_t index;  /* the command's index in its list */
  uint32_t aux;    /* per shader: the check's kind, ... */
} sp_vk_push;
_Static_assert(sizeof(sp_vk_push) == 72, "sp_vk_push is common.glsl's PC block, 72 bytes");
_Static_assert(sizeof(sp_vk_push) <= 128, "push constants: Vulkan promises 128 bytes");
_Static_assert(offsetof(sp_vk_push, cmd) == 40 && offsetof(sp_vk_push, scratch) == 56 &&
                   offsetof(sp_vk_push, index) == 64 && offsetof(sp_vk_push, aux) == 68,
               "sp_vk_push's layout is common.glsl's PC block (std430: no padding)");

/* The status word a list's shaders share (shaders/common.glsl): code 0
 * while all is well; the first out-of-range index sets it, and every
 * later dispatch of the list returns at once. */
typedef struct sp_vk_status {
  uint32_t code;  /* 0, or SP_VK_STATUS_BOUNDS */
  uint32_t cmd;   /* the failing command's index */
  int32_t value;  /* the index found */
  uint32_t at;    /* its position in the index tensor */
  uint32_t limit; /* the bound it broke (exclusive) */
  uint32_t pad[3];
} sp_vk_status;
#define SP_VK_STATUS_BOUNDS 1u

/* A buffer of our own (command copies, the status word, scratch), with a
 * device address: host-visible and coherent (map set), or device-local
 * (map NULL) where the memory layer is on. */
typedef struct sp_vk_buffer {
  VkBuffer buf;
  VkDeviceMemory mem;
  void *map;
  VkDeviceAddress addr;
  VkDeviceSize size;
} sp_vk_buffer;

/* A device-local copy of a frozen range (vk_residency.c), refcounted. */
typedef struct sp_vk_copy sp_vk_copy;

/* The most frozen ranges a binding holds copies for (the ABI's limit). */
#define SP_VK_MAX_FROZEN 16

/* One frozen range of a binding. */
typedef struct sp_vk_frozen {
  uint64_t addr, len; /* guest bytes [addr, addr + len) */
  sp_vk_copy *copy;   /* NULL: kernels read guest memory */
  uint64_t base;      /* with a copy: pc.slot_base for a tensor inside the
                         range (the copy's address of guest 0) */
} sp_vk_frozen;

/* The most device-local ranges a binding mirrors (the runtime's limit). */
#define SP_VK_MAX_LOCAL 16

/* One device-local range of a binding (activations, the KV cache). */
typedef struct sp_vk_mirror {
  uint64_t addr, len; /* guest bytes [addr, addr + len) */
  sp_vk_copy *copy;   /* its device-local mirror (private, never NULL) */
  uint64_t base;      /* pc.slot_base for a tensor inside the range */
} sp_vk_mirror;

typedef struct sp_vk_ctx {
  VkInstance instance;
  VkPhysicalDevice phys;
  VkDevice dev;
  VkQueue queue;
  uint32_t queue_family;
  pthread_mutex_t queue_mu; /* vkQueueSubmit needs the queue to itself */
  VkPhysicalDeviceProperties props;
  VkPhysicalDeviceMemoryProperties mem_props;
  VkDeviceSize import_align;  /* minImportedHostPointerAlignment */
  VkDeviceSize max_alloc;     /* maxMemoryAllocationSize */
  bool unified;               /* a CPU or integrated device */
  bool device_float64;        /* shaderFloat64 */
  bool float64;               /* the shaders in use are the 64-bit-float ones
                                 (the CPU's bits); false: the _nof64 ones */
  bool cpu_device;            /* a CPU driver (lavapipe): the import is the
                                 host pointer itself, so a file mapped over
                                 guest pages later is what kernels read */
  uint32_t matmul_split;      /* 1: a workgroup per product output (GPUs);
                                 0: an invocation per output (CPU drivers) */
  PFN_vkGetMemoryHostPointerPropertiesEXT host_ptr_props;
  VkPipelineLayout layout;
  pthread_mutex_t pipe_mu;    /* pipelines are made on first use */
  VkPipeline pipes[SP_VK_SHADER_COUNT][SP_DTYPE_COUNT];
  VkShaderModule modules[SP_VK_SHADER_COUNT];
  uint32_t pipe_gen;          /* bumped when the pipelines are remade: a
                                 command buffer recorded before is stale */
  /* the memory layer (vk_residency.c) */
  bool residency;             /* frozen ranges get device-local copies: a
                                 discrete card with opts->residency */
  bool memory_budget;         /* VK_EXT_memory_budget (device_memory) */
  pthread_mutex_t res_mu;     /* guards the table and the stats below */
  sp_vk_copy **published;     /* copies shared under a nonzero identity */
  uint32_t n_published, cap_published;
  sp_residency_stats stats;
} sp_vk_ctx;

typedef struct sp_vk_binding {
  sp_memory_view view;
  /* the import of guest bytes [0, view.committed) */
  VkDeviceMemory guest_mem;
  VkBuffer guest_buf;
  VkDeviceAddress guest_addr;
  bool local;          /* the memory layer was on at adopt: cmds, scratch and
                          status_dev are device-local (vk_submit.c) */
  sp_vk_buffer cmds;   /* the list's sp_cmd copies, one per command; local:
                          written by vkCmdUpdateBuffer at the list's start */
  sp_vk_buffer status; /* sp_vk_status, host-visible: what wait() reads */
  sp_vk_buffer status_dev; /* local: the status word shaders use, zeroed at
                              the list's start, copied to status at its end */
  sp_vk_buffer scratch; /* quantized activations (shaders/quantize.comp) */
  VkCommandPool pool;
  VkCommandBuffer cb;
  VkFence fence;
  bool pending;        /* submitted, not yet waited for */
  bool recorded;       /* cb holds the previous list, replayable */
  uint32_t pipe_gen;   /* the context's pipe_gen when cb was recorded */
  sp_cmd *last;        /* the previous list (for messages and replay) */
  uint32_t last_count, last_cap;
  /* the memory layer (vk_residency.c) */
  sp_vk_frozen frozen[SP_VK_MAX_FROZEN];
  uint32_t n_frozen;
  sp_vk_mirror mirrors[SP_VK_MAX_LOCAL]; /* authoritative between syncs */
  uint32_t n_mirrors;
  VkCommandBuffer xfer_cb; /* one-shot copies into frozen copies (from pool) */
  VkFence xfer_fence;
} sp_vk_binding;

/* ---- vk_import.c ---- */

/* Checks guest bytes [base, base + len) before the driver sees them: base
 * and len are multiples of align, len is within max, and every page is
 * mapped readable and writable (the process's mappings). Errors name the
 * address and the reason. */
sp_error_t *sp_vk_check_host_range(const void *base, size_t len, size_t align, size_t max);
/* Imports the binding's committed bytes (after sp_vk_check_host_range),
 * replacing any earlier import. */
sp_error_t *sp_vk_import(sp_vk_ctx *c, sp_vk_binding *b);
/* Frees the binding's import. */
void sp_vk_unimport(sp_vk_ctx *c, sp_vk_binding *b);
/* A host-visible buffer with a device address. */
sp_error_t *sp_vk_buffer_new(sp_vk_ctx *c, VkDeviceSize size, sp_vk_buffer *out);
/* A device-local buffer with a device address, unmapped (map NULL), its
 * bytes undefined: only shaders and transfers reach it. */
sp_error_t *sp_vk_buffer_new_local(sp_vk_ctx *c, VkDeviceSize size, sp_vk_buffer *out);
/* A DEVICE_LOCAL memory type among bits, preferring one the host cannot
 * map; -1 when none. */
int32_t sp_vk_device_local_type(const sp_vk_ctx *c, uint32_t bits);
void sp_vk_buffer_free(sp_vk_ctx *c, sp_vk_buffer *b);

/* ---- vk_pipelines.c ---- */

/* Loads the shader modules and the pipeline layout. */
sp_error_t *sp_vk_pipelines_init(sp_vk_ctx *c);
/* The pipeline of shader s (variant: the weight dtype of matmul, else 0),
 * made on first use; VK_NULL_HANDLE with *err set on failure. */
VkPipeline sp_vk_pipeline(sp_vk_ctx *c, sp_vk_shader s, uint32_t variant, sp_error_t **err);
void sp_vk_pipelines_free(sp_vk_ctx *c);
/* Remakes the modules from the 64-bit-float shaders (float64 true, where
 * the device has them) or the _nof64 ones; pipelines are made again on
 * first use and recorded lists are recorded again. */
sp_error_t *sp_vk_pipelines_remake(sp_vk_ctx *c, bool float64);

/* ---- vk_residency.c ---- */

/* The memory layer, set on the backend while ctx->residency is on. */
extern const struct sp_backend_memory_i sp_vk_memory;
/* pc.slot_base for tensor t (validated): a mirror's base when t lies wholly
 * inside a device-local range that has one, a copy's when inside a frozen
 * range that has one, else guest memory's. */
uint64_t sp_vk_tensor_base(const sp_vk_binding *b, const sp_tensor *t);
/* Drops the binding's copies and mirrors (its work has finished) and its
 * copy objects. */
void sp_vk_frozen_release(sp_vk_ctx *c, sp_vk_binding *b);
/* Frees the table of shared copies (every binding has released its own). */
void sp_vk_residency_deinit(sp_vk_ctx *c);

/* ---- vk_backend.c ---- */

/* Waits for whatever the binding has in flight (it stays pending: its
 * status is kept for the wait() that reads it). */
sp_error_t *sp_vk_drain(sp_vk_ctx *c, sp_vk_binding *b);

/* ---- vk_submit.c ---- */

bool sp_vk_supports(void *vctx, const sp_cmd *cmd);
sp_error_t *sp_vk_submit(void *vctx, void *binding, const sp_cmd *cmds, uint32_t count, bool same);
sp_error_t *sp_vk_wait(void *vctx, void *binding);
const char *sp_vk_op_name(uint32_t op);

/* One global memory barrier: src_access by src_stage before dst_access by
 * dst_stage (transfers around a list, copies and mirrors). */
static inline void sp_vk_memory_barrier(VkCommandBuffer cb, VkPipelineStageFlags src_stage, VkAccessFlags src_access,
                                        VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
  VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER, .srcAccessMask = src_access,
                        .dstAccessMask = dst_access};
  vkCmdPipelineBarrier(cb, src_stage, dst_stage, 0, 1, &mb, 0, NULL, 0, NULL);
}

/* "vulkan: WHAT: VkResult" */
const char *sp_vk_result_name(VkResult r);

#define VK_TRY(call, ...)                                                   \
  do {                                                                      \
    VkResult r_ = (call);                                                   \
    if (r_ != VK_SUCCESS) {                                                 \
      char what_[256];                                                      \
      snprintf(what_, sizeof what_, __VA_ARGS__);                           \
      return sp_error_new("vulkan: %s: %s", what_, sp_vk_result_name(r_));  \
    }                                                                       \
  } while (0)

#endif
