/* test_validate.c: the validator on its own: normalization, extents and
 * every rejection path, with hostile numbers. (The same paths are driven
 * through a real guest by guests/abi_cases.c.) */
#include <string.h>

#include "check.h"
#include "core/validate.h"

#define MEM (1u << 20)

static sp_validate_ctx ctx = {MEM, 0, 0, 1024};
static char msg[512];

static sp_tensor t2(uint32_t off, uint32_t dtype, uint32_t ne0, uint32_t ne1) {
  return (sp_tensor){off, dtype, {ne0, ne1, 1, 1}, {0, 0, 0}, 0};
}

static sp_cmd matmul(void) {
  sp_cmd c = {.op = SP_OP_MATMUL};
  c.dst = t2(0x1000, SP_DTYPE_F32, 64, 4);
  c.src[0] = t2(0x10000, SP_DTYPE_F32, 128, 64);
  c.src[1] = t2(0x20000, SP_DTYPE_F32, 128, 4);
  return c;
}

static sp_status run(sp_cmd c) { return sp_validate_cmd(&ctx, &c, 3, msg, sizeof msg); }

static void check_rejects(sp_cmd c, sp_status want, const char *needle) {
  sp_status got = run(c);
  CHECK(got == want && strstr(msg, needle), "want %d '%s', got %d '%s'", want, needle, got, msg);
}

static void test_normalization(void) {
  sp_cmd c = matmul();
  CHECK(sp_validate_cmd(&ctx, &c, 0, msg, sizeof msg) == SP_OK, "%s", msg);
  CHECK(c.src[0].nb[0] == 512 && c.src[0].nb[1] == 512 * 64, "nb %u %u", c.src[0].nb[0], c.src[0].nb[1]);
  CHECK(sp_tensor_extent(&c.src[0]) == 128 * 64 * 4, "extent");
  sp_cmd q = matmul();
  q.src[0] = t2(0x10000, SP_DTYPE_Q4_0, 128, 64);
  CHECK(sp_validate_cmd(&ctx, &q, 0, msg, sizeof msg) == SP_OK, "%s", msg);
  CHECK(q.src[0].nb[0] == 4 * 18, "q4_0 row bytes %u", q.src[0].nb[0]);
  q.src[0].dtype = SP_DTYPE_Q4_1, q.src[0].nb[0] = 0;
  CHECK(sp_validate_cmd(&ctx, &q, 0, msg, sizeof msg) == SP_OK && q.src[0].nb[0] == 80, "q4_1");
  q.src[0].dtype = SP_DTYPE_Q8_0, q.src[0].nb[0] = 0;
  CHECK(sp_validate_cmd(&ctx, &q, 0, msg, sizeof msg) == SP_OK && q.src[0].nb[0] == 136, "q8_0");
}

static void test_bounds(void) {
  sp_cmd c = matmul();
  c.dst.offset = MEM - 4;
  check_rejects(c, SP_E_BOUNDS, "cmd[3].dst: offset");
  c = matmul();
  c.src[0].offset = MEM - 128 * 64 * 4; /* exactly at the end: fine */
  CHECK(run(c) == SP_OK, "%s", msg);
  c.src[0].offset += 4;
  check_rejects(c, SP_E_BOUNDS, "src[0]");
  c = matmul();
  c.src[0].offset = 0xfffffffc;
  check_rejects(c, SP_E_BOUNDS, "src[0]");
  c = matmul();
  c.src[1].nb[0] = 0xfffffffc;
  check_rejects(c, SP_E_BOUNDS, "src[1]");
  c = matmul();
  c.src[1].ne[3] = 0xffffffff, c.src[1].nb[2] = 0xfffffffc;
  check_rejects(c, SP_E_BOUNDS, "src[1]");
  c = matmul();
  for (int d = 0; d < 4; d++) c.src[0].ne[d] = 0xffffffffu;
  check_rejects(c, SP_E_SHAPE, "overflow");
}

static void test_shapes_and_types(void) {
  sp_cmd c = matmul();
  c.src[1].ne[2] = 0;
  check_rejects(c, SP_E_SHAPE, "ne[2] is 0");
  c = matmul();
  c.src[0].dtype = SP_DTYPE_COUNT;
  check_rejects(c, SP_E_DTYPE, "unknown dtype");
  c = matmul();
  c.src[0] = t2(0x10000, SP_DTYPE_Q4_1, 100, 64);
  check_rejects(c, SP_E_SHAPE, "block");
  c = matmul();
  c.src[0].offset = 0x10002;
  check_rejects(c, SP_E_ALIGN, "aligned");
  c = matmul();
  c.src[0].nb[0] = 514;
  check_rejects(c, SP_E_ALIGN, "aligned");
  c = matmul();
  c.dst.ne[1] = 5;
  check_rejects(c, SP_E_SHAPE, "dst.ne[1]");
  sp_cmd add = {.op = SP_OP_ADD};
  add.dst = t2(0x1000, SP_DTYPE_F32, 16, 4);
  add.src[0] = t2(0x2000, SP_DTYPE_F32, 16, 4);
  add.src[1] = t2(0x3000, SP_DTYPE_F32, 16, 1);
  CHECK(run(add) == SP_OK, "broadcast row: %s", msg);
  add.src[1].ne[1] = 2;
  check_rejects(add, SP_E_SHAPE, "src[1].ne");
  sp_cmd scale = {.op = SP_OP_SCALE};
  scale.dst = scale.src[0] = t2(0x1000, SP_DTYPE_F32, 16, 4);
  CHECK(run(scale) == SP_OK, "in-place scale: %s", msg);
  scale.src[0].dtype = SP_DTYPE_F16;
  check_rejects(scale, SP_E_DTYPE, "src[0].dtype");
}

static void test_argmax(void) {
  sp_cmd c = {.op = SP_OP_ARGMAX};
  c.dst = t2(0x1000, SP_DTYPE_I32, 3, 1), c.src[0] = t2(0x10000, SP_DTYPE_F32, 1000, 3);
  CHECK(run(c) == SP_OK, "argmax: %s", msg);
  sp_cmd bad = c;
  bad.dst.dtype = SP_DTYPE_F32;
  check_rejects(bad, SP_E_DTYPE, "dst.dtype");
  bad = c, bad.src[0].dtype = SP_DTYPE_F16;
  check_rejects(bad, SP_E_DTYPE, "src[0].dtype");
  bad = c, bad.dst.ne[0] = 4;
  check_rejects(bad, SP_E_SHAPE, "dst.ne");
  bad = c, bad.src[0].ne[2] = 2;
  check_rejects(bad, SP_E_SHAPE, "2-D");
  bad = c, bad.src[1] = c.src[0];
  check_rejects(bad, SP_E_PARAM, "src[1]");
}

static void test_alias(void) {
  sp_validate_ctx with_list = {MEM, 0x1000, 16 + 240, 1024};
  sp_cmd c = matmul();
  CHECK(sp_validate_cmd(&with_list, &c, 0, msg, sizeof msg) == SP_E_ALIAS, "list overlap: %s", msg);
  c = matmul();
  c.src[1].offset = 0x1000 + 64; /* reads inside dst */
  check_rejects(c, SP_E_ALIAS, "cannot run in place");
  c = matmul();
  c.dst.nb[0] = 128; /* rows of 256 bytes every 128 bytes */
  check_rejects(c, SP_E_ALIAS, "rows overlap");
  sp_cmd add = {.op = SP_OP_ADD};
  add.dst = add.src[0] = add.src[1] = t2(0x1000, SP_DTYPE_F32, 16, 4);
  CHECK(run(add) == SP_OK, "fully in place: %s", msg);
  add.src[1].offset += 4;
  check_rejects(add, SP_E_ALIAS, "identical");
}

static void test_header(void) {
  sp_cmd_list_header h = {SP_CMD_LIST_MAGIC, SP_ABI_VERSION, sizeof(sp_cmd), 2, 0};
  uint32_t count = 0;
  sp_validate_ctx lc = {MEM, 0, 16 + 2 * 240, 4};
  CHECK(sp_validate_header(&lc, &h, &count, msg, sizeof msg) == SP_OK && count == 2, "%s", msg);
  h.count = 5;
  lc.list_bytes = 16 + 5 * 240;
  CHECK(sp_validate_header(&lc, &h, &count, msg, sizeof msg) == SP_E_LIMIT, "limit: %s", msg);
  h.count = 1;
  CHECK(sp_validate_header(&lc, &h, &count, msg, sizeof msg) == SP_E_LIST, "length: %s", msg);
  lc.list_bytes = 3;
  CHECK(sp_validate_header(&lc, &h, &count, msg, sizeof msg) == SP_E_LIST, "short: %s", msg);
}

/* Tensors must lie wholly inside or wholly outside a device-local range. */
static void test_device_local(void) {
  sp_cmd c = matmul();
  CHECK(sp_validate_cmd(&ctx, &c, 3, msg, sizeof msg) == SP_OK, "%s", msg); /* normalizes c */
  sp_range inside[1] = {{0x1000, 0x1000}};      /* dst [0x1000, +1024) inside */
  CHECK(sp_validate_device_local(inside, 1, &c, 3, msg, sizeof msg) == SP_OK, "inside: %s", msg);
  sp_range whole[1] = {{0x0, 0x40000}};         /* every tensor inside */
  CHECK(sp_validate_device_local(whole, 1, &c, 3, msg, sizeof msg) == SP_OK, "all inside: %s", msg);
  sp_range apart[1] = {{0x30000, 0x1000}};      /* no tensor touches it */
  CHECK(sp_validate_device_local(apart, 1, &c, 3, msg, sizeof msg) == SP_OK, "outside: %s", msg);
  sp_range cut_dst[1] = {{0x1100, 0x1000}};     /* dst starts before it */
  CHECK(sp_validate_device_local(cut_dst, 1, &c, 3, msg, sizeof msg) == SP_E_BOUNDS && strstr(msg, "cmd[3].dst") &&
            strstr(msg, "straddles"),
        "dst straddling: %s", msg);
  sp_range cut_src[2] = {{0x1000, 0x1000}, {0x10000 + 0x100, 0x100}}; /* inside a weight */
  CHECK(sp_validate_device_local(cut_src, 2, &c, 3, msg, sizeof msg) == SP_E_BOUNDS && strstr(msg, "src[0]"),
        "src straddling: %s", msg);
}

int main(void) {
  test_normalization();
  test_bounds();
  test_shapes_and_types();
  test_argmax();
  test_alias();
  test_header();
  test_device_local();
  return CHECK_DONE();
}
