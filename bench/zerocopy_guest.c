/*
 * zerocopy_guest.c: the guest side of `samepage bench zerocopy`.
 *
 * A reactor (no main): the host calls these exports one by one.
 *  - prepare_tensor(bytes): writes a tensor of `bytes` into linear memory.
 *  - matmul_buffers(n): allocates w, x, y (n x n f32 each, contiguous) and
 *    fills w and x; returns the address of w (x and y follow).
 *  - matmul_check(n): the seed's proof. Builds an n x n matmul, submits it,
 *    reads the result through the same pointers and counts elements that
 *    differ from a product computed here, in the guest.
 *  - submit_loop(iters, n_ops): submits a list of n_ops NOP commands iters
 *    times and returns the total nanoseconds measured in the guest.
 */
#include <math.h>
#include <time.h>

#include "samepage_guest.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int32_t prepare_tensor(int32_t bytes) {
  float *t = malloc((size_t)bytes);
  if (!t) return 0;
  size_t n = (size_t)bytes / sizeof(float);
  for (size_t i = 0; i < n; i++) t[i] = (float)(i % 251) * 0.01f;
  return (int32_t)sp_addr(t);
}

static float *buffers;

int32_t matmul_buffers(int32_t n) {
  size_t nn = (size_t)n * (size_t)n;
  free(buffers);
  buffers = malloc(3 * nn * sizeof(float));
  if (!buffers) return 0;
  for (size_t i = 0; i < nn; i++) {
    buffers[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;          /* w */
    buffers[nn + i] = (float)((i * 104729) % 997) / 997.0f - 0.5f;     /* x */
    buffers[2 * nn + i] = 0.0f;                                        /* y */
  }
  return (int32_t)sp_addr(buffers);
}

int32_t matmul_check(int32_t n) {
  if (!matmul_buffers(n)) return -1;
  size_t nn = (size_t)n * (size_t)n;
  float *w = buffers, *x = buffers + nn, *y = buffers + 2 * nn;
  SP_LIST(list, 1);
  sp_matmul(&list, sp_tensor_2d(y, SP_DTYPE_F32, (uint32_t)n, (uint32_t)n),
            sp_tensor_2d(w, SP_DTYPE_F32, (uint32_t)n, (uint32_t)n),
            sp_tensor_2d(x, SP_DTYPE_F32, (uint32_t)n, (uint32_t)n));
  if (sp_submit(&list) != SP_OK) return -2;
  int32_t errors = 0;
  for (int m = 0; m < n; m++) {
    for (int j = 0; j < n; j++) {
      double ref = 0;
      for (int k = 0; k < n; k++) ref += (double)w[j * n + k] * (double)x[m * n + k];
      /* f32 accumulation in a different order: allow a few ulps of the sum */
      if (fabs((double)y[m * n + j] - ref) > 1e-5 * (1.0 + fabs(ref))) errors++;
    }
  }
  return errors;
}

int64_t submit_loop(int32_t iters, int32_t n_ops) {
  static struct {
    sp_cmd_list_header header;
    sp_cmd cmds[16];
  } storage;
  if (n_ops < 0 || n_ops > 16) return -1;
  sp_list list = sp_list_init(&storage.header, 16);
  for (int i = 0; i < n_ops; i++) sp_list_push(&list, SP_OP_NOP);
  uint32_t bytes = (uint32_t)(sizeof(sp_cmd_list_header) + (uint32_t)n_ops * sizeof(sp_cmd));
  uint64_t start = now_ns();
  for (int i = 0; i < iters; i++)
    if (sp_import_submit(sp_addr(&storage.header), bytes) != SP_OK) return -2;
  return (int64_t)(now_ns() - start);
}
