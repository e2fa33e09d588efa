/*
 * repeat_lists.c: the runtime's one "same list as last time" decision
 * (backend.h, submit's `same`), checked from the guest's side. A list is
 * submitted, submitted again unchanged (a repeat: the backend below may
 * replay what it recorded), then changed in exactly one byte of one
 * command, and every time the results must be those of the list as it
 * now is. Under process isolation a wrong "same" would make the worker
 * replay the old list; under CUDA it would replay the old graph.
 * Exits with the number of failed checks (0 = all good).
 */
#include <stdio.h>
#include <string.h>

#include "samepage_guest.h"

#define N 16 /* floats per vector: 64 bytes, so +64 in an offset's low byte moves one vector */

/* Vectors 64 bytes apart, starting on a 256-byte boundary: moving out to
 * out2, or b to c, adds 64 to an offset's lowest byte without a carry. */
static struct {
  float out[N], out2[N], b[N], c[N], a[N];
} __attribute__((aligned(256))) v;
static struct {
  sp_cmd_list_header header;
  sp_cmd cmds[2];
} list_storage;
static int failures;

static void fill(float *x, float base) {
  for (int i = 0; i < N; i++) x[i] = base + (float)i;
}

/* Compares got with want[i] = f(i) for i < n, and with `untouched` for the
 * rest (NAN-free sentinel). */
static void expect(const char *what, const float *got, const float *want, int n, float untouched) {
  int bad = -1;
  for (int i = 0; i < N && bad < 0; i++)
    if (got[i] != (i < n ? want[i] : untouched)) bad = i;
  printf("%s %s", bad < 0 ? "ok  " : "FAIL", what);
  if (bad >= 0) printf(" (element %d is %g, want %g)", bad, got[bad], bad < n ? want[bad] : untouched), failures++;
  printf("\n");
}

static void submit(const char *what, const sp_list *list) {
  int32_t st = sp_submit_keep(list);
  if (st != SP_OK) printf("FAIL %s: status %d, %s\n", what, st, sp_last_error()), failures++;
}

/* Flips one byte of the first command, at byte offset `at` of sp_cmd. */
static void set_byte(size_t at, uint8_t value) { ((uint8_t *)&list_storage.cmds[0])[at] = value; }
static uint8_t get_byte(size_t at) { return ((uint8_t *)&list_storage.cmds[0])[at]; }

static void reset_outputs(void) {
  for (int i = 0; i < N; i++) v.out[i] = -1.0f, v.out2[i] = -1.0f;
}

int main(void) {
  float want[N];
  fill(v.a, 1), fill(v.b, 100), fill(v.c, 1000);
  sp_list list = sp_list_init(&list_storage.header, 2);
  sp_add(&list, sp_tensor_1d(v.out, SP_DTYPE_F32, N), sp_tensor_1d(v.a, SP_DTYPE_F32, N),
         sp_tensor_1d(v.b, SP_DTYPE_F32, N));

  reset_outputs();
  submit("first list", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] + v.b[i];
  expect("out = a + b", v.out, want, N, 0);

  /* a repeat reads memory as it is now */
  fill(v.a, 7), reset_outputs();
  submit("repeat", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] + v.b[i];
  expect("repeat sees the new a", v.out, want, N, 0);
  submit("repeat", &list); /* twice: a backend may record on the first repeat and replay on the second */
  expect("second repeat", v.out, want, N, 0);

  /* one byte: the op, ADD -> MUL */
  size_t op_at = offsetof(sp_cmd, op);
  set_byte(op_at, SP_OP_MUL), reset_outputs();
  submit("op changed", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] * v.b[i];
  expect("one byte (op ADD -> MUL): out = a * b", v.out, want, N, 0);
  submit("repeat", &list);
  expect("its repeat", v.out, want, N, 0);
  set_byte(op_at, SP_OP_ADD);

  /* one byte: the low byte of dst's offset, out -> out2 */
  size_t dst_at = offsetof(sp_cmd, dst) + offsetof(sp_tensor, offset);
  uint8_t dst_low = get_byte(dst_at);
  set_byte(dst_at, (uint8_t)(dst_low + sizeof v.out)), reset_outputs();
  submit("dst moved", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] + v.b[i];
  expect("one byte (dst offset): out2 = a + b", v.out2, want, N, 0);
  expect("and out untouched", v.out, want, 0, -1.0f);
  set_byte(dst_at, dst_low);

  /* one byte: the low byte of src[1]'s offset, b -> c */
  size_t src1_at = offsetof(sp_cmd, src) + sizeof(sp_tensor) + offsetof(sp_tensor, offset);
  uint8_t src1_low = get_byte(src1_at);
  set_byte(src1_at, (uint8_t)(src1_low + sizeof v.b)), reset_outputs();
  submit("src[1] moved", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] + v.c[i];
  expect("one byte (src[1] offset): out = a + c", v.out, want, N, 0);
  set_byte(src1_at, src1_low);

  /* back to the first list (a list seen two lists ago is not "the same") */
  reset_outputs();
  submit("back to the first list", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] + v.b[i];
  expect("back to out = a + b", v.out, want, N, 0);

  list = sp_list_init(&list_storage.header, 2);
  sp_scale(&list, sp_tensor_1d(v.out, SP_DTYPE_F32, N), sp_tensor_1d(v.a, SP_DTYPE_F32, N), 2.0f);
  reset_outputs();
  submit("scale by 2", &list);
  submit("scale by 2, repeated", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] * 2.0f;
  expect("out = 2a", v.out, want, N, 0);
  size_t param_at = offsetof(sp_cmd, param) + 3; /* the float's exponent byte (little-endian) */
  set_byte(param_at, (uint8_t)(get_byte(param_at) + 1)); /* 2.0f -> 8.0f */
  reset_outputs();
  submit("scale's param changed", &list);
  for (int i = 0; i < N; i++) want[i] = v.a[i] * 8.0f;
  expect("one byte (param): out = 8a", v.out, want, N, 0);
  return failures;
}
