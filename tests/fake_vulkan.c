/* fake_vulkan.c: a stand-in libsamepage_vulkan.so whose constructor fails
 * the way a machine with the Vulkan loader but no usable device does: the
 * loading path (SP_VULKAN_LIB, the install tree, the worker process) is
 * then tested on any machine (test_vulkan_load.sh, test_install.sh). */
#include "backend/backend.h"
#include "core/error.h"

__attribute__((visibility("default"))) sp_error_t *sp_backend_vulkan_new(const sp_backend_options *opts,
                                                                         sp_backend **out);

sp_error_t *sp_backend_vulkan_new(const sp_backend_options *opts, sp_backend **out) {
  (void)opts;
  *out = 0;
  return sp_error_new("vkEnumeratePhysicalDevices: no Vulkan device (fake library)");
}
