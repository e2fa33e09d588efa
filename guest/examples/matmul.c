/*
 * matmul.c: the smallest useful samepage guest. Copy it to start your own.
 *
 * It fills two matrices in its own linear memory, asks the host to multiply
 * them in place, and checks the result it reads back through the same
 * pointers against a product computed here, in the guest.
 *
 * Run: samepage exec matmul.wasm [size]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "samepage_guest.h"

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 64;
  if (n < 1 || n > 1024) {
    fprintf(stderr, "size must be 1..1024\n");
    return 2;
  }
  /* w: n rows of n (weights), x: n rows of n (activations), y = x . w^T */
  float *w = malloc(sizeof(float) * n * n), *x = malloc(sizeof(float) * n * n);
  float *y = malloc(sizeof(float) * n * n);
  if (!w || !x || !y) return 1;
  for (int i = 0; i < n * n; i++) {
    w[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    x[i] = (float)((i * 5) % 11) / 11.0f - 0.5f;
  }

  /* One command: the host validates it, then computes on these very bytes. */
  SP_LIST(list, 1);
  sp_matmul(&list, sp_tensor_2d(y, SP_DTYPE_F32, n, n), sp_tensor_2d(w, SP_DTYPE_F32, n, n),
            sp_tensor_2d(x, SP_DTYPE_F32, n, n));
  if (sp_submit(&list) != SP_OK) sp_die("matmul");

  /* Check against a product computed in the guest. */
  int errors = 0;
  for (int m = 0; m < n; m++) {
    for (int j = 0; j < n; j++) {
      double ref = 0;
      for (int k = 0; k < n; k++) ref += (double)w[j * n + k] * x[m * n + k];
      if (fabs(y[m * n + j] - ref) > 1e-4 * (1 + fabs(ref))) errors++;
    }
  }
  printf("matmul %dx%d on the host, in place: %d errors out of %d\n", n, n, errors, n * n);
  return errors ? 1 : 0;
}
