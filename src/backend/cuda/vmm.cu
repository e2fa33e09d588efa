/* vmm.cu: exportable device memory for resident copies shared across
 * processes (vmm.h). */
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>

#include "backend/cuda/vmm.h"

typedef CUresult (*create_fn)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long);
typedef CUresult (*release_fn)(CUmemGenericAllocationHandle);
typedef CUresult (*reserve_fn)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long);
typedef CUresult (*addr_free_fn)(CUdeviceptr, size_t);
typedef CUresult (*map_fn)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long);
typedef CUresult (*unmap_fn)(CUdeviceptr, size_t);
typedef CUresult (*access_fn)(CUdeviceptr, size_t, const CUmemAccessDesc *, size_t);
typedef CUresult (*export_fn)(void *, CUmemGenericAllocationHandle, CUmemAllocationHandleType, unsigned long long);
typedef CUresult (*import_fn)(CUmemGenericAllocationHandle *, void *, CUmemAllocationHandleType);
typedef CUresult (*granularity_fn)(size_t *, const CUmemAllocationProp *, CUmemAllocationGranularity_flags);

static struct {
  create_fn create;
  release_fn release;
  reserve_fn reserve;
  addr_free_fn addr_free;
  map_fn map;
  unmap_fn unmap;
  access_fn access;
  export_fn export_handle;
  import_fn import_handle;
  granularity_fn granularity;
  bool ok;
} drv;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load_driver(void) {
  void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return;
  drv.create = (create_fn)dlsym(lib, "cuMemCreate");
  drv.release = (release_fn)dlsym(lib, "cuMemRelease");
  drv.reserve = (reserve_fn)dlsym(lib, "cuMemAddressReserve");
  drv.addr_free = (addr_free_fn)dlsym(lib, "cuMemAddressFree");
  drv.map = (map_fn)dlsym(lib, "cuMemMap");
  drv.unmap = (unmap_fn)dlsym(lib, "cuMemUnmap");
  drv.access = (access_fn)dlsym(lib, "cuMemSetAccess");
  drv.export_handle = (export_fn)dlsym(lib, "cuMemExportToShareableHandle");
  drv.import_handle = (import_fn)dlsym(lib, "cuMemImportFromShareableHandle");
  drv.granularity = (granularity_fn)dlsym(lib, "cuMemGetAllocationGranularity");
  drv.ok = drv.create && drv.release && drv.reserve && drv.addr_free && drv.map && drv.unmap && drv.access &&
           drv.export_handle && drv.import_handle && drv.granularity;
}

static CUmemAllocationProp prop_of(int device) {
  CUmemAllocationProp p = {};
  p.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  p.location.id = device;
  p.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  return p;
}

/* The allocations of this process: what to unmap and release. */
#define MAX_ALLOCS 256
static struct {
  CUdeviceptr ptr;
  size_t size;
  CUmemGenericAllocationHandle handle;
} allocs[MAX_ALLOCS];
static pthread_mutex_t allocs_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t round_size(int device, uint64_t len) {
  CUmemAllocationProp p = prop_of(device);
  size_t g = 0;
  if (drv.granularity(&g, &p, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED) != CUDA_SUCCESS || !g) return 0;
  return (size_t)((len + g - 1) / g * g);
}

/* Reserves addresses for handle, maps it readable and writable here, and
 * remembers it; releases the handle on failure. */
static void *map_handle(int device, CUmemGenericAllocationHandle h, size_t size) {
  CUdeviceptr ptr = 0;
  CUmemAccessDesc access = {};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  bool reserved = drv.reserve(&ptr, size, 0, 0, 0) == CUDA_SUCCESS;
  bool mapped = reserved && drv.map(ptr, size, 0, h, 0) == CUDA_SUCCESS;
  bool ok = mapped && drv.access(ptr, size, &access, 1) == CUDA_SUCCESS;
  pthread_mutex_lock(&allocs_mu);
  int slot = -1;
  for (int i = 0; ok && i < MAX_ALLOCS && slot < 0; i++)
    if (!allocs[i].ptr) slot = i;
  if (slot >= 0) allocs[slot].ptr = ptr, allocs[slot].size = size, allocs[slot].handle = h;
  pthread_mutex_unlock(&allocs_mu);
  if (slot >= 0) return (void *)ptr;
  if (mapped) drv.unmap(ptr, size);
  if (reserved) drv.addr_free(ptr, size);
  drv.release(h);
  return NULL;
}

bool sp_cu_vmm_available(int device) {
  pthread_once(&once, load_driver);
  return drv.ok && round_size(device, 1) > 0;
}

void *sp_cu_vmm_alloc(int device, uint64_t len) {
  if (!sp_cu_vmm_available(device)) return NULL;
  size_t size = round_size(device, len);
  CUmemAllocationProp p = prop_of(device);
  CUmemGenericAllocationHandle h;
  if (!size || drv.create(&h, size, &p, 0) != CUDA_SUCCESS) return NULL;
  return map_handle(device, h, size);
}

int sp_cu_vmm_export(void *dev) {
  int fd = -1;
  pthread_mutex_lock(&allocs_mu);
  for (int i = 0; i < MAX_ALLOCS; i++)
    if (allocs[i].ptr == (CUdeviceptr)dev &&
        drv.export_handle(&fd, allocs[i].handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0) != CUDA_SUCCESS)
      fd = -1;
  pthread_mutex_unlock(&allocs_mu);
  return fd;
}

void *sp_cu_vmm_import(int device, int fd, uint64_t len) {
  if (!sp_cu_vmm_available(device) || fd < 0) return NULL;
  size_t size = round_size(device, len);
  CUmemGenericAllocationHandle h;
  if (!size || drv.import_handle(&h, (void *)(uintptr_t)fd, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR) != CUDA_SUCCESS)
    return NULL;
  return map_handle(device, h, size);
}

bool sp_cu_vmm_owns(const void *dev) {
  bool found = false;
  pthread_mutex_lock(&allocs_mu);
  for (int i = 0; i < MAX_ALLOCS && !found; i++) found = dev && allocs[i].ptr == (CUdeviceptr)dev;
  pthread_mutex_unlock(&allocs_mu);
  return found;
}

void sp_cu_vmm_free(void *dev) {
  cudaDeviceSynchronize(); /* unlike cudaFree, unmapping does not wait for kernels still reading it */
  pthread_mutex_lock(&allocs_mu);
  for (int i = 0; i < MAX_ALLOCS; i++) {
    if (!dev || allocs[i].ptr != (CUdeviceptr)dev) continue;
    drv.unmap(allocs[i].ptr, allocs[i].size);
    drv.addr_free(allocs[i].ptr, allocs[i].size);
    drv.release(allocs[i].handle);
    allocs[i].ptr = 0;
  }
  pthread_mutex_unlock(&allocs_mu);
}
