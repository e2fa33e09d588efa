/*
 * hostile.c: one hostile guest behaviour per case, chosen by argv[1].
 *
 * Each case does one thing a malicious or broken guest might do, through
 * the real imports. A case that gets a status back exits with -status (so
 * SP_E_BOUNDS exits 2, SP_OK exits 0) and the host test reads the message
 * from the actor; a case meant to trap or run forever never returns.
 * tests/test_hostile.c holds the expected outcome of every case.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samepage_guest.h"

#define N 16 /* small tensors: [N, N] f32 */
static float a[N * N], b[N * N], c[N * N], d[N * N];
static int32_t idx[N];
static uint16_t half[N * N];
static struct {
  sp_cmd_list_header header;
  sp_cmd cmds[4];
} storage;
static volatile int32_t sink;

/* ---- helpers ---- */

static sp_list fresh(void) { return sp_list_init(&storage.header, 4); }

static sp_cmd *cmd0(void) { return &storage.cmds[0]; }

/* A list holding one valid matmul c = b . a^T. */
static sp_list one_matmul(void) {
  sp_list list = fresh();
  sp_matmul(&list, sp_tensor_2d(c, SP_DTYPE_F32, N, N), sp_tensor_2d(a, SP_DTYPE_F32, N, N),
            sp_tensor_2d(b, SP_DTYPE_F32, N, N));
  return list;
}

static int32_t submit_one(void) {
  return sp_import_submit(sp_addr(&storage.header), sizeof storage.header + sizeof(sp_cmd));
}

static int32_t submit(sp_list *list) { return sp_submit(list); }

/* Fills x with NaN, infinities, denormals, huge and ordinary values. */
static void poison(float *x, int n) {
  static const float v[] = {NAN, INFINITY, -INFINITY, 1e-45f, 3.4e38f, -3.4e38f, 0.0f, -0.0f, 1.0f};
  for (int i = 0; i < n; i++) x[i] = v[i % (int)(sizeof v / sizeof v[0])];
}

/* ---- bounds, wrapping and overflow ---- */

static int32_t dst_past_memory(void) { one_matmul(); cmd0()->dst.offset = 0xfffffff0u; return submit_one(); }
static int32_t src_offset_wraps(void) { one_matmul(); cmd0()->src[0].offset = 0xfffffffcu; return submit_one(); }
static int32_t extent_huge(void) { one_matmul(); cmd0()->src[1].ne[1] = 0x7fffffffu; return submit_one(); }
static int32_t shape_product_overflows(void) {
  one_matmul();
  for (int i = 0; i < 4; i++) cmd0()->src[0].ne[i] = 0xffffffffu;
  return submit_one();
}
static int32_t strides_overflow(void) {
  one_matmul();
  sp_tensor *t = &cmd0()->src[0];
  t->ne[1] = t->ne[2] = t->ne[3] = 0xffffffffu;
  t->nb[0] = t->nb[1] = t->nb[2] = 0xfffffffcu;
  return submit_one();
}
static int32_t row_stride_huge(void) { one_matmul(); cmd0()->src[0].nb[0] = 0xfffffffcu; return submit_one(); }
static int32_t zero_extent(void) { one_matmul(); cmd0()->src[0].ne[1] = 0; return submit_one(); }
static int32_t dst_ends_one_past_memory(void) {
  one_matmul();
  uint32_t end = (uint32_t)__builtin_wasm_memory_size(0) * 65536u;
  cmd0()->dst = sp_tensor_1d((void *)(uintptr_t)(end - 60), SP_DTYPE_F32, 16);
  cmd0()->op = SP_OP_SCALE;
  cmd0()->src[0] = sp_tensor_1d(a, SP_DTYPE_F32, 16);
  cmd0()->src[1] = (sp_tensor){0};
  cmd0()->param[0] = sp_f32_bits(1.0f);
  return submit_one();
}

/* ---- the list itself ---- */

static int32_t list_outside_memory(void) { return sp_import_submit(0xfffffff0u, 256); }
static int32_t list_wraps_4gib(void) { return sp_import_submit(0xffffff00u, 0x200); }
static int32_t list_bytes_huge(void) { return sp_import_submit(sp_addr(&storage), 0xffffffffu); }
static int32_t list_short(void) { fresh(); return sp_import_submit(sp_addr(&storage), 8); }
static int32_t list_bad_magic(void) { one_matmul(); storage.header.magic = 0xdeadbeef; return submit_one(); }
static int32_t list_bad_version(void) { one_matmul(); storage.header.version = 7; return submit_one(); }
static int32_t list_bad_cmd_size(void) { one_matmul(); storage.header.cmd_size = 239; return submit_one(); }
static int32_t list_count_huge(void) { one_matmul(); storage.header.count = 0xffffffffu; return submit_one(); }
static int32_t list_count_lies(void) { one_matmul(); storage.header.count = 3; return submit_one(); }
static int32_t dst_overwrites_list(void) {
  one_matmul();
  cmd0()->dst = sp_tensor_2d(&storage, SP_DTYPE_F32, N, N);
  return submit_one();
}
static int32_t dst_overwrites_header(void) {
  fresh();
  sp_list list = fresh();
  sp_scale(&list, sp_tensor_1d(&storage.header, SP_DTYPE_F32, 4), sp_tensor_1d(a, SP_DTYPE_F32, 4), 0.0f);
  return submit(&list);
}

/* A list of `count` NOPs in fresh memory (count may exceed the host cap). */
static int32_t nop_list(uint32_t count) {
  uint64_t bytes = sizeof(sp_cmd_list_header) + (uint64_t)count * sizeof(sp_cmd);
  sp_cmd_list_header *h = malloc((size_t)bytes);
  if (!h) return -100;
  memset(h, 0, (size_t)bytes);
  sp_list list = sp_list_init(h, count);
  h->count = count;
  (void)list;
  return sp_import_submit(sp_addr(h), (uint32_t)bytes);
}
static int32_t list_longest_accepted(void) { return nop_list(65536); }
static int32_t list_too_long(void) { return nop_list(65537); }

/* `count` copies of one command over [side, side] f32 tensors in fresh
 * memory: short enough for max_cmds, far too much work to run. */
static int32_t work_list(uint32_t count, sp_op op, uint32_t side) {
  uint64_t list_bytes = sizeof(sp_cmd_list_header) + (uint64_t)count * sizeof(sp_cmd);
  size_t tensor = (size_t)side * side * sizeof(float);
  sp_cmd_list_header *h = malloc((size_t)list_bytes);
  float *w = malloc(tensor), *x = malloc(tensor), *y = malloc(tensor);
  if (!h || !w || !x || !y) return -100;
  memset(w, 0, tensor), memset(x, 0, tensor);
  sp_list list = sp_list_init(h, count);
  for (uint32_t i = 0; i < count; i++) {
    sp_tensor tw = sp_tensor_2d(w, SP_DTYPE_F32, side, side), tx = sp_tensor_2d(x, SP_DTYPE_F32, side, side);
    sp_tensor ty = sp_tensor_2d(y, SP_DTYPE_F32, side, side);
    if ((op == SP_OP_MATMUL ? sp_matmul(&list, ty, tw, tx) : sp_copy(&list, ty, tx)) != 0) return -101;
  }
  return sp_submit(&list);
}
/* 65536 matmuls of 512^3: 17.6 TFLOP (hours on a CPU) in 3 MiB of tensors. */
static int32_t list_flops_storm(void) { return work_list(65536, SP_OP_MATMUL, 512); }
/* 65536 copies of 9 MiB into 9 MiB: 1.2 TiB streamed. */
static int32_t list_bytes_storm(void) { return work_list(65536, SP_OP_COPY, 1536); }

/* ---- types, ops, fields ---- */

static int32_t unknown_op(void) { one_matmul(); cmd0()->op = 999; return submit_one(); }
static int32_t op_count(void) { one_matmul(); cmd0()->op = SP_OP_COUNT; return submit_one(); }
static int32_t op_negative(void) { one_matmul(); cmd0()->op = 0x80000000u; return submit_one(); }
static int32_t unknown_dtype(void) { one_matmul(); cmd0()->src[0].dtype = 99; return submit_one(); }
static int32_t dtype_count(void) { one_matmul(); cmd0()->dst.dtype = SP_DTYPE_COUNT; return submit_one(); }
static int32_t dtype_missing(void) { one_matmul(); cmd0()->src[1] = (sp_tensor){0}; return submit_one(); }
static int32_t wrong_dtype(void) { one_matmul(); cmd0()->src[1].dtype = SP_DTYPE_I32; return submit_one(); }
static int32_t flags_set(void) { one_matmul(); cmd0()->flags = 0x80000000u; return submit_one(); }
static int32_t tensor_reserved(void) { one_matmul(); cmd0()->dst.reserved = 1; return submit_one(); }
static int32_t unused_slot(void) { one_matmul(); cmd0()->src[3] = cmd0()->src[0]; return submit_one(); }
static int32_t unused_param(void) { one_matmul(); cmd0()->param[7] = 1; return submit_one(); }
static int32_t misaligned(void) { one_matmul(); cmd0()->src[1].offset += 2; return submit_one(); }
static int32_t partial_block(void) { one_matmul(); cmd0()->src[0].dtype = SP_DTYPE_Q8_0; return submit_one(); }
static int32_t shape_mismatch(void) { one_matmul(); cmd0()->dst.ne[1] = N + 1; return submit_one(); }

/* ---- aliasing ---- */

static int32_t dst_is_source(void) { one_matmul(); cmd0()->dst = cmd0()->src[0]; return submit_one(); }
static int32_t dst_rows_overlap(void) { one_matmul(); cmd0()->dst.nb[0] = 4; return submit_one(); }
static int32_t inplace_shifted(void) {
  sp_list list = fresh();
  sp_add(&list, sp_tensor_1d(d + 1, SP_DTYPE_F32, 16), sp_tensor_1d(d, SP_DTYPE_F32, 16),
         sp_tensor_1d(a, SP_DTYPE_F32, 16));
  return submit(&list);
}
static int32_t rope_dst_overlaps(void) {
  sp_list list = fresh();
  sp_rope(&list, sp_tensor_4d(d + 2, SP_DTYPE_F32, 4, 2, 2, 1), sp_tensor_4d(d, SP_DTYPE_F32, 4, 2, 2, 1),
          sp_tensor_1d(idx, SP_DTYPE_I32, 2), 4, 10000.0f, 0, 1.0f, (sp_tensor){0});
  return submit(&list);
}

/* ---- indices and positions read from guest memory at run time ---- */

static int32_t get_rows(int32_t index) {
  idx[0] = 0, idx[1] = index;
  sp_list list = fresh();
  sp_get_rows(&list, sp_tensor_2d(c, SP_DTYPE_F32, N, 2), sp_tensor_2d(a, SP_DTYPE_F32, N, N),
              sp_tensor_1d(idx, SP_DTYPE_I32, 2));
  return submit(&list);
}
static int32_t get_rows_past_end(void) { return get_rows(N); }
static int32_t get_rows_negative(void) { return get_rows(-1); }
static int32_t get_rows_int_min(void) { return get_rows(INT32_MIN); }

static int32_t set_rows(int32_t index) {
  idx[0] = 1, idx[1] = index;
  sp_list list = fresh();
  sp_set_rows(&list, sp_tensor_2d(half, SP_DTYPE_F16, N, N), sp_tensor_2d(a, SP_DTYPE_F32, N, 2),
              sp_tensor_1d(idx, SP_DTYPE_I32, 2));
  return submit(&list);
}
static int32_t set_rows_past_end(void) { return set_rows(0x7fffffff); }
static int32_t set_rows_negative(void) { return set_rows(-5); }

/* q [4, 2, 2], k/v caches [4, 1, C = 8] in b and d, positions idx. */
static int32_t attention(int32_t pos) {
  idx[0] = 0, idx[1] = pos;
  sp_list list = fresh();
  sp_attention(&list, sp_tensor_4d(c, SP_DTYPE_F32, 4, 2, 2, 1), sp_tensor_4d(a, SP_DTYPE_F32, 4, 2, 2, 1),
               sp_tensor_4d(b, SP_DTYPE_F32, 4, 1, 8, 1), sp_tensor_4d(d, SP_DTYPE_F32, 4, 1, 8, 1),
               sp_tensor_1d(idx, SP_DTYPE_I32, 2), 0.5f);
  return submit(&list);
}
static int32_t attention_pos_past_cache(void) { return attention(8); }
static int32_t attention_pos_negative(void) { return attention(-1); }
static int32_t attention_pos_huge(void) { return attention(0x7fffffff); }

/* Rope positions are only numbers: extreme ones must compute, not crash. */
static int32_t rope_extreme_positions(void) {
  idx[0] = INT32_MIN, idx[1] = INT32_MAX;
  sp_list list = fresh();
  sp_rope(&list, sp_tensor_4d(c, SP_DTYPE_F32, 4, 2, 2, 1), sp_tensor_4d(a, SP_DTYPE_F32, 4, 2, 2, 1),
          sp_tensor_1d(idx, SP_DTYPE_I32, 2), 4, 10000.0f, 0, 1.0f, (sp_tensor){0});
  return submit(&list);
}

/* ---- NaN and infinities through every op: results, never crashes ---- */

static sp_tensor mat(float *p) { return sp_tensor_2d(p, SP_DTYPE_F32, N, N); }
static sp_list poisoned(void) {
  poison(a, N * N), poison(b, N * N), poison(d, N * N);
  return fresh();
}
static int32_t nan_matmul(void) { sp_list l = poisoned(); sp_matmul(&l, mat(c), mat(a), mat(b)); return submit(&l); }
static int32_t nan_add(void) { sp_list l = poisoned(); sp_add(&l, mat(c), mat(a), mat(b)); return submit(&l); }
static int32_t nan_mul(void) { sp_list l = poisoned(); sp_mul(&l, mat(c), mat(a), mat(b)); return submit(&l); }
static int32_t nan_scale(void) { sp_list l = poisoned(); sp_scale(&l, mat(c), mat(a), INFINITY); return submit(&l); }
static int32_t nan_get_rows(void) {
  sp_list l = poisoned();
  idx[0] = 3, idx[1] = 0;
  sp_get_rows(&l, sp_tensor_2d(c, SP_DTYPE_F32, N, 2), mat(a), sp_tensor_1d(idx, SP_DTYPE_I32, 2));
  return submit(&l);
}
static int32_t nan_rmsnorm(void) {
  sp_list l = poisoned();
  sp_rmsnorm(&l, mat(c), mat(a), sp_tensor_1d(b, SP_DTYPE_F32, N), 1e-6f);
  return submit(&l);
}
static int32_t nan_rope(void) {
  sp_list l = poisoned();
  idx[0] = 1, idx[1] = 2;
  sp_rope(&l, sp_tensor_4d(c, SP_DTYPE_F32, 8, 2, 2, 1), sp_tensor_4d(a, SP_DTYPE_F32, 8, 2, 2, 1),
          sp_tensor_1d(idx, SP_DTYPE_I32, 2), 8, 10000.0f, 2, 1.0f, sp_tensor_1d(b, SP_DTYPE_F32, 4));
  return submit(&l);
}
static int32_t nan_attention(void) {
  poisoned();
  return attention(7);
}
static int32_t nan_set_rows(void) {
  poisoned();
  return set_rows(2);
}
static int32_t nan_swiglu(void) { sp_list l = poisoned(); sp_swiglu(&l, mat(c), mat(a), mat(b)); return submit(&l); }
static int32_t nan_softmax(void) { sp_list l = poisoned(); sp_softmax(&l, mat(c), mat(a), 1.0f); return submit(&l); }
static int32_t nan_copy_f16(void) {
  sp_list l = poisoned();
  sp_copy(&l, sp_tensor_2d(half, SP_DTYPE_F16, N, N), mat(a));
  return submit(&l);
}
static int32_t nan_q8_weights(void) {
  /* q8_0 blocks whose f16 scales are NaN and infinity. */
  sp_list l = poisoned();
  uint8_t *w = (uint8_t *)d;
  for (int i = 0; i < 2 * 34; i++) w[i] = (uint8_t)(i * 37);
  w[0] = 0x00, w[1] = 0x7e;  /* NaN scale */
  w[34] = 0x00, w[35] = 0x7c; /* +inf scale */
  sp_matmul(&l, sp_tensor_2d(c, SP_DTYPE_F32, 2, 1), sp_tensor_2d(w, SP_DTYPE_Q8_0, 32, 2),
            sp_tensor_2d(a, SP_DTYPE_F32, 32, 1));
  return submit(&l);
}

/* A list built past its storage (room for 4, 6 pushed): the SDK counts
 * the 2 that did not fit, and the host refuses the list instead of running
 * the first 4 (issue 14: no silent truncation). */
static int32_t list_overflows(void) {
  sp_list l = fresh();
  for (int i = 0; i < 6; i++)
    sp_matmul(&l, sp_tensor_2d(c, SP_DTYPE_F32, N, N), sp_tensor_2d(a, SP_DTYPE_F32, N, N),
              sp_tensor_2d(b, SP_DTYPE_F32, N, N));
  return submit(&l);
}

/* ---- host scratch within the actor's memory budget (issue 13) ---- */

/* 100,000 activation rows of 4,096 floats, each 4 bytes after the last
 * (overlapping rows), take 416 KiB of guest memory, and their quantized
 * copy would take 488 MiB of host scratch: refused before it runs (the
 * scratch budget is 1/8 of the memory limit). */
static float shifted_rows[4096 + 100000], long_dst[100000];
static uint8_t q8_row[4096 / 32 * 34];
static int32_t scratch_over_budget(void) {
  sp_list l = fresh();
  sp_tensor x = sp_tensor_2d(shifted_rows, SP_DTYPE_F32, 4096, 100000);
  x.nb[0] = 4;
  sp_matmul(&l, sp_tensor_2d(long_dst, SP_DTYPE_F32, 1, 100000), sp_tensor_2d(q8_row, SP_DTYPE_Q8_0, 4096, 1), x);
  return submit(&l);
}

/* An attention over a cache of 2 million keys 4 bytes apart (8 MiB of
 * guest memory): its scratch follows the keys the positions reach (here
 * 2), not the cache's length (2 query heads x 2M floats, 16 MiB, over the
 * budget), so it runs. */
static float aliased_keys[(1 << 21) + 4];
static int32_t attention_scratch_follows_positions(void) {
  idx[0] = 0, idx[1] = 1;
  sp_tensor kv = sp_tensor_4d(aliased_keys, SP_DTYPE_F32, 4, 1, 1 << 21, 1);
  kv.nb[1] = 4;
  sp_list list = fresh();
  sp_attention(&list, sp_tensor_4d(c, SP_DTYPE_F32, 4, 2, 2, 1), sp_tensor_4d(a, SP_DTYPE_F32, 4, 2, 2, 1), kv, kv,
               sp_tensor_1d(idx, SP_DTYPE_I32, 2), 0.5f);
  return submit(&list);
}

/* ---- granted files ---- */

static int32_t blob_ungranted(void) { return sp_blob_open("secret"); }
static int32_t blob_path_traversal(void) { return sp_blob_open("../../etc/passwd"); }
static int32_t blob_absolute_path(void) { return sp_blob_open("/etc/passwd"); }
static int32_t blob_name_with_nul(void) { return sp_import_blob_open(sp_addr("data\0x"), 6); }
static int32_t blob_name_outside(void) { return sp_import_blob_open(0xfffffff0u, 64); }
static int32_t blob_name_too_long(void) {
  static char name[4096];
  memset(name, 'a', sizeof name);
  return sp_import_blob_open(sp_addr(name), sizeof name);
}
static int32_t blob_bad_handle(void) { return (int32_t)sp_import_blob_size(7); }
static int32_t blob_negative_handle(void) {
  return (int32_t)sp_import_blob_read(-1, 0, sp_addr(a), 16);
}
static int32_t blob_read_outside(void) {
  int32_t h = sp_blob_open("data");
  if (h < 0) return -100;
  return (int32_t)sp_import_blob_read(h, 0, 0xffffff00u, 4096);
}
static int32_t blob_read_past_eof(void) {
  int32_t h = sp_blob_open("data");
  if (h < 0) return -100;
  int64_t got = sp_import_blob_read(h, INT64_MAX, sp_addr(a), 16);
  return got == 0 ? SP_OK : -101; /* 0 bytes at EOF, nothing else */
}
static int32_t blob_map_misaligned(void) {
  int32_t h = sp_blob_open("data");
  if (h < 0) return -100;
  return sp_import_blob_map(h, 0, sp_addr(a) | 4, 65536);
}
static int32_t blob_map_past_file(void) {
  int32_t h = sp_blob_open("data");
  if (h < 0) return -100;
  int32_t old = (int32_t)__builtin_wasm_memory_grow(0, 4);
  if (old < 0) return -102;
  return sp_import_blob_map(h, (int64_t)1 << 40, (uint32_t)old * 65536u, 65536);
}
static int32_t blob_map_outside_memory(void) {
  int32_t h = sp_blob_open("data");
  if (h < 0) return -100;
  return sp_import_blob_map(h, 0, 0xffff0000u, 65536);
}

/* ---- freeze and flush misuse ---- */

static int32_t freeze_outside(void) { return sp_import_freeze(0xfffff000u, 0x2000); }
static int32_t freeze_overlapping(void) {
  if (sp_freeze(a, sizeof a)) return -100;
  return sp_freeze((char *)a + 64, 64);
}
static int32_t freeze_too_many(void) {
  static uint8_t pages[17 * 64];
  for (int i = 0; i < 16; i++)
    if (sp_freeze(pages + i * 64, 64)) return -100;
  return sp_freeze(pages + 16 * 64, 64);
}
static int32_t write_frozen(void) {
  if (sp_freeze(c, sizeof c)) return -100;
  one_matmul();
  return submit_one();
}
static int32_t flush_unfrozen(void) { return sp_flush(b, sizeof b); }
static int32_t flush_straddling(void) {
  if (sp_freeze(a, sizeof a)) return -100;
  return sp_flush((char *)a + 64, sizeof a);
}

/* ---- memory ---- */

static int32_t grow_past_limit(void) {
  /* The test caps memory at 64 MiB: growing must fail cleanly, not trap. */
  for (int i = 0; i < 2000; i++)
    if (__builtin_wasm_memory_grow(0, 1) == (size_t)-1)
      return __builtin_wasm_memory_size(0) <= 1024 ? SP_E_LIMIT : -101;
  return -100;
}
static int32_t grow_4gib_at_once(void) {
  return __builtin_wasm_memory_grow(0, 65536) == (size_t)-1 ? SP_E_LIMIT : -100;
}
/* Commands may only name committed memory: the same tensor is refused
 * before a grow and accepted after it. (Submits are synchronous, so no
 * work is ever pending while the guest runs and could grow memory.) */
static int32_t tensor_in_ungrown_memory(void) {
  uint32_t end = (uint32_t)__builtin_wasm_memory_size(0) * 65536u;
  sp_list list = fresh();
  sp_tensor t = sp_tensor_1d((void *)(uintptr_t)end, SP_DTYPE_F32, 1024);
  sp_scale(&list, t, t, 2.0f);
  int32_t before = submit(&list);
  if (__builtin_wasm_memory_grow(0, 1) == (size_t)-1) return -100;
  sp_scale(&list, t, t, 2.0f);
  int32_t after = submit(&list);
  /* Last, the same mistake one page further (last_error then names it). */
  t.offset += 65536;
  sp_scale(&list, t, t, 2.0f);
  int32_t again = submit(&list);
  return after == SP_OK && again == before ? before : -101;
}
static int32_t last_error_outside(void) { return sp_import_last_error(0xfffffff0u, 64); }

/* ---- traps and runaway work ---- */

__attribute__((noinline)) static int32_t recurse(int32_t n) {
  if (n == 0) return sink;
  int32_t r = recurse(n - 1);
  sink = r; /* work after the call: no tail call, no loop */
  return r + n;
}
static int32_t stack_overflow(void) { return recurse(0x7fffffff); }
static int32_t infinite_loop(void) {
  for (;;) sink++;
}
__attribute__((noinline)) static void tick(void) { sink++; }
static int32_t infinite_calls(void) {
  for (;;) tick();
}
static int32_t submit_storm(void) {
  /* Host calls in a loop: the limit still applies between them. */
  for (;;) sink += one_matmul().capacity, sink += submit_one();
}
static int32_t calls_abort(void) { abort(); }
static int32_t unreachable(void) { __builtin_unreachable(); }
static int32_t divide_by_zero(void) {
  volatile int32_t seven = 7, zero = 0;
  return seven / zero;
}
static int32_t int_min_over_minus_one(void) {
  volatile int32_t x = INT32_MIN, y = -1;
  return x / y;
}
static int32_t trunc_nan(void) {
  volatile float f = NAN;
  return (int32_t)__builtin_wasm_trunc_s_i32_f32(f);
}
static int32_t memory_out_of_bounds(void) {
  volatile uint32_t addr = 0xfffffff0u;
  return *(volatile int32_t *)(uintptr_t)addr;
}
static int32_t two_args(int32_t x, int32_t y) { return x + y; }
static int32_t indirect_type_mismatch(void) {
  int32_t (*volatile fn)(void) = (int32_t(*)(void))(void *)two_args;
  return fn();
}
static int32_t table_out_of_bounds(void) {
  volatile uintptr_t index = 100000;
  int32_t (*fn)(void) = (int32_t(*)(void))index;
  return fn();
}
static int32_t null_call(void) {
  volatile uintptr_t index = 0;
  int32_t (*fn)(void) = (int32_t(*)(void))index;
  return fn();
}

/* ---- the case table ---- */

typedef struct hostile_case {
  const char *name;
  int32_t (*run)(void);
} hostile_case;

#define CASE(fn) {#fn, fn}
static const hostile_case cases[] = {
    CASE(dst_past_memory), CASE(src_offset_wraps), CASE(extent_huge), CASE(shape_product_overflows),
    CASE(strides_overflow), CASE(row_stride_huge), CASE(zero_extent), CASE(dst_ends_one_past_memory),
    CASE(list_outside_memory), CASE(list_wraps_4gib), CASE(list_bytes_huge), CASE(list_short),
    CASE(list_bad_magic), CASE(list_bad_version), CASE(list_bad_cmd_size), CASE(list_count_huge),
    CASE(list_count_lies), CASE(dst_overwrites_list), CASE(dst_overwrites_header),
    CASE(list_longest_accepted), CASE(list_too_long), CASE(list_flops_storm), CASE(list_bytes_storm), CASE(unknown_op), CASE(op_count),
    CASE(op_negative), CASE(unknown_dtype), CASE(dtype_count), CASE(dtype_missing), CASE(wrong_dtype),
    CASE(flags_set), CASE(tensor_reserved), CASE(unused_slot), CASE(unused_param), CASE(misaligned),
    CASE(partial_block), CASE(shape_mismatch), CASE(dst_is_source), CASE(dst_rows_overlap),
    CASE(inplace_shifted), CASE(rope_dst_overlaps), CASE(get_rows_past_end), CASE(get_rows_negative),
    CASE(get_rows_int_min), CASE(set_rows_past_end), CASE(set_rows_negative),
    CASE(attention_pos_past_cache), CASE(attention_pos_negative), CASE(attention_pos_huge),
    CASE(rope_extreme_positions), CASE(nan_matmul), CASE(nan_add), CASE(nan_mul), CASE(nan_scale),
    CASE(nan_get_rows), CASE(nan_rmsnorm), CASE(nan_rope), CASE(nan_attention), CASE(nan_set_rows),
    CASE(nan_swiglu), CASE(nan_softmax), CASE(nan_copy_f16), CASE(nan_q8_weights),
    CASE(scratch_over_budget), CASE(attention_scratch_follows_positions), CASE(list_overflows),
    CASE(blob_ungranted), CASE(blob_path_traversal), CASE(blob_absolute_path),
    CASE(blob_name_with_nul), CASE(blob_name_outside), CASE(blob_name_too_long), CASE(blob_bad_handle),
    CASE(blob_negative_handle), CASE(blob_read_outside), CASE(blob_read_past_eof),
    CASE(blob_map_misaligned), CASE(blob_map_past_file), CASE(blob_map_outside_memory),
    CASE(freeze_outside), CASE(freeze_overlapping), CASE(freeze_too_many), CASE(write_frozen),
    CASE(flush_unfrozen), CASE(flush_straddling), CASE(grow_past_limit), CASE(grow_4gib_at_once),
    CASE(tensor_in_ungrown_memory), CASE(last_error_outside), CASE(stack_overflow),
    CASE(infinite_loop), CASE(infinite_calls), CASE(submit_storm), CASE(calls_abort),
    CASE(unreachable), CASE(divide_by_zero), CASE(int_min_over_minus_one), CASE(trunc_nan),
    CASE(memory_out_of_bounds), CASE(indirect_type_mismatch), CASE(table_out_of_bounds),
    CASE(null_call),
};

int main(int argc, char **argv) {
  if (argc < 2) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) printf("%s\n", cases[i].name);
    return 0;
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (strcmp(cases[i].name, argv[1])) continue;
    int32_t st = cases[i].run();
    /* A status 0..-11 exits 0..11; anything else is the case's own failure. */
    return st <= 0 && st >= -11 ? -st : 100;
  }
  fprintf(stderr, "hostile: no case \"%s\"\n", argv[1]);
  return 99;
}
