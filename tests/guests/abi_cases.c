/*
 * abi_cases.c: every validation rejection path, driven through the real
 * `samepage.submit` import by a real guest. Each case builds a list, submits
 * it, and checks the status and that the host's message names the field.
 * Exits with the number of failed cases (0 = all good).
 */
#include <stdio.h>
#include <string.h>

#include "samepage_guest.h"

#define N 8 /* small matrices: w [N, N], x [N, N], y [N, N] */
static float w[N * N], x[N * N], y[N * N], z[N * N];
static struct {
  sp_cmd_list_header header;
  sp_cmd cmds[4];
} storage;
static int failures;

static void check(const char *name, int32_t got, int32_t want, const char *needle) {
  const char *msg = got == SP_OK ? "" : sp_last_error();
  int ok = got == want && (!needle || strstr(msg, needle));
  printf("%s %-40s status %3d (want %3d) %s\n", ok ? "ok  " : "FAIL", name, got, want, msg);
  if (!ok) failures++;
}

/* A fresh list holding one valid matmul y = x . w^T. */
static sp_list one_matmul(void) {
  sp_list list = sp_list_init(&storage.header, 4);
  sp_matmul(&list, sp_tensor_2d(y, SP_DTYPE_F32, N, N), sp_tensor_2d(w, SP_DTYPE_F32, N, N),
            sp_tensor_2d(x, SP_DTYPE_F32, N, N));
  return list;
}

static sp_cmd *first(void) { return &storage.cmds[0]; }

static int32_t submit_raw(uint32_t addr, uint32_t bytes) { return sp_import_submit(addr, bytes); }

static int32_t submit_one(void) {
  return submit_raw(sp_addr(&storage.header), sizeof storage.header + sizeof(sp_cmd));
}

static void header_cases(void) {
  sp_list list = sp_list_init(&storage.header, 4);
  check("empty list", sp_submit(&list), SP_OK, NULL);
  check("list shorter than header", submit_raw(sp_addr(&storage.header), 8), SP_E_LIST, "list_bytes");
  one_matmul();
  storage.header.magic = 0x12345678;
  check("bad magic", submit_one(), SP_E_LIST, "header.magic");
  one_matmul();
  storage.header.version = 99;
  check("bad version", submit_one(), SP_E_LIST, "header.version");
  one_matmul();
  storage.header.cmd_size = 100;
  check("bad cmd_size", submit_one(), SP_E_LIST, "header.cmd_size");
  one_matmul();
  storage.header.dropped = 1;
  check("header dropped set", submit_one(), SP_E_LIMIT, "header.dropped: 1 command(s) did not fit");
  one_matmul();
  check("bytes do not match count", submit_raw(sp_addr(&storage.header), 16 + 2 * 240), SP_E_LIST, "list_bytes");
  one_matmul();
  storage.header.count = 0xffffffffu;
  check("huge count", submit_one(), SP_E_LIMIT, "header.count");
  check("list outside memory", submit_raw(0xfffffff0u, 256), SP_E_BOUNDS, "list");
  check("list wraps around 4 GiB", submit_raw(0xffffff00u, 0x200), SP_E_BOUNDS, "list");
}

static void bounds_cases(void) {
  one_matmul();
  first()->dst.offset = 0xfffffff0u;
  check("dst offset past memory", submit_one(), SP_E_BOUNDS, "cmd[0].dst");
  one_matmul();
  first()->src[0].offset = 0xfffffffcu;
  check("src offset + extent wraps", submit_one(), SP_E_BOUNDS, "cmd[0].src[0]");
  one_matmul();
  first()->src[1].ne[1] = 0x7fffffffu;
  check("src extent huge", submit_one(), SP_E_BOUNDS, "cmd[0].src[1]");
  one_matmul();
  for (int d = 0; d < 4; d++) first()->src[0].ne[d] = 0xffffffffu;
  check("extents overflow 64 bits", submit_one(), SP_E_SHAPE, "cmd[0].src[0]");
  one_matmul();
  first()->src[0].nb[0] = 0xfffffffcu;
  check("huge row stride", submit_one(), SP_E_BOUNDS, "cmd[0].src[0]");
  one_matmul();
  first()->src[0].ne[1] = 0;
  check("zero extent", submit_one(), SP_E_SHAPE, "ne[1] is 0");
}

static void type_cases(void) {
  one_matmul();
  first()->src[0].dtype = 99;
  check("unknown dtype", submit_one(), SP_E_DTYPE, "cmd[0].src[0]");
  one_matmul();
  first()->src[1].dtype = SP_DTYPE_F16;
  check("activation not f32", submit_one(), SP_E_DTYPE, "src[1].dtype");
  one_matmul();
  first()->src[0].dtype = SP_DTYPE_I32;
  check("weights i32", submit_one(), SP_E_DTYPE, "src[0].dtype");
  one_matmul();
  first()->src[0].dtype = SP_DTYPE_Q4_0;
  check("q4_0 row not whole blocks", submit_one(), SP_E_SHAPE, "block");
  one_matmul();
  first()->src[1].offset += 1;
  check("misaligned f32", submit_one(), SP_E_ALIGN, "aligned");
  one_matmul();
  first()->src[1].ne[0] = N + 1;
  check("matmul K mismatch", submit_one(), SP_E_SHAPE, "src[1].ne[0]");
  one_matmul();
  first()->dst.ne[0] = N - 1;
  check("matmul N mismatch", submit_one(), SP_E_SHAPE, "dst.ne[0]");
  one_matmul();
  first()->src[0].ne[2] = 2;
  check("matmul 3-D weights", submit_one(), SP_E_SHAPE, "2-D");
  one_matmul();
  first()->op = 999;
  check("unknown op", submit_one(), SP_E_OP, "unknown op 999");
  one_matmul();
  first()->flags = 1;
  check("flags set", submit_one(), SP_E_PARAM, "flags");
  one_matmul();
  first()->src[2] = first()->src[0];
  check("unused src slot set", submit_one(), SP_E_PARAM, "src[2]");
  one_matmul();
  first()->param[3] = 7;
  check("unused param set", submit_one(), SP_E_PARAM, "param[3]");
  one_matmul();
  first()->src[0].reserved = 1;
  check("tensor reserved set", submit_one(), SP_E_PARAM, "reserved");
  one_matmul();
  first()->src[1] = (sp_tensor){0};
  check("required src missing", submit_one(), SP_E_DTYPE, "missing");
  sp_list list = sp_list_init(&storage.header, 4);
  sp_list_push(&list, SP_OP_NOP)->dst = sp_tensor_1d(y, SP_DTYPE_F32, 4);
  check("nop with a dst", sp_submit(&list), SP_E_PARAM, "dst");
}

static void alias_cases(void) {
  one_matmul();
  first()->dst = sp_tensor_2d(w, SP_DTYPE_F32, N, N);
  check("matmul dst == weights", submit_one(), SP_E_ALIAS, "src[0]");
  one_matmul();
  first()->dst = sp_tensor_2d(&storage, SP_DTYPE_F32, N, N);
  check("dst overwrites the list", submit_one(), SP_E_ALIAS, "command list");
  one_matmul();
  first()->dst.nb[0] = 4;
  check("dst rows overlap", submit_one(), SP_E_ALIAS, "rows overlap");
  sp_list list = sp_list_init(&storage.header, 4);
  sp_add(&list, sp_tensor_1d(z, SP_DTYPE_F32, 16), sp_tensor_1d(z, SP_DTYPE_F32, 16),
         sp_tensor_1d(x, SP_DTYPE_F32, 16));
  check("in-place add (identical)", sp_submit(&list), SP_OK, NULL);
  sp_add(&list, sp_tensor_1d(z + 1, SP_DTYPE_F32, 16), sp_tensor_1d(z, SP_DTYPE_F32, 16),
         sp_tensor_1d(x, SP_DTYPE_F32, 16));
  check("add partial overlap", sp_submit(&list), SP_E_ALIAS, "identical");
}

/* Nothing runs unless every command validates. */
static void atomicity_case(void) {
  for (int i = 0; i < N * N; i++) z[i] = 5.0f;
  sp_list list = sp_list_init(&storage.header, 4);
  sp_scale(&list, sp_tensor_1d(z, SP_DTYPE_F32, N * N), sp_tensor_1d(z, SP_DTYPE_F32, N * N), 2.0f);
  sp_list_push(&list, (sp_op)77);
  check("second command invalid", sp_submit(&list), SP_E_OP, "cmd[1].op");
  int untouched = 1;
  for (int i = 0; i < N * N; i++) untouched &= z[i] == 5.0f;
  check("first command did not run", untouched ? SP_OK : -100, SP_OK, NULL);
}

static void last_error_cases(void) {
  check("last_error outside memory", sp_import_last_error(0xfffffff0u, 64), SP_E_BOUNDS, NULL);
  one_matmul();
  first()->op = 999;
  submit_one();
  char tiny[8];
  int32_t len = sp_import_last_error(sp_addr(tiny), sizeof tiny);
  check("last_error truncates", tiny[7] == '\0' && len > 8 ? SP_OK : -100, SP_OK, NULL);
}

/* After all of that, an honest matmul still computes the right numbers. */
static void honest_case(void) {
  for (int i = 0; i < N * N; i++) w[i] = (float)(i % 7), x[i] = (float)(i % 5);
  one_matmul();
  int32_t st = submit_one();
  int wrong = 0;
  for (int m = 0; m < N; m++)
    for (int n = 0; n < N; n++) {
      float ref = 0;
      for (int k = 0; k < N; k++) ref += w[n * N + k] * x[m * N + k];
      wrong += y[m * N + n] != ref;
    }
  check("honest matmul after hostile ones", st == SP_OK && !wrong ? SP_OK : -100, SP_OK, NULL);
}

int main(void) {
  check("abi version", sp_import_abi_version(), SP_ABI_VERSION, NULL);
  header_cases();
  bounds_cases();
  type_cases();
  alias_cases();
  atomicity_case();
  last_error_cases();
  honest_case();
  printf("%d failures\n", failures);
  return failures;
}
