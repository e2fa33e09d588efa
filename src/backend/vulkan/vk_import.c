/*
 * vk_import.c: guest memory imported as a Vulkan buffer, checked first.
 *
 * VK_EXT_external_memory_host turns a host pointer into VkDeviceMemory, but
 * no driver can be trusted to check what it is given: lavapipe accepts a
 * misaligned or PROT_NONE range and faults later, and NVIDIA's driver
 * fails the import and then every later import on the same VkDevice. So
 * every import is checked here first: the base and size are multiples of
 * minImportedHostPointerAlignment, the size is within the allocation
 * limit, and every page of the range is mapped readable and writable in
 * this process (/proc/self/maps, read whole before it is judged; on macOS
 * the task's regions). A range
 * that fails is refused with an error naming its address and the reason,
 * and the driver never sees it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/vulkan/vk_backend.h"

/* ---- the process's mappings ---- */

#ifdef __APPLE__
#include <mach/mach.h>
#include <mach/mach_vm.h>

/* macOS has no /proc: the task's regions, from mach_vm_region, which
 * answers the region holding an address or the next one above it. Written
 * for MoltenVK (docs/APPLE.md) and not yet compiled on a Mac. */
static bool range_mapped_rw(uintptr_t lo, uintptr_t hi, uintptr_t *bad, char *why, size_t cap) {
  for (mach_vm_address_t at = lo; at < hi;) {
    mach_vm_address_t addr = at;
    mach_vm_size_t size = 0;
    vm_region_basic_info_data_64_t info;
    mach_msg_type_number_t count = VM_REGION_BASIC_INFO_COUNT_64;
    mach_port_t object = MACH_PORT_NULL;
    kern_return_t kr = mach_vm_region(mach_task_self(), &addr, &size, VM_REGION_BASIC_INFO_64,
                                      (vm_region_info_t)&info, &count, &object);
    *bad = (uintptr_t)at;
    if (kr != KERN_SUCCESS || addr > at) return snprintf(why, cap, "not mapped"), false;
    if ((info.protection & (VM_PROT_READ | VM_PROT_WRITE)) != (VM_PROT_READ | VM_PROT_WRITE))
      return snprintf(why, cap, "not readable and writable (PROT_NONE or read-only)"), false;
    at = addr + size;
  }
  return true;
}
#else
/* The whole of /proc/self/maps, NUL-terminated (the caller frees it). */
static char *read_maps(void) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return NULL;
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  while (buf) {
    len += fread(buf + len, 1, cap - 1 - len, f);
    if (len < cap - 1) break;
    char *more = realloc(buf, cap * 2);
    if (!more) free(buf);
    buf = more, cap *= 2;
  }
  fclose(f);
  if (buf) buf[len] = 0;
  return buf;
}

/* Walks the mappings in address order and checks that [lo, hi) is covered
 * without a gap by mappings that are readable and writable. On failure
 * writes the first bad address and why into *bad and why. */
static bool range_mapped_rw(const char *maps, uintptr_t lo, uintptr_t hi, uintptr_t *bad, char *why, size_t cap) {
  uintptr_t at = lo;
  for (const char *line = maps; *line && at < hi;) {
    unsigned long long s, e;
    char perms[8] = {0};
    if (sscanf(line, "%llx-%llx %7s", &s, &e, perms) == 3 && e > at && s < hi) {
      if ((uintptr_t)s > at) {
        *bad = at;
        snprintf(why, cap, "not mapped");
        return false;
      }
      if (perms[0] != 'r' || perms[1] != 'w') {
        *bad = at;
        snprintf(why, cap, "mapped %s, not readable and writable (PROT_NONE or read-only)", perms);
        return false;
      }
      at = (uintptr_t)e;
    }
    const char *nl = strchr(line, '\n');
    if (!nl) break;
    line = nl + 1;
  }
  if (at < hi) {
    *bad = at;
    snprintf(why, cap, "not mapped");
    return false;
  }
  return true;
}
#endif

sp_error_t *sp_vk_check_host_range(const void *base, size_t len, size_t align, size_t max) {
  uintptr_t lo = (uintptr_t)base;
  if (!align) align = 1;
  if (lo % align)
    return sp_error_new("vulkan: refusing to import guest memory at %p (+%zu bytes): the address is not a multiple "
                        "of the device's import alignment %zu", base, len, align);
  if (!len || len % align)
    return sp_error_new("vulkan: refusing to import guest memory at %p (+%zu bytes): the size is not a nonzero "
                        "multiple of the device's import alignment %zu", base, len, align);
  if (max && len > max)
    return sp_error_new("vulkan: refusing to import guest memory at %p (+%zu bytes): more than the device's largest "
                        "allocation (%zu bytes)", base, len, max);
  if (lo + len < lo) return sp_error_new("vulkan: refusing to import guest memory at %p: the range wraps", base);
  uintptr_t bad = 0;
  char why[128];
#ifdef __APPLE__
  bool ok = range_mapped_rw(lo, lo + len, &bad, why, sizeof why);
#else
  char *maps = read_maps();
  if (!maps) return sp_error_new("vulkan: cannot read /proc/self/maps to check guest memory at %p", base);
  bool ok = range_mapped_rw(maps, lo, lo + len, &bad, why, sizeof why);
  free(maps);
#endif
  if (!ok)
    return sp_error_new("vulkan: refusing to import guest memory at %p (+%zu bytes): the page at %p (offset %zu) is "
                        "%s", base, len, (void *)bad, (size_t)(bad - lo), why);
  return NULL;
}

/* ---- memory types ---- */

static int32_t find_memory_type(const sp_vk_ctx *c, uint32_t bits, VkMemoryPropertyFlags want) {
  for (uint32_t i = 0; i < c->mem_props.memoryTypeCount; i++)
    if ((bits & (1u << i)) && (c->mem_props.memoryTypes[i].propertyFlags & want) == want) return (int32_t)i;
  return -1;
}

/* ---- the import ---- */

void sp_vk_unimport(sp_vk_ctx *c, sp_vk_binding *b) {
  if (b->guest_buf) vkDestroyBuffer(c->dev, b->guest_buf, NULL);
  if (b->guest_mem) vkFreeMemory(c->dev, b->guest_mem, NULL);
  b->guest_buf = VK_NULL_HANDLE, b->guest_mem = VK_NULL_HANDLE, b->guest_addr = 0;
}

static sp_error_t *import_checked(sp_vk_ctx *c, sp_vk_binding *b) {
  void *base = b->view.base;
  VkDeviceSize size = b->view.committed;
  VkMemoryHostPointerPropertiesEXT hp = {.sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
  VK_TRY(c->host_ptr_props(c->dev, VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, base, &hp),
         "host pointer properties of guest memory at %p", base);
  VkExternalMemoryBufferCreateInfo ext = {.sType = VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO,
                                          .handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT};
  /* with the memory layer, frozen ranges and mirrors are copied out of it,
   * and mirrors back into it (vk_residency.c) */
  VkBufferUsageFlags copies = c->residency ? VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT : 0;
  VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .pNext = &ext, .size = size,
                           .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT |
                                    copies,
                           .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
  VK_TRY(vkCreateBuffer(c->dev, &bi, NULL, &b->guest_buf), "a buffer over guest memory (%llu bytes)",
         (unsigned long long)size);
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(c->dev, b->guest_buf, &req);
  int32_t type = find_memory_type(c, req.memoryTypeBits & hp.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT);
  if (type < 0) type = find_memory_type(c, req.memoryTypeBits & hp.memoryTypeBits, 0);
  if (type < 0 || req.size > size)
    return sp_error_new("vulkan: no memory type can import guest memory at %p (%llu bytes; the buffer needs %llu)",
                        base, (unsigned long long)size, (unsigned long long)req.size);
  VkImportMemoryHostPointerInfoEXT imp = {.sType = VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT,
                                          .handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT,
                                          .pHostPointer = base};
  VkMemoryAllocateFlagsInfo flags = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO, .pNext = &imp,
                                     .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT};
  VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .pNext = &flags, .allocationSize = size,
                             .memoryTypeIndex = (uint32_t)type};
  VK_TRY(vkAllocateMemory(c->dev, &ai, NULL, &b->guest_mem), "importing guest memory at %p (%llu bytes)", base,
         (unsigned long long)size);
  VK_TRY(vkBindBufferMemory(c->dev, b->guest_buf, b->guest_mem, 0), "binding imported guest memory");
  VkBufferDeviceAddressInfo da = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = b->guest_buf};
  b->guest_addr = vkGetBufferDeviceAddress(c->dev, &da);
  if (!b->guest_addr) return sp_error_new("vulkan: imported guest memory at %p has no device address", base);
  return NULL;
}

sp_error_t *sp_vk_import(sp_vk_ctx *c, sp_vk_binding *b) {
  sp_vk_unimport(c, b);
  sp_error_t *err = sp_vk_check_host_range(b->view.base, b->view.committed, c->import_align, c->max_alloc);
  if (!err) err = import_checked(c, b);
  if (err) sp_vk_unimport(c, b);
  return err;
}

/* ---- buffers of our own ---- */

void sp_vk_buffer_free(sp_vk_ctx *c, sp_vk_buffer *b) {
  if (b->buf) vkDestroyBuffer(c->dev, b->buf, NULL);
  if (b->mem) vkFreeMemory(c->dev, b->mem, NULL); /* unmaps too */
  memset(b, 0, sizeof *b);
}

/* A DEVICE_LOCAL memory type among bits, preferring one the host cannot
 * map (VRAM itself rather than a BAR window); -1 when none. */
int32_t sp_vk_device_local_type(const sp_vk_ctx *c, uint32_t bits) {
  int32_t any = -1;
  for (uint32_t i = 0; i < c->mem_props.memoryTypeCount; i++) {
    VkMemoryPropertyFlags f = c->mem_props.memoryTypes[i].propertyFlags;
    if (!(bits & (1u << i)) || !(f & VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT)) continue;
    if (!(f & VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT)) return (int32_t)i;
    if (any < 0) any = (int32_t)i;
  }
  return any;
}

/* local: device-local and unmapped (only shaders and transfers reach it);
 * else host-visible, coherent, mapped and zeroed. */
static sp_error_t *buffer_fill(sp_vk_ctx *c, VkDeviceSize size, bool local, sp_vk_buffer *out) {
  VkBufferCreateInfo bi = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO, .size = size,
                           .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT |
                                    VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                           .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
  VK_TRY(vkCreateBuffer(c->dev, &bi, NULL, &out->buf), "a buffer of %llu bytes", (unsigned long long)size);
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(c->dev, out->buf, &req);
  int32_t type = local ? sp_vk_device_local_type(c, req.memoryTypeBits)
                       : find_memory_type(c, req.memoryTypeBits,
                                          VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  if (type < 0) return sp_error_new("vulkan: no %s memory type", local ? "device-local" : "host-visible coherent");
  VkMemoryAllocateFlagsInfo flags = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
                                     .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT};
  VkMemoryAllocateInfo ai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, .pNext = &flags,
                             .allocationSize = req.size, .memoryTypeIndex = (uint32_t)type};
  VK_TRY(vkAllocateMemory(c->dev, &ai, NULL, &out->mem), "allocating %llu bytes", (unsigned long long)req.size);
  VK_TRY(vkBindBufferMemory(c->dev, out->buf, out->mem, 0), "binding a buffer");
  VkBufferDeviceAddressInfo da = {.sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = out->buf};
  out->addr = vkGetBufferDeviceAddress(c->dev, &da);
  out->size = size;
  if (local) return out->addr ? NULL : sp_error_new("vulkan: a device-local buffer without a device address");
  VK_TRY(vkMapMemory(c->dev, out->mem, 0, VK_WHOLE_SIZE, 0, &out->map), "mapping a buffer");
  memset(out->map, 0, size);
  return NULL;
}

sp_error_t *sp_vk_buffer_new(sp_vk_ctx *c, VkDeviceSize size, sp_vk_buffer *out) {
  memset(out, 0, sizeof *out);
  sp_error_t *err = buffer_fill(c, size, false, out);
  if (err) sp_vk_buffer_free(c, out);
  return err;
}

sp_error_t *sp_vk_buffer_new_local(sp_vk_ctx *c, VkDeviceSize size, sp_vk_buffer *out) {
  memset(out, 0, sizeof *out);
  sp_error_t *err = buffer_fill(c, size, true, out);
  if (err) sp_vk_buffer_free(c, out);
  return err;
}
