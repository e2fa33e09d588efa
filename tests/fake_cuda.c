/* fake_cuda.c: a stand-in libsamepage_cuda.so whose constructor fails the
 * way a machine with a driver but no usable GPU does (test_faults_cli.sh). */
#include "backend/backend.h"
#include "core/error.h"

__attribute__((visibility("default"))) sp_error_t *sp_backend_cuda_new(const sp_backend_options *opts,
                                                                       sp_backend **out);

sp_error_t *sp_backend_cuda_new(const sp_backend_options *opts, sp_backend **out) {
  *out = 0;
  return sp_error_new("cudaGetDeviceCount: no CUDA-capable device is detected (fake library)");
}
