/*
 * vk_residency.c: the Vulkan backend's memory layer (backend.h, layer 2):
 * device-local copies of frozen ranges (weights) on discrete cards.
 *
 * Guest memory is imported host memory, which a discrete card reads over
 * its bus at every use. freeze() copies a frozen range into a buffer of a
 * DEVICE_LOCAL memory type (vkCmdCopyBuffer from the guest's import, one
 * command buffer waited for), and every later command whose weight operand
 * (matmul's and get_rows' src0) lies wholly inside the range reads the copy:
 * the push constant wbase is set so that wbase + guest offset addresses the
 * copy (vk_submit.c, shaders/common.glsl's wld_*). Every other tensor, and a
 * weight reaching past the range, is read from guest memory as before.
 *
 * Copies are shared among the backend's bindings by content identity, as
 * the CUDA backend's are (resident_cache.h): a freeze of an identity
 * another binding holds takes a reference instead of copying, and the last
 * holder frees the copy. A shared copy is never written: a binding that
 * flushes part of it gets a copy of its own first (copy-on-flush). The
 * table and the residency stats are guarded by ctx->res_mu; copies are made
 * outside it.
 *
 * Two rules keep a list from reading a stale or freed copy: before a copy
 * is written or a reference dropped, the binding's own work has finished
 * (only holders' lists read a copy, so the last holder frees it after
 * everything that read it); and a command buffer recorded with another
 * copy's address (push constants are baked in) is recorded again.
 *
 * Device-local ranges (activations, the KV cache, logits) get mirrors:
 * device_local() makes a DEVICE_LOCAL buffer and uploads the range's guest
 * bytes once; from then on every command's tensor inside the range is read
 * and written in the mirror (pc.slot_base), and guest memory there is stale
 * until sync() copies the mirror's bytes back (after the binding's work has
 * finished). local_zero() zeroes the mirror alone; flush() uploads bytes the
 * guest rewrote. A mirror is the binding's own, never shared; release frees
 * it. Where the device is short, the range stays in guest memory (warned).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk_backend.h"
#include "core/clock.h"
#include "core/dtype.h"

/* A copy keeps its guest bytes' address modulo this, so that every load a
 * shader makes from it is aligned as the same load from guest memory. */
#define SP_VK_COPY_ALIGN 256u

struct sp_vk_copy {
  VkBuffer buf;
  VkDeviceMemory mem;
  VkDeviceAddress addr; /* the buffer's device address */
  uint64_t pad;         /* the range's bytes start at addr + pad (guest addr mod SP_VK_COPY_ALIGN) */
  uint64_t len;         /* the range's bytes */
  uint64_t size;        /* pad + len: the device bytes held */
  uint64_t identity;    /* 0: private; else published in the ctx's table */
  uint32_t refs;        /* bindings holding it */
};

static void warn_short(uint64_t len, const char *why) {
  fprintf(stderr, "samepage: vulkan: no device memory for a %.1f MiB resident copy (%s); reading it from guest "
          "memory instead\n", len / 1048576.0, why);
}

/* ---- device-local buffers ---- */

static void buffer_free(sp_vk_ctx *c, sp_vk_copy *k) {
  if (k->buf) vkDestroyBuffer(c->dev, k->buf, NULL);
  if (k->mem) vkFreeMemory(c->dev, k->mem, NULL);
  free(k);
}

/* k's buffer of k->size bytes; false (with why) when the device has no room. */
static bool buffer_make(sp_vk_ctx *c, sp_vk_copy *k, const char **why) {
  VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = k->size,
                           .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT |
                                    VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                           .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
  if (c->max_alloc && k->size > c->max_alloc) return *why = "over the largest allocation", false;
  if (vkCreateBuffer(c->dev, &bi, NULL, &k->buf) != VK_SUCCESS) return *why = "vkCreateBuffer", false;
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(c->dev, k->buf, &req);
  int32_t type = sp_vk_device_local_type(c, req.memoryTypeBits);
  if (type < 0) return *why = "no device-local memory type", false;
  VkMemoryAllocateFlagsInfo flags = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
                                     .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT};
  VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .pNext = &flags,
                             .allocationSize = req.size, .memoryTypeIndex = (uint32_t)type};
  VkResult r = vkAllocateMemory(c->dev, &ai, NULL, &k->mem);
  if (r != VK_SUCCESS) return *why = sp_vk_result_name(r), false;
  if (vkBindBufferMemory(c->dev, k->buf, k->mem, 0) != VK_SUCCESS) return *why = "vkBindBufferMemory", false;
  VkBufferDeviceAddressInfo da = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = k->buf};
  k->addr = vkGetBufferDeviceAddress(c->dev, &da);
  if (!k->addr) return *why = "no device address", false;
  return true;
}

/* A private copy (one reference) with undefined bytes for a range of len
 * bytes at guest address addr, or NULL (warned) when the device is short. */
static sp_vk_copy *copy_new(sp_vk_ctx *c, uint64_t addr, uint64_t len) {
  sp_vk_copy *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->pad = addr % SP_VK_COPY_ALIGN, k->len = len, k->size = k->pad + len, k->refs = 1;
  const char *why = NULL;
  if (!buffer_make(c, k, &why)) {
    warn_short(len, why);
    buffer_free(c, k);
    return NULL;
  }
  pthread_mutex_lock(&c->res_mu);
  c->stats.bytes += k->size;
  pthread_mutex_unlock(&c->res_mu);
  return k;
}

/* ---- the table of shared copies (under res_mu) ---- */

static sp_vk_copy *find_locked(const sp_vk_ctx *c, uint64_t identity, uint64_t len, uint64_t pad) {
  for (uint32_t i = 0; i < c->n_published; i++) {
    sp_vk_copy *k = c->published[i];
    if (k->identity == identity && k->len == len && k->pad == pad) return k;
  }
  return NULL;
}

static void withdraw_locked(sp_vk_ctx *c, sp_vk_copy *k) {
  for (uint32_t i = 0; i < c->n_published; i++)
    if (c->published[i] == k) {
      c->published[i] = c->published[--c->n_published];
      break;
    }
  k->identity = 0;
}

static void take_locked(sp_vk_ctx *c, sp_vk_copy *k) {
  k->refs++;
  c->stats.shared_hits++;
  c->stats.shared_bytes += k->size;
}

/* A reference to the published copy of identity for a range of len bytes
 * at guest address addr, or NULL. */
static sp_vk_copy *acquire(sp_vk_ctx *c, uint64_t identity, uint64_t addr, uint64_t len) {
  pthread_mutex_lock(&c->res_mu);
  sp_vk_copy *k = find_locked(c, identity, len, addr % SP_VK_COPY_ALIGN);
  if (k) take_locked(c, k);
  pthread_mutex_unlock(&c->res_mu);
  return k;
}

/* Drops one reference; the last frees the buffer. NULL is ignored. The
 * caller's work reading k has finished. */
static void copy_release(sp_vk_ctx *c, sp_vk_copy *k) {
  if (!k) return;
  pthread_mutex_lock(&c->res_mu);
  bool last = --k->refs == 0;
  if (last && k->identity) withdraw_locked(c, k);
  if (last) c->stats.bytes -= k->size;
  else c->stats.shared_bytes -= k->size;
  pthread_mutex_unlock(&c->res_mu);
  if (last) buffer_free(c, k);
}

/* Publishes private copy k, which holds identity's bytes. If another
 * binding published the same meanwhile, theirs is taken and k dropped. */
static sp_vk_copy *publish(sp_vk_ctx *c, sp_vk_copy *k, uint64_t identity) {
  pthread_mutex_lock(&c->res_mu);
  sp_vk_copy *theirs = find_locked(c, identity, k->len, k->pad);
  if (theirs) take_locked(c, theirs);
  bool room = theirs || c->n_published < c->cap_published;
  if (!room) {
    uint32_t cap = c->cap_published ? c->cap_published * 2 : 8;
    sp_vk_copy **grown = realloc(c->published, cap * sizeof *grown);
    if (grown) c->published = grown, c->cap_published = cap, room = true;
  }
  if (!theirs && room) k->identity = identity, c->published[c->n_published++] = k;
  pthread_mutex_unlock(&c->res_mu);
  if (!theirs) return k; /* published, or private when the table could not grow */
  copy_release(c, k);
  return theirs;
}

void sp_vk_residency_deinit(sp_vk_ctx *c) {
  free(c->published);
  c->published = NULL;
  c->n_published = c->cap_published = 0;
}

/* ---- copies on the queue ---- */

/* One buffer-to-buffer copy of a transfer; src VK_NULL_HANDLE: zeroes
 * region.size bytes of dst at region.dstOffset (both multiples of 4). */
typedef struct vk_xfer {
  VkBuffer src, dst;
  VkBufferCopy region;
} vk_xfer;

static sp_error_t *xfer_objects(sp_vk_ctx *c, sp_vk_binding *b) {
  if (b->xfer_cb) return NULL;
  VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = b->pool,
                                    .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1};
  VK_TRY(vkAllocateCommandBuffers(c->dev, &ai, &b->xfer_cb), "a command buffer for resident copies");
  VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VK_TRY(vkCreateFence(c->dev, &fi, NULL, &b->xfer_fence), "a fence for resident copies");
  return NULL;
}

static sp_error_t *xfer_record(VkCommandBuffer cb, const vk_xfer *x, uint32_t n) {
  VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                 .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
  VK_TRY(vkBeginCommandBuffer(cb, &bi), "recording a resident copy");
  const VkPipelineStageFlags both = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  const VkAccessFlags rw = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  sp_vk_memory_barrier(cb, both, rw, VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
  for (uint32_t i = 0; i < n; i++) {
    if (i) /* a later copy may overwrite part of an earlier one's bytes */
      sp_vk_memory_barrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                           VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT);
    if (x[i].src) vkCmdCopyBuffer(cb, x[i].src, x[i].dst, 1, &x[i].region);
    else vkCmdFillBuffer(cb, x[i].dst, x[i].region.dstOffset, x[i].region.size, 0);
  }
  /* every later submission on the queue (lists, copies) sees the bytes,
   * and so does the host (a sync's guest bytes) once the fence is waited */
  sp_vk_memory_barrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT,
                       both | VK_PIPELINE_STAGE_HOST_BIT,
                       VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                           VK_ACCESS_TRANSFER_WRITE_BIT | VK_ACCESS_HOST_READ_BIT);
  VK_TRY(vkEndCommandBuffer(cb), "recording a resident copy");
  return NULL;
}

/* Runs copies x[0..n) in order on the queue and waits for them; counted
 * in the residency stats: mirror, a device-local transfer (its bytes);
 * else one frozen copy. */
static sp_error_t *transfer_as(sp_vk_ctx *c, sp_vk_binding *b, const vk_xfer *x, uint32_t n, bool mirror) {
  sp_error_t *err = xfer_objects(c, b);
  if (err) return err;
  double t0 = sp_now_ms();
  VK_TRY(vkResetCommandBuffer(b->xfer_cb, 0), "resetting the copy command buffer");
  if ((err = xfer_record(b->xfer_cb, x, n))) return err;
  VK_TRY(vkResetFences(c->dev, 1, &b->xfer_fence), "resetting a fence");
  VkSubmitInfo si = {.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &b->xfer_cb};
  pthread_mutex_lock(&c->queue_mu);
  VkResult r = vkQueueSubmit(c->queue, 1, &si, b->xfer_fence);
  pthread_mutex_unlock(&c->queue_mu);
  VK_TRY(r, "submitting a resident copy");
  VK_TRY(vkWaitForFences(c->dev, 1, &b->xfer_fence, VK_TRUE, UINT64_MAX), "waiting for a resident copy");
  pthread_mutex_lock(&c->res_mu);
  if (mirror) {
    c->stats.transfers++, c->stats.transfer_ms += sp_now_ms() - t0;
    for (uint32_t i = 0; i < n; i++) c->stats.transfer_bytes += x[i].region.size;
  } else {
    c->stats.copies++, c->stats.ms += sp_now_ms() - t0;
  }
  pthread_mutex_unlock(&c->res_mu);
  return NULL;
}

static sp_error_t *transfer(sp_vk_ctx *c, sp_vk_binding *b, const vk_xfer *x, uint32_t n) {
  return transfer_as(c, b, x, n, false);
}

/* Guest bytes [addr, addr + len) into copy k of the range starting at
 * range_addr. */
static sp_error_t *upload(sp_vk_ctx *c, sp_vk_binding *b, sp_vk_copy *k, uint64_t range_addr, uint64_t addr,
                          uint64_t len) {
  vk_xfer x = {b->guest_buf, k->buf, {.srcOffset = addr, .dstOffset = k->pad + (addr - range_addr), .size = len}};
  sp_error_t *err = transfer(c, b, &x, 1);
  return err ? sp_error_wrap(err, "vulkan: copying %llu frozen bytes at 0x%llx", (unsigned long long)len,
                             (unsigned long long)addr)
             : NULL;
}

/* ---- a binding's frozen ranges ---- */

/* The frozen range holding [addr, addr + len) (exactly, when exact). */
static sp_vk_frozen *frozen_of(sp_vk_binding *b, uint64_t addr, uint64_t len, bool exact) {
  for (uint32_t i = 0; i < b->n_frozen; i++) {
    sp_vk_frozen *f = &b->frozen[i];
    if (exact ? addr == f->addr && len == f->len : addr >= f->addr && addr + len <= f->addr + f->len) return f;
  }
  return NULL;
}

/* Points kernels at copy k for f's bytes (NULL: guest memory). A command
 * buffer recorded with another address is recorded again. */
static void point_at(sp_vk_binding *b, sp_vk_frozen *f, sp_vk_copy *k) {
  uint64_t base = k ? k->addr + k->pad - f->addr : 0; /* mod 2^64: the shader adds a guest offset */
  if (k != f->copy || base != f->base) b->recorded = false;
  f->copy = k, f->base = base;
}

uint64_t sp_vk_tensor_base(const sp_vk_binding *b, const sp_tensor *t) {
  const sp_dtype_info *info = sp_dtype_get(t->dtype);
  if (!info || !t->ne[0] || !t->ne[1] || !t->ne[2] || !t->ne[3]) return b->guest_addr; /* absent or empty */
  uint64_t extent = sp_dtype_row_bytes(info, t->ne[0]);
  for (int d = 1; d < 4; d++) extent += (uint64_t)(t->ne[d] - 1) * t->nb[d - 1];
  uint64_t lo = t->offset, hi = lo + extent;
  for (uint32_t i = 0; i < b->n_mirrors; i++) { /* the validator: wholly inside or outside */
    const sp_vk_mirror *m = &b->mirrors[i];
    if (lo >= m->addr && hi <= m->addr + m->len) return m->base;
  }
  for (uint32_t i = 0; i < b->n_frozen; i++) {
    const sp_vk_frozen *f = &b->frozen[i];
    if (f->copy && lo >= f->addr && hi <= f->addr + f->len) return f->base;
  }
  return b->guest_addr;
}

/* A copy only this binding holds, with the bytes of k (which it held;
 * keep false: undefined bytes, the caller rewrites them all): k itself,
 * withdrawn from the table, when nobody else holds it; else a new one, and
 * the reference on k dropped. *out is NULL when the device is short (k is
 * then still held). */
static sp_error_t *make_private(sp_vk_ctx *c, sp_vk_binding *b, sp_vk_copy *k, uint64_t range_addr, bool keep,
                                sp_vk_copy **out) {
  pthread_mutex_lock(&c->res_mu);
  bool alone = k->refs == 1;
  if (alone && k->identity) withdraw_locked(c, k);
  pthread_mutex_unlock(&c->res_mu);
  *out = alone ? k : copy_new(c, range_addr, k->len);
  if (alone || !*out) return NULL;
  if (!keep) {
    copy_release(c, k);
    return NULL;
  }
  vk_xfer x = {k->buf, (*out)->buf, {.srcOffset = 0, .dstOffset = 0, .size = k->size}};
  sp_error_t *err = transfer(c, b, &x, 1);
  if (err) {
    copy_release(c, *out);
    *out = NULL;
    return sp_error_wrap(err, "vulkan: duplicating a shared %.1f MiB resident copy", k->len / 1048576.0);
  }
  copy_release(c, k);
  return NULL;
}

/* Guest bytes [addr, addr + len) of frozen range f changed (flush, identity
 * 0) or the whole range was declared again (a restore, under identity):
 * f's copy is made to hold them. A copy held under the same identity is
 * kept; another binding's copy of it is taken; else the binding's own copy
 * (copy-on-flush when shared) is written. The binding's work has finished. */
static sp_error_t *refresh(sp_vk_ctx *c, sp_vk_binding *b, sp_vk_frozen *f, uint64_t addr, uint64_t len,
                           uint64_t identity) {
  if (addr != f->addr || len != f->len) identity = 0; /* a part cannot carry the whole's name */
  if (identity && f->copy && f->copy->identity == identity) {
    pthread_mutex_lock(&c->res_mu);
    c->stats.shared_hits++; /* a restore found its bytes already on the device */
    pthread_mutex_unlock(&c->res_mu);
    return NULL;
  }
  sp_vk_copy *theirs = identity ? acquire(c, identity, f->addr, f->len) : NULL;
  if (theirs) {
    copy_release(c, f->copy);
    point_at(b, f, theirs);
    return NULL;
  }
  if (!f->copy) return NULL; /* guest memory: already current */
  sp_vk_copy *mine = NULL;
  bool whole = addr == f->addr && len == f->len;
  sp_error_t *err = make_private(c, b, f->copy, f->addr, !whole, &mine);
  if (err) return err;
  if (!mine) { /* no room for a copy of its own: read guest memory */
    copy_release(c, f->copy);
    point_at(b, f, NULL);
    return NULL;
  }
  point_at(b, f, mine);
  err = upload(c, b, mine, f->addr, addr, len);
  if (!err && identity) point_at(b, f, publish(c, mine, identity));
  return err;
}

/* ---- device-local ranges: mirrors ---- */

/* The mirror holding [addr, addr + len), or NULL. */
static sp_vk_mirror *mirror_of(sp_vk_binding *b, uint64_t addr, uint64_t len) {
  for (uint32_t i = 0; i < b->n_mirrors; i++) {
    sp_vk_mirror *m = &b->mirrors[i];
    if (addr >= m->addr && addr + len <= m->addr + m->len) return m;
  }
  return NULL;
}

/* A mirror's buffer (a private copy object, counted as local bytes), or
 * NULL (warned) when the device is short. */
static sp_vk_copy *mirror_new(sp_vk_ctx *c, uint64_t addr, uint64_t len) {
  sp_vk_copy *k = calloc(1, sizeof *k);
  if (!k) return NULL;
  k->pad = addr % SP_VK_COPY_ALIGN, k->len = len, k->size = k->pad + len, k->refs = 1;
  const char *why = NULL;
  if (!buffer_make(c, k, &why)) {
    fprintf(stderr, "samepage: vulkan: no device memory for a %.1f MiB device-local mirror (%s); computing on "
            "guest memory there instead\n", len / 1048576.0, why);
    buffer_free(c, k);
    return NULL;
  }
  pthread_mutex_lock(&c->res_mu);
  c->stats.local_bytes += k->size;
  pthread_mutex_unlock(&c->res_mu);
  return k;
}

static void mirror_free(sp_vk_ctx *c, sp_vk_copy *k) {
  pthread_mutex_lock(&c->res_mu);
  c->stats.local_bytes -= k->size;
  pthread_mutex_unlock(&c->res_mu);
  buffer_free(c, k);
}

/* Guest bytes [addr, addr + len) of mirror m to the device (up) or back
 * to guest memory (down); the binding's work has finished. */
static sp_error_t *mirror_move(sp_vk_ctx *c, sp_vk_binding *b, const sp_vk_mirror *m, uint64_t addr, uint64_t len,
                               bool up) {
  if (!b->guest_buf) /* a grow failed, and importing the old range again failed too */
    return sp_error_new("vulkan: guest memory at %p is not imported (a grow failed); device-local bytes at 0x%llx "
                        "cannot move", (void *)b->view.base, (unsigned long long)addr);
  uint64_t at = m->copy->pad + (addr - m->addr);
  vk_xfer x = up ? (vk_xfer){b->guest_buf, m->copy->buf, {.srcOffset = addr, .dstOffset = at, .size = len}}
                 : (vk_xfer){m->copy->buf, b->guest_buf, {.srcOffset = at, .dstOffset = addr, .size = len}};
  sp_error_t *err = transfer_as(c, b, &x, 1, true);
  return err ? sp_error_wrap(err, "vulkan: %s %llu device-local bytes at 0x%llx", up ? "uploading" : "syncing",
                             (unsigned long long)len, (unsigned long long)addr)
             : NULL;
}

static sp_error_t *vk_device_local(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  /* b->local: adopted with the layer on (its import is a transfer source and destination) */
  if (!c->residency || !b->local || !b->guest_buf || !len || addr + len > b->view.committed) return NULL;
  if (mirror_of(b, addr, len) || b->n_mirrors == SP_VK_MAX_LOCAL) return NULL; /* held, or no room: guest memory */
  sp_error_t *err = sp_vk_drain(c, b); /* a list still running may write these bytes */
  if (err) return err;
  sp_vk_copy *k = mirror_new(c, addr, len);
  if (!k) return NULL; /* warned: guest memory */
  sp_vk_mirror *m = &b->mirrors[b->n_mirrors];
  *m = (sp_vk_mirror){addr, len, k, k->addr + k->pad - addr}; /* mod 2^64, as a copy's base */
  if ((err = mirror_move(c, b, m, addr, len, true))) {
    mirror_free(c, k);
    return err;
  }
  b->n_mirrors++;
  b->recorded = false; /* its tensors now live in the mirror */
  return NULL;
}

static sp_error_t *vk_sync(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  sp_vk_mirror *m = len ? mirror_of(b, addr, len) : NULL;
  if (!m) return NULL; /* guest memory is the range's memory */
  sp_error_t *err = sp_vk_drain(c, b); /* everything submitted has finished */
  return err ? err : mirror_move(c, b, m, addr, len, false);
}

/* Zeroes [addr, addr + len) of mirror m alone: a fill where the range is
 * 4-byte aligned (vkCmdFillBuffer's rule), else guest memory is made equal
 * to the mirror, zeroed there and uploaded again. */
static sp_error_t *mirror_zero(sp_vk_ctx *c, sp_vk_binding *b, const sp_vk_mirror *m, uint64_t addr, uint64_t len) {
  uint64_t at = m->copy->pad + (addr - m->addr);
  if (at % 4 == 0 && len % 4 == 0) {
    vk_xfer x = {VK_NULL_HANDLE, m->copy->buf, {.srcOffset = 0, .dstOffset = at, .size = len}};
    return transfer_as(c, b, &x, 1, true);
  }
  sp_error_t *err = mirror_move(c, b, m, m->addr, m->len, false);
  if (err) return err;
  memset(b->view.base + addr, 0, len);
  return mirror_move(c, b, m, addr, len, true);
}

static sp_error_t *vk_local_zero(void *vctx, void *binding, uint64_t addr, uint64_t len, bool *done) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  sp_vk_mirror *m = len ? mirror_of(b, addr, len) : NULL;
  if (!m) return NULL; /* not done: the caller zeroes guest memory */
  sp_error_t *err = sp_vk_drain(c, b); /* a list still running may write these bytes */
  if (!err) err = mirror_zero(c, b, m, addr, len);
  if (err) return sp_error_wrap(err, "vulkan: zeroing %llu device-local bytes at 0x%llx", (unsigned long long)len,
                                (unsigned long long)addr);
  *done = true;
  return NULL;
}

/* ---- the interface ---- */

static sp_error_t *vk_freeze(void *vctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  if (!c->residency || !b->guest_buf || !len || addr + len > b->view.committed) return NULL;
  sp_error_t *err = sp_vk_drain(c, b); /* a list still running may have written these bytes */
  if (err) return err;
  sp_vk_frozen *f = frozen_of(b, addr, len, true);
  if (f) return refresh(c, b, f, addr, len, identity); /* a restore declared it again */
  if (b->n_frozen == SP_VK_MAX_FROZEN) return NULL;  /* no room: guest memory */
  sp_vk_copy *k = identity ? acquire(c, identity, addr, len) : NULL;
  if (!k) {
    if (!(k = copy_new(c, addr, len))) return NULL; /* warned: guest memory */
    if ((err = upload(c, b, k, addr, addr, len))) {
      copy_release(c, k);
      return err;
    }
    if (identity) k = publish(c, k, identity);
  }
  f = &b->frozen[b->n_frozen++];
  *f = (sp_vk_frozen){addr, len, NULL, 0};
  point_at(b, f, k);
  return NULL;
}

static sp_error_t *vk_flush(void *vctx, void *binding, uint64_t addr, uint64_t len) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  sp_vk_mirror *m = len ? mirror_of(b, addr, len) : NULL;
  if (m) { /* the guest rewrote part of a device-local range: upload it again */
    sp_error_t *err = sp_vk_drain(c, b);
    return err ? err : mirror_move(c, b, m, addr, len, true);
  }
  sp_vk_frozen *f = frozen_of(b, addr, len, false);
  if (!f || !f->copy) return NULL; /* guest memory is what kernels read */
  sp_error_t *err = sp_vk_drain(c, b); /* the list reading the copy has finished */
  return err ? err : refresh(c, b, f, addr, len, 0);
}

void sp_vk_frozen_release(sp_vk_ctx *c, sp_vk_binding *b) {
  for (uint32_t i = 0; i < b->n_frozen; i++) copy_release(c, b->frozen[i].copy);
  b->n_frozen = 0;
  for (uint32_t i = 0; i < b->n_mirrors; i++) mirror_free(c, b->mirrors[i].copy);
  b->n_mirrors = 0;
  if (b->xfer_fence) vkDestroyFence(c->dev, b->xfer_fence, NULL);
  b->xfer_fence = VK_NULL_HANDLE; /* xfer_cb goes with the binding's pool */
}

static void vk_residency(void *vctx, sp_residency_stats *out) {
  sp_vk_ctx *c = vctx;
  pthread_mutex_lock(&c->res_mu);
  *out = c->stats;
  pthread_mutex_unlock(&c->res_mu);
}

/* Device-local heaps' use and size, from VK_EXT_memory_budget. */
static bool vk_device_memory(void *vctx, uint64_t *used, uint64_t *total) {
  sp_vk_ctx *c = vctx;
  if (!c->memory_budget) return false;
  VkPhysicalDeviceMemoryBudgetPropertiesEXT budget = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
  VkPhysicalDeviceMemoryProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                          .pNext = &budget};
  vkGetPhysicalDeviceMemoryProperties2(c->phys, &p2);
  *used = *total = 0;
  for (uint32_t i = 0; i < p2.memoryProperties.memoryHeapCount; i++)
    if (p2.memoryProperties.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT)
      *used += budget.heapUsage[i], *total += p2.memoryProperties.memoryHeaps[i].size;
  return *total > 0;
}

const struct sp_backend_memory_i sp_vk_memory = {
    .version = SP_BACKEND_MEMORY_VERSION,
    .freeze = vk_freeze,
    .flush = vk_flush,
    .device_local = vk_device_local,
    .sync = vk_sync,
    .local_zero = vk_local_zero,
    /* file_ranges: none (no_file_maps on a GPU) */
    .residency = vk_residency,
    .device_memory = vk_device_memory,
};
