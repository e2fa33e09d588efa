/*
 * vk_submit.c: a list on the Vulkan backend: supports, record, submit,
 * replay, wait.
 *
 * Each command is one dispatch of its op family's shader (vk_backend.h),
 * preceded for get_rows, set_rows and attention by a check dispatch that
 * reads the index tensor once and, on an index out of range, sets the
 * status word (the command, the position, the value). Every shader of the
 * list returns at once when the status word is set, so a bad index stops
 * the list before its command writes anything, as the CPU's does; the op
 * shaders check each index again where they use it and skip an index out
 * of range (the bytes may sit in a file mapping another process writes:
 * an address is never formed from an unchecked read).
 *
 * Each tensor is read and written through its slot's base (push constant
 * slot_base): its device-local range's mirror or its frozen range's copy
 * when it lies wholly inside one (vk_residency.c), else guest memory. A
 * freeze, flush, device_local or release that moves a copy or a mirror
 * makes the recorded command buffer stale (push constants are baked in).
 *
 * A global memory barrier separates consecutive dispatches, and a barrier
 * to the host ends the list, so the guest sees every write once wait()
 * returns. The command buffer is kept: a list the runtime calls the same
 * as the previous one is submitted again without recording.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk_backend.h"
#include "backend/vulkan/vk_rules.h"
#include "core/memory_budget.h"

#define SP_VK_MAX_GROUPS_X 65535u

const char *sp_vk_op_name(uint32_t op) {
  static const char *names[SP_OP_COUNT] = {"nop", "matmul", "add", "mul", "scale", "get_rows", "rmsnorm",
                                           "rope", "attention", "set_rows", "swiglu", "softmax", "copy", "argmax",
                                           "geglu", "softcap", "topk"};
  return op < SP_OP_COUNT ? names[op] : "unknown";
}

/* ---- supports: the plain-C rules (vk_rules.c) ---- */

bool sp_vk_supports(void *vctx, const sp_cmd *cmd) { return sp_vk_rules_supports(cmd); }

/* ---- recording ---- */

static uint64_t rows_of(const sp_tensor *t) { return (uint64_t)t->ne[1] * t->ne[2] * t->ne[3]; }

/* The workgroups a command needs (shaders compute the same count and
 * skip the rest of the grid), and its shader. 0 groups: nothing to run. */
static uint64_t plan(const sp_vk_ctx *c, const sp_cmd *cmd, sp_vk_shader *s, uint32_t *variant, int *check) {
  const sp_tensor *d = &cmd->dst;
  *variant = 0, *check = -1;
  switch (cmd->op) {
  case SP_OP_ADD:
  case SP_OP_MUL:
  case SP_OP_SCALE:
  case SP_OP_SWIGLU:
  case SP_OP_GEGLU:
  case SP_OP_SOFTCAP:
  case SP_OP_COPY: *s = SP_VK_ELEMENTWISE; return (rows_of(d) * d->ne[0] + 255) / 256;
  case SP_OP_RMSNORM:
  case SP_OP_SOFTMAX: *s = SP_VK_ROWS; return rows_of(d);
  case SP_OP_ARGMAX: *s = SP_VK_ARGMAX; return cmd->src[0].ne[1];
  case SP_OP_TOPK: *s = SP_VK_TOPK; return cmd->src[0].ne[1];
  case SP_OP_ROPE: *s = SP_VK_ROPE; return (uint64_t)d->ne[1] * d->ne[2];
  case SP_OP_GET_ROWS: *s = SP_VK_GET_ROWS, *check = 0; return d->ne[1];
  case SP_OP_SET_ROWS: *s = SP_VK_SET_ROWS, *check = 1; return cmd->src[0].ne[1];
  case SP_OP_MATMUL: /* shaders/matmul.comp, SPLIT */
    *s = SP_VK_MATMUL, *variant = cmd->src[0].dtype;
    return c->matmul_split ? (uint64_t)d->ne[0] * d->ne[1] : (uint64_t)(d->ne[0] + 63) / 64 * d->ne[1];
  case SP_OP_ATTENTION: *s = SP_VK_ATTENTION, *check = 2; return (uint64_t)d->ne[1] * d->ne[2];
  default: return 0;
  }
}

/* Activation blocks a product quantizes into scratch (quantized weights
 * only), 0 for any other command. */
static uint64_t quantized_blocks(const sp_cmd *cmd) {
  if (cmd->op != SP_OP_MATMUL || cmd->src[0].dtype <= SP_DTYPE_BF16) return 0;
  return (uint64_t)cmd->src[1].ne[0] / 32 * cmd->src[1].ne[1];
}
#define SP_VK_QBLOCK_BYTES 48 /* shaders/quantize.comp: 12 words a block */

/* The shaders' writes so far, before dst_access by dst_stage. */
static void barrier(VkCommandBuffer cb, VkPipelineStageFlags dst_stage, VkAccessFlags dst_access) {
  sp_vk_memory_barrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT, dst_stage, dst_access);
}

static void dispatch(VkCommandBuffer cb, uint64_t groups) {
  uint32_t x = groups < SP_VK_MAX_GROUPS_X ? (uint32_t)groups : SP_VK_MAX_GROUPS_X;
  uint32_t y = (uint32_t)((groups + x - 1) / x);
  vkCmdDispatch(cb, x, y, 1);
}

/* One dispatch of shader s over `groups` workgroups, after a barrier
 * from whatever the list wrote before it. */
static sp_error_t *emit(sp_vk_ctx *c, sp_vk_binding *b, sp_vk_shader s, uint32_t variant, const sp_vk_push *pc,
                        uint64_t groups, bool *first) {
  sp_error_t *err = NULL;
  VkPipeline p = sp_vk_pipeline(c, s, variant, &err);
  if (!p) return err;
  if (!*first) barrier(b->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
  *first = false;
  vkCmdBindPipeline(b->cb, VK_PIPELINE_BIND_POINT_COMPUTE, p);
  vkCmdPushConstants(b->cb, c->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, sizeof *pc, pc);
  dispatch(b->cb, groups);
  return NULL;
}

/* cmds[i]'s dispatches: the activations' quantization (products with
 * quantized weights), the index check (get_rows, set_rows, attention),
 * then the op. */
static sp_error_t *record_cmd(sp_vk_ctx *c, sp_vk_binding *b, const sp_cmd *cmd, uint32_t i, bool *first) {
  sp_vk_shader s;
  uint32_t variant;
  int check;
  uint64_t groups = plan(c, cmd, &s, &variant, &check), qblocks = quantized_blocks(cmd);
  if (!groups) return NULL;
  sp_vk_push pc = {.cmd = b->cmds.addr + (uint64_t)i * sizeof(sp_cmd),
                   .status = b->local ? b->status_dev.addr : b->status.addr, .scratch = b->scratch.addr, .index = i};
  /* each tensor from where it lies: a mirror, a frozen copy, guest memory */
  pc.slot_base[0] = sp_vk_tensor_base(b, &cmd->dst);
  for (int k = 1; k < SP_VK_SLOTS; k++) pc.slot_base[k] = sp_vk_tensor_base(b, &cmd->src[k - 1]);
  sp_error_t *err = qblocks ? emit(c, b, SP_VK_QUANTIZE, 0, &pc, (qblocks + 63) / 64, first) : NULL;
  if (!err && check >= 0) {
    sp_vk_push pk = pc;
    pk.aux = (uint32_t)check;
    err = emit(c, b, SP_VK_CHECK, 0, &pk, 1, first);
  }
  if (!err && cmd->op == SP_OP_ROPE) { /* theta's factor, as the CPU computes it (shaders/rope.comp) */
    float base, ts;
    memcpy(&base, &cmd->param[1], sizeof base);
    ts = powf(base, -2.0f / (float)cmd->param[0]);
    memcpy(&pc.aux, &ts, sizeof ts);
  }
  return err ? err : emit(c, b, s, variant, &pc, groups, first);
}

/* A device-local binding's list opens by writing its command words into
 * the device-local copy (vkCmdUpdateBuffer: the words travel inside the
 * command buffer, so a replay uploads the same ones again) and zeroing the
 * status word, before any shader reads either. */
static void upload_cmds(sp_vk_binding *b, const sp_cmd *cmds, uint32_t count) {
  const uint8_t *bytes = (const uint8_t *)cmds;
  VkDeviceSize total = (VkDeviceSize)count * sizeof(sp_cmd);
  for (VkDeviceSize at = 0; at < total; at += 65536) { /* vkCmdUpdateBuffer's most per call */
    VkDeviceSize n = total - at < 65536 ? total - at : 65536;
    vkCmdUpdateBuffer(b->cb, b->cmds.buf, at, n, bytes + at);
  }
  vkCmdFillBuffer(b->cb, b->status_dev.buf, 0, sizeof(sp_vk_status), 0);
  sp_vk_memory_barrier(b->cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                       VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT);
}

/* ... and closes by copying the status word where wait() reads it. */
static void download_status(sp_vk_binding *b) {
  sp_vk_memory_barrier(b->cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT,
                       VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT);
  VkBufferCopy region = {.srcOffset = 0, .dstOffset = 0, .size = sizeof(sp_vk_status)};
  vkCmdCopyBuffer(b->cb, b->status_dev.buf, b->status.buf, 1, &region);
  sp_vk_memory_barrier(b->cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT, VK_PIPELINE_STAGE_HOST_BIT,
                       VK_ACCESS_HOST_READ_BIT);
}

static sp_error_t *record(sp_vk_ctx *c, sp_vk_binding *b, const sp_cmd *cmds, uint32_t count) {
  VK_TRY(vkResetCommandBuffer(b->cb, 0), "resetting the command buffer");
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  VK_TRY(vkBeginCommandBuffer(b->cb, &bi), "recording a list");
  if (b->local) upload_cmds(b, cmds, count);
  bool first = true;
  for (uint32_t i = 0; i < count; i++) {
    sp_error_t *err = record_cmd(c, b, &cmds[i], i, &first);
    if (err) {
      vkEndCommandBuffer(b->cb);
      return sp_error_wrap(err, "vulkan: cmd[%u] (%s)", i, sp_vk_op_name(cmds[i].op));
    }
  }
  /* the guest reads what the list wrote once wait() returns */
  barrier(b->cb, VK_PIPELINE_STAGE_HOST_BIT, VK_ACCESS_HOST_READ_BIT | VK_ACCESS_HOST_WRITE_BIT);
  if (b->local) download_status(b);
  VK_TRY(vkEndCommandBuffer(b->cb), "recording a list");
  return NULL;
}

/* A buffer of our own: device-local where the binding is, else host-visible. */
static sp_error_t *own_buffer(sp_vk_ctx *c, const sp_vk_binding *b, VkDeviceSize size, sp_vk_buffer *out) {
  return b->local ? sp_vk_buffer_new_local(c, size, out) : sp_vk_buffer_new(c, size, out);
}

/* Room for count commands in the binding's copy of the list. */
static sp_error_t *reserve_cmds(sp_vk_ctx *c, sp_vk_binding *b, uint32_t count) {
  VkDeviceSize need = (VkDeviceSize)count * sizeof(sp_cmd);
  if (b->cmds.buf && b->cmds.size >= need) return NULL;
  sp_vk_buffer_free(c, &b->cmds);
  VkDeviceSize size = need < 64 * sizeof(sp_cmd) ? 64 * sizeof(sp_cmd) : need * 2;
  return own_buffer(c, b, size, &b->cmds);
}

/* Scratch for the list's quantized activations, within the binding's
 * budget (the view's host_budget, else the most any actor's share may be:
 * SP_E_LIMIT, naming the need, before anything runs). */
static sp_error_t *reserve_scratch(sp_vk_ctx *c, sp_vk_binding *b, const sp_cmd *cmds, uint32_t count) {
  uint64_t need = 0;
  uint32_t at = 0;
  for (uint32_t i = 0; i < count; i++) {
    uint64_t n = quantized_blocks(&cmds[i]) * SP_VK_QBLOCK_BYTES;
    if (n > need) need = n, at = i;
  }
  if (!need) return NULL;
  uint64_t budget = b->view.host_budget ? b->view.host_budget : SP_BUDGET_SCRATCH_MAX;
  if (need > budget) { /* worded as every backend words it (memory_budget.h) */
    char msg[256];
    sp_budget_scratch_message("matmul", need, budget, msg, sizeof msg);
    return sp_error_with_status(SP_E_LIMIT, "cmd[%u]: %s", at, msg);
  }
  if (b->scratch.buf && b->scratch.size >= need) return NULL;
  sp_vk_buffer_free(c, &b->scratch);
  return own_buffer(c, b, need, &b->scratch);
}

static sp_error_t *remember(sp_vk_binding *b, const sp_cmd *cmds, uint32_t count) {
  if (count > b->last_cap) {
    sp_cmd *more = realloc(b->last, (size_t)count * sizeof *more);
    if (!more) return sp_error_new("vulkan: out of memory keeping a list of %u commands", count);
    b->last = more, b->last_cap = count;
  }
  memcpy(b->last, cmds, (size_t)count * sizeof *cmds);
  b->last_count = count;
  return NULL;
}

/* ---- submit and wait ---- */

sp_error_t *sp_vk_submit(void *vctx, void *binding, const sp_cmd *cmds, uint32_t count, bool same) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  if (b->pending) {
    sp_error_t *err = sp_vk_wait(vctx, binding);
    if (err) sp_error_free(err); /* reported by the wait that was owed it */
  }
  if (!b->guest_buf) /* a grow failed, and importing the old range again failed too */
    return sp_error_new("vulkan: guest memory at %p is not imported (a grow failed); nothing runs", (void *)b->view.base);
  bool replay = same && b->recorded && count == b->last_count && b->pipe_gen == c->pipe_gen;
  if (!replay) {
    b->recorded = false;
    sp_error_t *err = reserve_cmds(c, b, count);
    if (!err) err = reserve_scratch(c, b, cmds, count);
    if (!err) err = remember(b, cmds, count);
    if (err) return err;
    if (!b->local) memcpy(b->cmds.map, cmds, (size_t)count * sizeof *cmds);
    if ((err = record(c, b, cmds, count))) return err;
    b->recorded = true, b->pipe_gen = c->pipe_gen;
  }
  memset(b->status.map, 0, sizeof(sp_vk_status));
  VK_TRY(vkResetFences(c->dev, 1, &b->fence), "resetting a fence");
  VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &b->cb};
  pthread_mutex_lock(&c->queue_mu);
  VkResult r = vkQueueSubmit(c->queue, 1, &si, b->fence);
  pthread_mutex_unlock(&c->queue_mu);
  if (r != VK_SUCCESS) return sp_error_new("vulkan: submitting a list of %u commands: %s", count, sp_vk_result_name(r));
  b->pending = true;
  return NULL;
}

/* The finished list's error from its status word, NULL when it all ran. */
static sp_error_t *status_error(const sp_vk_binding *b) {
  sp_vk_status st;
  memcpy(&st, b->status.map, sizeof st);
  if (!st.code) return NULL;
  const sp_cmd *cmd = st.cmd < b->last_count ? &b->last[st.cmd] : NULL;
  return sp_error_with_status(SP_E_BOUNDS, "cmd[%u]: %s: index [%u] = %d is outside 0..%u", st.cmd,
                              cmd ? sp_vk_op_name(cmd->op) : "?", st.at, st.value, st.limit ? st.limit - 1 : 0);
}

sp_error_t *sp_vk_wait(void *vctx, void *binding) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  if (!b->pending) return NULL;
  VkResult r = vkWaitForFences(c->dev, 1, &b->fence, VK_TRUE, UINT64_MAX);
  b->pending = false;
  if (r != VK_SUCCESS) {
    b->recorded = false;
    return sp_error_new("vulkan: waiting for a list: %s", sp_vk_result_name(r));
  }
  return status_error(b);
}
