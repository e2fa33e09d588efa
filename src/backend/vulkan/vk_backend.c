/*
 * vk_backend.c: the Vulkan backend, computing on guest memory in place.
 *
 * Adopting a region imports the actor's committed memory as device memory
 * with VK_EXT_external_memory_host (vk_import.c checks the range first:
 * no driver does), bound to one buffer whose device address every shader
 * starts from; each memory.grow waits for the binding's work and imports
 * the whole larger range again. On unified memory (lavapipe, APUs, Apple
 * through MoltenVK) the buffer is the guest's own pages: zero-copy, and
 * pointer identity holds where the driver's device address is the host
 * pointer (lavapipe's is). Discrete cards read it over the bus, except the
 * frozen ranges (weights) that the memory layer (vk_residency.c) copies
 * into device-local memory when residency is on.
 *
 * submit() records the list into the binding's command buffer (one
 * dispatch per command, a memory barrier between dispatches) and submits
 * it; wait() waits for its fence and reads the status word, where a
 * shader that met an index out of range left the command's index. A list
 * the runtime says is the same as the previous one (backend.h, submit's
 * `same`) replays the recorded command buffer as it is.
 *
 * This file holds the instance, the device and the bindings;
 * vk_backend.h names the other parts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk_backend.h"

const char *sp_vk_result_name(VkResult r) {
  switch (r) {
  case VK_SUCCESS: return "VK_SUCCESS";
  case VK_NOT_READY: return "VK_NOT_READY";
  case VK_TIMEOUT: return "VK_TIMEOUT";
  case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY";
  case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY";
  case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED";
  case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST";
  case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED";
  case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT";
  case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT";
  case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER";
  case VK_ERROR_INVALID_EXTERNAL_HANDLE: return "VK_ERROR_INVALID_EXTERNAL_HANDLE";
  default: return "VkResult error";
  }
}

/* ---- the core interface: caps, adopt, grow, release ---- */

static sp_backend_caps vk_caps(void *vctx) {
  sp_vk_ctx *c = vctx;
  /* A GPU keeps the pages an import pinned: a file mapped over guest
   * memory afterwards (blob_map) would not be what its kernels read, so
   * guests fall back to blob_read there. */
  return (sp_backend_caps){.zero_copy = true, .unified_memory = c->unified, .no_file_maps = !c->cpu_device,
                           .residency = c->residency, .device_local = c->residency, .shares_frozen = c->residency};
}

static void vk_release(void *vctx, void *binding);

static sp_error_t *binding_objects(sp_vk_ctx *c, sp_vk_binding *b) {
  VkCommandPoolCreateInfo pi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
                                .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
                                .queueFamilyIndex = c->queue_family};
  VK_TRY(vkCreateCommandPool(c->dev, &pi, NULL, &b->pool), "a command pool");
  VkCommandBufferAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO, .commandPool = b->pool,
                                    .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY, .commandBufferCount = 1};
  VK_TRY(vkAllocateCommandBuffers(c->dev, &ai, &b->cb), "a command buffer");
  VkFenceCreateInfo fi = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
  VK_TRY(vkCreateFence(c->dev, &fi, NULL, &b->fence), "a fence");
  b->local = c->residency;
  sp_error_t *err = b->local ? sp_vk_buffer_new_local(c, sizeof(sp_vk_status), &b->status_dev) : NULL;
  return err ? err : sp_vk_buffer_new(c, sizeof(sp_vk_status), &b->status);
}

static sp_error_t *vk_adopt(void *vctx, const sp_memory_view *view, void **binding) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = calloc(1, sizeof *b);
  if (!b) return sp_error_new("vulkan adopt: out of memory");
  b->view = *view;
  sp_error_t *err = sp_vk_import(c, b);
  if (!err) err = binding_objects(c, b);
  if (err) {
    vk_release(vctx, b);
    return err;
  }
  *binding = b;
  return NULL;
}

sp_error_t *sp_vk_drain(sp_vk_ctx *c, sp_vk_binding *b) {
  if (!b->pending) return NULL;
  VK_TRY(vkWaitForFences(c->dev, 1, &b->fence, VK_TRUE, UINT64_MAX), "waiting for the binding's work");
  return NULL;
}

/* The committed prefix grew: the whole range is imported again (one
 * buffer, one base address), and the recorded list, whose push constants
 * hold the old address, is recorded again on the next submit. */
static sp_error_t *vk_grow(void *vctx, void *binding, const sp_memory_view *view) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  sp_error_t *err = sp_vk_drain(c, b);
  if (err) return err;
  sp_memory_view old = b->view;
  b->view = *view;
  b->recorded = false;
  if (view->host_budget && b->scratch.size > view->host_budget) /* never hold more than the budget */
    sp_vk_buffer_free(c, &b->scratch);
  err = sp_vk_import(c, b);
  if (err) {
    b->view = old; /* keep computing on what was imported before, if it can be imported again */
    sp_error_t *again = sp_vk_import(c, b);
    if (again) sp_error_free(again);
  }
  return err;
}

/* The device address of guest address 0: on lavapipe the host pointer
 * itself (pointer identity), elsewhere the driver's own address. */
static void *vk_device_base(void *vctx, void *binding) {
  return (void *)(uintptr_t)((sp_vk_binding *)binding)->guest_addr;
}

static void vk_release(void *vctx, void *binding) {
  sp_vk_ctx *c = vctx;
  sp_vk_binding *b = binding;
  if (b->pending && b->fence) vkWaitForFences(c->dev, 1, &b->fence, VK_TRUE, UINT64_MAX);
  sp_vk_frozen_release(c, b); /* nothing of the binding's reads its copies now */
  if (b->fence) vkDestroyFence(c->dev, b->fence, NULL);
  if (b->pool) vkDestroyCommandPool(c->dev, b->pool, NULL); /* frees cb */
  sp_vk_buffer_free(c, &b->cmds);
  sp_vk_buffer_free(c, &b->status);
  sp_vk_buffer_free(c, &b->status_dev);
  sp_vk_buffer_free(c, &b->scratch);
  sp_vk_unimport(c, b);
  free(b->last);
  free(b);
}

static void vk_destroy(void *vctx) {
  sp_vk_ctx *c = vctx;
  if (c->dev) {
    vkDeviceWaitIdle(c->dev);
    sp_vk_pipelines_free(c);
    vkDestroyDevice(c->dev, NULL);
  }
  if (c->instance) vkDestroyInstance(c->instance, NULL);
  sp_vk_residency_deinit(c);
  pthread_mutex_destroy(&c->res_mu);
  pthread_mutex_destroy(&c->queue_mu);
  pthread_mutex_destroy(&c->pipe_mu);
  free(c);
}

static const struct sp_backend_i vk_iface = {
    .version = SP_BACKEND_CORE_VERSION,
    .name = "vulkan",
    .caps = vk_caps,
    .adopt = vk_adopt,
    .grow = vk_grow,
    .supports = sp_vk_supports,
    .submit = sp_vk_submit,
    .wait = sp_vk_wait,
    .device_base = vk_device_base,
    .release = vk_release,
    .destroy = vk_destroy,
};

/* ---- instance and device ---- */

static bool has_extension(VkPhysicalDevice pd, const char *name) {
  uint32_t n = 0;
  if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS) return false;
  VkExtensionProperties *ext = calloc(n ? n : 1, sizeof *ext);
  bool found = false;
  if (ext && vkEnumerateDeviceExtensionProperties(pd, NULL, &n, ext) == VK_SUCCESS)
    for (uint32_t i = 0; i < n && !found; i++) found = strcmp(ext[i].extensionName, name) == 0;
  free(ext);
  return found;
}

/* The features every shader needs (shaders/common.glsl). */
typedef struct vk_features {
  VkPhysicalDeviceFeatures2 f2;
  VkPhysicalDeviceVulkan11Features f11;
  VkPhysicalDeviceVulkan12Features f12;
} vk_features;

static void features_chain(vk_features *f) {
  memset(f, 0, sizeof *f);
  f->f2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2;
  f->f11.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES;
  f->f12.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES;
  f->f2.pNext = &f->f11, f->f11.pNext = &f->f12;
}

/* Whether pd has what the shaders need; if not, *why says what is missing. */
static bool device_fits(VkPhysicalDevice pd, const char **why) {
  VkPhysicalDeviceProperties p;
  vkGetPhysicalDeviceProperties(pd, &p);
  if (p.apiVersion < VK_API_VERSION_1_2) return *why = "Vulkan 1.2", false;
  if (!has_extension(pd, VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME))
    return *why = "VK_EXT_external_memory_host", false;
  vk_features f;
  features_chain(&f);
  vkGetPhysicalDeviceFeatures2(pd, &f.f2);
  if (!f.f12.bufferDeviceAddress) return *why = "bufferDeviceAddress", false;
  if (!f.f2.features.shaderInt64 || !f.f2.features.shaderInt16 || !f.f12.shaderInt8)
    return *why = "64-, 16- and 8-bit shader integers", false;
  if (!f.f11.storageBuffer16BitAccess || !f.f12.storageBuffer8BitAccess)
    return *why = "8- and 16-bit storage buffer access", false;
  return true;
}

static int32_t compute_family(VkPhysicalDevice pd) {
  uint32_t n = 0;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, NULL);
  VkQueueFamilyProperties q[32];
  if (n > 32) n = 32;
  vkGetPhysicalDeviceQueueFamilyProperties(pd, &n, q);
  for (uint32_t i = 0; i < n; i++)
    if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) return (int32_t)i;
  return -1;
}

static sp_error_t *make_instance(sp_vk_ctx *c) {
  VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO, .pApplicationName = "samepage",
                           .apiVersion = VK_API_VERSION_1_2};
  VkInstanceCreateInfo ii = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
#ifdef __APPLE__
  /* MoltenVK is a portability implementation (docs/APPLE.md) */
  static const char *exts[] = {"VK_KHR_portability_enumeration"};
  ii.flags = 0x00000001; /* VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR */
  ii.enabledExtensionCount = 1, ii.ppEnabledExtensionNames = exts;
#endif
  VK_TRY(vkCreateInstance(&ii, NULL, &c->instance), "vulkan backend: creating an instance");
  return NULL;
}

/* Picks device `want` among those with what the shaders need. */
static sp_error_t *pick_device(sp_vk_ctx *c, uint32_t want) {
  uint32_t n = 0;
  VK_TRY(vkEnumeratePhysicalDevices(c->instance, &n, NULL), "vulkan backend: listing devices");
  VkPhysicalDevice pds[16];
  if (n > 16) n = 16;
  VK_TRY(vkEnumeratePhysicalDevices(c->instance, &n, pds), "vulkan backend: listing devices");
  if (n == 0) return sp_error_new("vulkan backend: no Vulkan device");
  if (want >= n) return sp_error_new("vulkan backend: device %u does not exist (%u found)", want, n);
  const char *why = NULL;
  if (!device_fits(pds[want], &why) || compute_family(pds[want]) < 0) {
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(pds[want], &p);
    return sp_error_new("vulkan backend: no Vulkan device with %s (device %u, %s, lacks it)",
                        why ? why : "a compute queue", want, p.deviceName);
  }
  c->phys = pds[want];
  c->queue_family = (uint32_t)compute_family(pds[want]);
  return NULL;
}

static sp_error_t *make_device(sp_vk_ctx *c) {
  vk_features have;
  features_chain(&have);
  vkGetPhysicalDeviceFeatures2(c->phys, &have.f2);
  c->float64 = c->device_float64 = have.f2.features.shaderFloat64;
  float prio = 1.0f;
  VkDeviceQueueCreateInfo qi = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                .queueFamilyIndex = c->queue_family, .queueCount = 1, .pQueuePriorities = &prio};
  vk_features f;
  features_chain(&f);
  f.f2.features.shaderInt64 = VK_TRUE, f.f2.features.shaderInt16 = VK_TRUE;
  f.f2.features.shaderFloat64 = c->float64 ? VK_TRUE : VK_FALSE;
  f.f11.storageBuffer16BitAccess = VK_TRUE;
  f.f12.storageBuffer8BitAccess = VK_TRUE, f.f12.shaderInt8 = VK_TRUE, f.f12.bufferDeviceAddress = VK_TRUE;
  const char *exts[] = {VK_EXT_EXTERNAL_MEMORY_HOST_EXTENSION_NAME};
  VkDeviceCreateInfo di = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .pNext = &f.f2, .queueCreateInfoCount = 1,
                           .pQueueCreateInfos = &qi, .enabledExtensionCount = 1, .ppEnabledExtensionNames = exts};
  VK_TRY(vkCreateDevice(c->phys, &di, NULL, &c->dev), "vulkan backend: creating the device");
  vkGetDeviceQueue(c->dev, c->queue_family, 0, &c->queue);
  c->host_ptr_props = (PFN_vkGetMemoryHostPointerPropertiesEXT)vkGetDeviceProcAddr(
      c->dev, "vkGetMemoryHostPointerPropertiesEXT");
  if (!c->host_ptr_props) return sp_error_new("vulkan backend: no vkGetMemoryHostPointerPropertiesEXT");
  return NULL;
}

/* Limits: the import alignment, the largest allocation, the device kind. */
static void read_limits(sp_vk_ctx *c) {
  VkPhysicalDeviceExternalMemoryHostPropertiesEXT host = {
      .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_EXTERNAL_MEMORY_HOST_PROPERTIES_EXT};
  VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES,
                                               .pNext = &host};
  VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
  vkGetPhysicalDeviceProperties2(c->phys, &p2);
  c->props = p2.properties;
  c->import_align = host.minImportedHostPointerAlignment;
  c->max_alloc = m3.maxMemoryAllocationSize;
  c->cpu_device = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU;
  c->matmul_split = !c->cpu_device;
  c->unified = c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ||
               c->props.deviceType == VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU;
  vkGetPhysicalDeviceMemoryProperties(c->phys, &c->mem_props);
  c->memory_budget = has_extension(c->phys, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
}

__attribute__((visibility("default"))) sp_error_t *sp_backend_vulkan_new(const sp_backend_options *opts,
                                                                         sp_backend **out);

sp_error_t *sp_backend_vulkan_new(const sp_backend_options *opts, sp_backend **out) {
  if (!opts || opts->version != SP_BACKEND_OPS_VERSION || !out)
    return sp_error_new("vulkan backend: interface version mismatch");
  sp_backend *be = calloc(1, sizeof *be);
  sp_vk_ctx *c = calloc(1, sizeof *c);
  if (!be || !c) {
    free(be), free(c);
    return sp_error_new("vulkan backend: out of memory");
  }
  pthread_mutex_init(&c->queue_mu, NULL);
  pthread_mutex_init(&c->pipe_mu, NULL);
  pthread_mutex_init(&c->res_mu, NULL);
  /* the device: SP_VULKAN_DEVICE (knobs.h), 0 by default */
  int64_t device = opts->knobs.vulkan_device;
  sp_error_t *err = device < 0 || device > 255 ? sp_error_new("vulkan backend: device %lld does not exist",
                                                              (long long)device)
                                               : make_instance(c);
  if (!err) err = pick_device(c, (uint32_t)device);
  if (!err) read_limits(c), err = make_device(c);
  if (!err) err = sp_vk_pipelines_init(c);
  if (err) {
    free(be);
    vk_destroy(c);
    return err;
  }
  /* resident copies of frozen ranges where the device reads host memory
   * over a bus (--residency none: none, as on unified memory) */
  c->residency = opts->residency && !c->unified;
  be->iface = vk_iface;
  be->memory = c->residency ? &sp_vk_memory : NULL;
  be->sharing = NULL;
  be->batching = NULL;
  be->ctx = c;
  *out = be;
  return NULL;
}

/* The device's name and the import alignment, for tests and messages. */
__attribute__((visibility("default"))) const char *sp_backend_vulkan_device_name(const sp_backend *be);
const char *sp_backend_vulkan_device_name(const sp_backend *be) {
  if (!be || be->iface.destroy != vk_destroy) return NULL;
  return ((const sp_vk_ctx *)be->ctx)->props.deviceName;
}

/* Test hook (test_vulkan_ops): runs the 64-bit-float shaders or the
 * _nof64 ones (float64 false, as on a device without them), and products
 * as a workgroup per output (split, as on a GPU) or an invocation per
 * output (as on a CPU driver), whatever the device. Call it while no list
 * is in flight. */
__attribute__((visibility("default"))) sp_error_t *sp_backend_vulkan_test_shaders(sp_backend *be, bool float64,
                                                                                  bool split);
sp_error_t *sp_backend_vulkan_test_shaders(sp_backend *be, bool float64, bool split) {
  if (!be || be->iface.destroy != vk_destroy) return sp_error_new("vulkan: not a Vulkan backend");
  sp_vk_ctx *c = be->ctx;
  if (float64 && !c->device_float64) return sp_error_new("vulkan: the device has no 64-bit floats");
  c->matmul_split = split;
  return sp_vk_pipelines_remake(c, float64);
}

/* Test hook (test_vulkan_ops): turns the memory layer on or off whatever
 * the device, so that the copy path runs on lavapipe (a unified device,
 * where residency is otherwise off). Bindings adopted from now on can be
 * copied from and into (their import is a transfer source and destination),
 * keep their own buffers device-local and take device-local ranges. Call it
 * while no binding holds a frozen copy or a mirror. */
__attribute__((visibility("default"))) sp_error_t *sp_backend_vulkan_test_residency(sp_backend *be, bool on);
sp_error_t *sp_backend_vulkan_test_residency(sp_backend *be, bool on) {
  if (!be || be->iface.destroy != vk_destroy) return sp_error_new("vulkan: not a Vulkan backend");
  sp_vk_ctx *c = be->ctx;
  c->residency = on;
  be->memory = on ? &sp_vk_memory : NULL;
  return NULL;
}
