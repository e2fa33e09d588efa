/*
 * attention.c: causal grouped-query attention on the CPU (SP_OP_ATTENTION),
 * tiled over the KV cache.
 *
 * An item is one token t and one kv head hk; it serves the G = Hq / Hkv
 * query heads that share hk, so each k and v row is loaded once per group.
 * The item's keys lo..pos[t] (lo = 0, or pos[t] - W + 1 with a sliding
 * window of W keys) are cut into chunks of SP_ATTN_CHUNK keys counted from
 * lo, and each chunk is worked on in two passes:
 *  1. scores: s = scale * q . k, the chunk's max m, e = exp(s - m) and
 *     l = sum(e), per query head;
 *  2. values: once every chunk of the item has its (m, l), the item's max
 *     M and sum S give each chunk a factor exp(m - M) / S; the
 *     probabilities p = e * factor then meet the chunk's v rows.
 * The chunks' p.V sums are added in chunk order.
 *
 * Why chunks: a decode step has one token and few kv heads (3 in SmolLM2),
 * so whole items leave threads idle and the step slows down as the context
 * grows. Chunks spread the context itself over the threads.
 *
 * Scheduling: with few items (decode) every chunk is a unit of work: one
 * pool job runs pass 1 of all chunks, the caller computes the factors, a
 * second job runs pass 2, and whichever thread finishes an item's last
 * chunk adds up the item. With many items (prompts) a task takes whole
 * items and runs both passes itself. Both use the same functions on the
 * same chunks, so they give the same bits.
 *
 * Numerics contract: the output bits depend on neither the thread count
 * nor the kernel table.
 *  - Chunks have a fixed size (a compile-time constant, never derived from
 *    the thread count), start at the window's first key (0 without a
 *    window, so W = 0 is the op without windows, bit for bit) and are
 *    combined in chunk order.
 *  - Scores come from the table's dot, which gives the same bits in every
 *    table and for any number of rows per call (kernels.h).
 *  - p.V is acc = acc + p * v in key order, a multiply then an add: the
 *    plain loop here (generic table; -ffp-contract=off, sources.cmake)
 *    and the register-tiled AVX2 / AVX-512 loops (attention_simd.c).
 *  - Scores on AVX2 / AVX-512 come from attention_simd.c's tiles, which
 *    reproduce the table dot's accumulation and reduction exactly.
 *  - exp is attn_exp below (nearly correctly rounded, mul/add and bit
 *    moves only: the same bits whatever the table, and on every CPU).
 *  - Sums of several lanes (the max, the sum of e) combine their lanes in
 *    a fixed order written in the source.
 * Agreement with llama.cpp (its reference fixtures run without flash
 * attention): with an f16 cache ggml multiplies f16 operands (f32 sums),
 * so q is rounded to f16 before it meets k, and the normalized
 * probabilities before they meet v. We round the same values: within one
 * chunk p = exp(s - M) * (float)(1 / S), S summed in double, the formula
 * of ggml's softmax; over several, p = exp(s - m) * (exp(m - M) *
 * (float)(1 / S)), a few f32 ulps from it. Rounding exp(s - m) instead
 * (before normalizing, as a one-pass flash attention would) flipped
 * argmaxes of clear margin in tests/test_llm_greedy.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "backend/cpu/attention_simd.h"
#include "backend/cpu/fp16.h"
#include "backend/cpu/llm_ops.h"
#include "backend/cpu/simd.h"
#include "core/dtype.h"

#define SP_ATTN_CHUNK 128 /* keys per chunk */
#define SP_ATTN_AHEAD 16  /* k and v rows fetched ahead of use */

typedef struct attn_job attn_job;

/* One item's arrays, for all of its chunks (P = max_chunks * CHUNK). */
typedef struct attn_item_buf {
  float *p;   /* [G][P] scores, then e = exp(s - m), then probabilities */
  float *m;   /* [max_chunks][G] each chunk's max score, then its factor */
  double *l;  /* [max_chunks][G] each chunk's sum of e */
  float *acc; /* [max_chunks][G][D] each chunk's p.V */
} attn_item_buf;

/* A task's working arrays. */
typedef struct attn_work {
  float *q;          /* [G][D] the item's queries (f16-rounded for an f16 cache) */
  float *v;          /* [4][D] value rows widened from f16 */
  uint16_t *h;       /* [CHUNK] f16 staging for rounding */
  attn_item_buf own; /* item mode: the item being worked on */
} attn_work;

/* The loops compiled once per instruction set (same bits in each). */
typedef struct attn_loops {
  /* s[0..n) -> exp(s - m) in place; *m = max(s), *l = sum of the exps */
  void (*exp)(float *s, int64_t n, float *m, double *l);
  /* Register-tiled loops (attention_simd.h) where the table has them;
   * NULL: one dot call per key, and values_plain. */
  sp_attn_scores_fn scores_tiled;
  sp_attn_values_fn values_tiled;
} attn_loops;

struct attn_job {
  const sp_cpu_exec *ex;
  const sp_cmd *cmd;
  const int32_t *pos; /* [T] checked copy of src[3], read once */
  uint32_t window;    /* param[1]: the keys a query sees, 0 = all up to its own */
  sp_dot_fn dot;
  attn_loops loops;
  float scale;
  bool f16; /* f16 cache (k and v share the dtype) */
  int64_t D, G, Hkv, items, max_chunks, P;
  size_t item_floats, work_floats;
  float *work; /* [tasks][work_floats] */
  uint32_t tasks;
  int64_t units;          /* items (item mode) or chunks of all items (split mode) */
  int64_t heads_per_unit; /* split mode: kv heads one unit covers (1 or Hkv) */
  _Atomic int64_t *next;  /* the next unit to claim */
  /* Split mode: units are single chunks, run in two jobs. */
  bool split;
  int pass;               /* the job now running: 1 (scores) or 2 (values) */
  uint32_t *first;        /* [T + 1] first unit of each token */
  _Atomic uint32_t *left; /* [items] chunks of the item not yet through pass 2 */
  float *bufs;            /* [items][item_floats] */
};

static inline int64_t min_i64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max_i64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline size_t round16(size_t n) { return (n + 15) & ~(size_t)15; } /* 64-byte multiples */

/* Row (i1, i2) of a validated tensor. */
static inline const uint8_t *row_at(const uint8_t *base, const sp_tensor *t, int64_t i1, int64_t i2) {
  return base + t->offset + (size_t)i1 * t->nb[0] + (size_t)i2 * t->nb[1];
}

/* The first key token t sees: pos[t] - W + 1 with a window of W keys
 * that does not reach back to 0, else 0. */
static inline int64_t token_first_key(const attn_job *j, int64_t t) {
  int64_t pos = j->pos[t];
  return j->window && pos >= (int64_t)j->window ? pos - j->window + 1 : 0;
}

/* Keys token t sees: first_key..pos[t]. */
static inline int64_t token_keys(const attn_job *j, int64_t t) { return j->pos[t] + 1 - token_first_key(j, t); }

static inline int64_t token_chunks(const attn_job *j, int64_t t) {
  return (token_keys(j, t) - 1) / SP_ATTN_CHUNK + 1;
}

static inline int64_t item_chunks(const attn_job *j, int64_t item) { return token_chunks(j, item / j->Hkv); }

/* Keys of chunk `chunk` of `item`. */
static inline int64_t chunk_keys(const attn_job *j, int64_t item, int64_t chunk) {
  return min_i64(SP_ATTN_CHUNK, token_keys(j, item / j->Hkv) - chunk * SP_ATTN_CHUNK);
}

/* The cache row of chunk `chunk`'s first key (its scores and
 * probabilities sit at chunk * SP_ATTN_CHUNK in the item's arrays). */
static inline int64_t chunk_first_row(const attn_job *j, int64_t item, int64_t chunk) {
  return token_first_key(j, item / j->Hkv) + chunk * SP_ATTN_CHUNK;
}

/* Asks for the cache lines of a k or v row that will be read soon: the
 * rows of one kv head are Hkv rows apart in the cache, and at long
 * contexts the cache is out of the CPU's caches; fetching ahead keeps
 * several misses in flight. */
static inline __attribute__((always_inline)) void prefetch_row(const attn_job *j, const sp_tensor *t, int64_t hk,
                                                               int64_t c) {
  const uint8_t *row = row_at(j->ex->base, t, hk, c);
  for (int64_t b = 0; b < j->D * (j->f16 ? 2 : 4); b += 64) __builtin_prefetch(row + b);
}

/* x = f32(f16(x)) for n values, through the staging h. */
static void round_f16(float *x, int64_t n, uint16_t *h) {
  for (int64_t i = 0; i < n; i += SP_ATTN_CHUNK) {
    size_t len = (size_t)min_i64(SP_ATTN_CHUNK, n - i);
    sp_cpu_f32_to_f16_row(x + i, h, len);
    sp_cpu_f16_to_f32_row(h, x + i, len);
  }
}

/* ---- the loops compiled once per instruction set ---- */

/* exp(x) for x <= 0 (the only arguments here) or NaN, correctly rounded
 * but for about 1 input in 10^6: the work is done in double (reduction
 * x = n ln 2 + r, |r| <= ln 2 / 2, then Taylor's series of exp(r) to
 * r^11 / 11!, within 2^-45), and only the result is rounded to float. It
 * agrees with glibc's expf (0.502 ulp) on all but 0.009% of the f32 inputs
 * in [-105, 0] (1 ulp there), in plain mul/add/sub and integer bit moves:
 * every instruction set gives the same bits, and a loop over it
 * vectorizes (glibc's is one scalar call per score, a tenth of decode
 * time at 2,048 tokens). A float polynomial within 2 ulps moved a
 * clear-margin argmax against llama.cpp (tests/test_llm_greedy, german
 * step 46); this one stays within an ulp of libm and does not. Below -105
 * (result under half the least subnormal) it gives 0; -inf gives 0. The
 * range test and the selects work on bits, with masks: GCC does not turn
 * a float compare or a ?: into vector code. */
static inline __attribute__((always_inline)) float attn_exp(float xf) {
  const double magic = 6755399441055744.0; /* 1.5 * 2^52: adding it rounds to an integer */
  uint32_t u = sp_f32_bits(xf);
  uint32_t under = 0u - (uint32_t)((u > 0xc2d20000u) & (u <= 0xff800000u)); /* -inf <= x < -105 (= c2d20000) */
  double x = (double)sp_f32_from_bits((u & ~under) | (0xc2d20000u & under));
  double t = x * 1.4426950408889634 + magic, n = t - magic; /* n = round(x / ln 2) */
  double r = x - n * 6.93147180369123816490e-01 - n * 1.90821492927058770002e-10; /* ln 2, hi + lo */
  double p = 1.0 / 39916800; /* 1/11! ... 1/0!, Horner */
  p = p * r + 1.0 / 3628800;
  p = p * r + 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t tb, mb;
  memcpy(&tb, &t, sizeof tb), memcpy(&mb, &magic, sizeof mb);
  uint64_t sb = (tb - mb + 1023u) << 52; /* 2^n, n in -152..0 */
  double s;
  memcpy(&s, &sb, sizeof s);
  float e = (float)(p * s);
  return sp_f32_from_bits(sp_f32_bits(e) & ~under);
}

/* s[0..n) -> e = exp(s - m) in place; *m = max(s), *l = sum(e) in double
 * (ggml's softmax sums in double too). Eight lanes, combined in a fixed
 * order: vector code with the same bits as scalar. */
static inline __attribute__((always_inline)) void exp_body(float *s, int64_t n, float *m, double *l) {
  float mx[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  double sum[8] = {0};
  int64_t c = 0, tail = n & ~(int64_t)7;
  for (; c < tail; c += 8)
    for (int k = 0; k < 8; k++) mx[k] = s[c + k] > mx[k] ? s[c + k] : mx[k];
  for (; c < n; c++) mx[c & 7] = s[c] > mx[c & 7] ? s[c] : mx[c & 7];
  for (int k = 0; k < 4; k++) mx[k] = mx[k + 4] > mx[k] ? mx[k + 4] : mx[k];
  float max = mx[2] > mx[0] ? mx[2] : mx[0], max13 = mx[3] > mx[1] ? mx[3] : mx[1];
  max = max13 > max ? max13 : max;
  for (c = 0; c < n; c++) s[c] = attn_exp(s[c] - max);
  for (c = 0; c < tail; c += 8)
    for (int k = 0; k < 8; k++) sum[k] += s[c + k];
  for (; c < n; c++) sum[c & 7] += s[c];
  *m = max;
  *l = ((sum[0] + sum[4]) + (sum[2] + sum[6])) + ((sum[1] + sum[5]) + (sum[3] + sum[7]));
}

/* Value row c of kv head hk as f32: in place for an f32 cache, else
 * widened into buf (exact, so how it is widened does not matter). */
static inline __attribute__((always_inline)) const float *
value_row(const attn_job *j, int64_t hk, int64_t c, float *buf) {
  const uint8_t *row = row_at(j->ex->base, &j->cmd->src[2], hk, c);
  if (!j->f16) return (const float *)row;
  sp_cpu_f16_to_f32_row((const uint16_t *)row, buf, (size_t)j->D);
  return buf;
}

/* a = a + p0 v0 + p1 v1 + p2 v2 + p3 v3, added left to right: the same
 * operations in the same order as four one-key steps, with a quarter of
 * the loads and stores of a. */
static inline __attribute__((always_inline)) void add_rows4(float *restrict a, const float *restrict v0,
                                                            const float *restrict v1, const float *restrict v2,
                                                            const float *restrict v3, float p0, float p1,
                                                            float p2, float p3, int64_t D) {
  for (int64_t i = 0; i < D; i++) a[i] = a[i] + p0 * v0[i] + p1 * v1[i] + p2 * v2[i] + p3 * v3[i];
}

static inline __attribute__((always_inline)) void add_row1(float *restrict a, const float *restrict v0, float p0,
                                                           int64_t D) {
  for (int64_t i = 0; i < D; i++) a[i] = a[i] + p0 * v0[i];
}

/* acc[G][D] = sum over the chunk's keys c of p[g * P + c] * v row c0 + c
 * of kv head hk (p points at the chunk's first key, cache row c0): the
 * generic table's loop (attention_simd.c has the AVX2 / AVX-512 ones). */
static void values_plain(const attn_job *j, const float *p, int64_t hk, int64_t c0, int64_t n, float *vbuf,
                         float *acc) {
  int64_t D = j->D, P = j->P, c = 0;
  memset(acc, 0, (size_t)(j->G * D) * sizeof *acc);
  for (int64_t r = 0; r < n && r < SP_ATTN_AHEAD; r++) prefetch_row(j, &j->cmd->src[2], hk, c0 + r);
  for (; c + 4 <= n; c += 4) {
    for (int64_t r = c + SP_ATTN_AHEAD; r < c + SP_ATTN_AHEAD + 4 && r < n; r++) prefetch_row(j, &j->cmd->src[2], hk, c0 + r);
    const float *v0 = value_row(j, hk, c0 + c, vbuf), *v1 = value_row(j, hk, c0 + c + 1, vbuf + D);
    const float *v2 = value_row(j, hk, c0 + c + 2, vbuf + 2 * D);
    const float *v3 = value_row(j, hk, c0 + c + 3, vbuf + 3 * D);
    for (int64_t g = 0; g < j->G; g++) {
      const float *pg = p + g * P + c;
      add_rows4(acc + g * D, v0, v1, v2, v3, pg[0], pg[1], pg[2], pg[3], D);
    }
  }
  for (; c < n; c++) {
    const float *v0 = value_row(j, hk, c0 + c, vbuf);
    for (int64_t g = 0; g < j->G; g++) add_row1(acc + g * D, v0, p[g * P + c], D);
  }
}

static void exp_base(float *s, int64_t n, float *m, double *l) { exp_body(s, n, m, l); }

#if defined(SP_CPU_X86)
SP_TARGET_AVX2 static void exp_avx2(float *s, int64_t n, float *m, double *l) { exp_body(s, n, m, l); }
SP_TARGET_AVX512 static void exp_avx512(float *s, int64_t n, float *m, double *l) { exp_body(s, n, m, l); }
#endif

/* The builds for the table's instruction set (selecting the table has
 * checked the CPU); "generic" keeps the baseline ones. */
static attn_loops loops_for(const sp_cpu_kernels *kern) {
#if defined(SP_CPU_X86)
  if (strcmp(kern->name, "avx512") == 0)
    return (attn_loops){exp_avx512, sp_attn_scores_avx512, sp_attn_values_avx512};
  if (strcmp(kern->name, "avx2") == 0)
    return (attn_loops){exp_avx2, sp_attn_scores_avx2, sp_attn_values_avx2};
#endif
  return (attn_loops){exp_base, NULL, NULL};
}

/* ---- pass 1: scores ---- */

/* The item's G query rows; with an f16 cache rounded to f16 (see top). */
static void load_queries(const attn_job *j, int64_t item, const attn_work *w) {
  int64_t t = item / j->Hkv, h0 = item % j->Hkv * j->G;
  for (int64_t g = 0; g < j->G; g++) {
    float *q = w->q + g * j->D;
    memcpy(q, row_at(j->ex->base, &j->cmd->src[0], h0 + g, t), (size_t)j->D * sizeof *q);
    if (j->f16) round_f16(q, j->D, w->h);
  }
}

/* p[g * P + c] = scale * q_g . k row c0 + c: one dot call per key and up
 * to SP_CPU_MAX_NX query heads (k is the "weight" row). */
static void chunk_scores(const attn_job *j, const float *q, int64_t hk, int64_t c0, int64_t n, float *p) {
  float out[SP_CPU_MAX_NX];
  for (int64_t c = 0; c < n && c < SP_ATTN_AHEAD; c++) prefetch_row(j, &j->cmd->src[1], hk, c0 + c);
  for (int64_t c = 0; c < n; c++) {
    const uint8_t *k = row_at(j->ex->base, &j->cmd->src[1], hk, c0 + c);
    if (c + SP_ATTN_AHEAD < n) prefetch_row(j, &j->cmd->src[1], hk, c0 + c + SP_ATTN_AHEAD);
    for (int64_t g0 = 0; g0 < j->G; g0 += SP_CPU_MAX_NX) {
      int nx = (int)min_i64(j->G - g0, SP_CPU_MAX_NX);
      j->dot(j->D, k, q + g0 * j->D, (size_t)j->D * sizeof(float), nx, out);
      for (int x = 0; x < nx; x++) p[(g0 + x) * j->P + c] = out[x] * j->scale;
    }
  }
}

/* The k (src[1]) or v (src[2]) rows of kv head hk from key c0 on. */
static sp_attn_rows rows_from(const attn_job *j, const sp_tensor *t, int64_t hk, int64_t c0) {
  return (sp_attn_rows){row_at(j->ex->base, t, hk, c0), t->nb[1], j->f16};
}

/* Pass 1 of one chunk (queries already in w->q). */
static void score_chunk(const attn_job *j, int64_t item, int64_t chunk, const attn_work *w, const attn_item_buf *b) {
  int64_t c0 = chunk * SP_ATTN_CHUNK, n = chunk_keys(j, item, chunk), row0 = chunk_first_row(j, item, chunk);
  if (j->loops.scores_tiled) {
    sp_attn_rows k = rows_from(j, &j->cmd->src[1], item % j->Hkv, row0);
    j->loops.scores_tiled(&k, j->D, w->q, j->G, n, j->scale, b->p + c0, j->P);
  } else {
    chunk_scores(j, w->q, item % j->Hkv, row0, n, b->p + c0);
  }
  for (int64_t g = 0; g < j->G; g++)
    j->loops.exp(b->p + g * j->P + c0, n, &b->m[chunk * j->G + g], &b->l[chunk * j->G + g]);
}

/* Between the passes: each chunk's max becomes its factor exp(m - M) / S,
 * M the item's max and S = sum over chunks of exp(m - M) * l. With one
 * chunk the factor is (float)(1 / l), as in ggml's softmax. */
static void weigh_chunks(const attn_job *j, int64_t item, const attn_item_buf *b) {
  int64_t chunks = item_chunks(j, item), G = j->G;
  for (int64_t g = 0; g < G; g++) {
    float max = -INFINITY;
    for (int64_t c = 0; c < chunks; c++) max = b->m[c * G + g] > max ? b->m[c * G + g] : max;
    double sum = 0;
    for (int64_t c = 0; c < chunks; c++) sum += (double)attn_exp(b->m[c * G + g] - max) * b->l[c * G + g];
    float inv = (float)(1.0 / sum);
    for (int64_t c = 0; c < chunks; c++) b->m[c * G + g] = attn_exp(b->m[c * G + g] - max) * inv;
  }
}

/* ---- pass 2: values ---- */

/* Pass 2 of one chunk: probabilities (rounded to f16 for an f16 cache),
 * then their p.V into the chunk's acc. */
static void value_chunk(const attn_job *j, int64_t item, int64_t chunk, const attn_work *w, const attn_item_buf *b) {
  int64_t c0 = chunk * SP_ATTN_CHUNK, n = chunk_keys(j, item, chunk), row0 = chunk_first_row(j, item, chunk);
  for (int64_t g = 0; g < j->G; g++) {
    float *p = b->p + g * j->P + c0, factor = b->m[chunk * j->G + g];
    for (int64_t c = 0; c < n; c++) p[c] = p[c] * factor;
    if (j->f16) round_f16(p, n, w->h);
  }
  float *acc = b->acc + (size_t)(chunk * j->G * j->D);
  if (j->loops.values_tiled) {
    sp_attn_rows v = rows_from(j, &j->cmd->src[2], item % j->Hkv, row0);
    j->loops.values_tiled(&v, j->D, b->p + c0, j->P, j->G, n, acc);
  } else {
    values_plain(j, b->p + c0, item % j->Hkv, row0, n, w->v, acc);
  }
}

/* dst rows of the item's query heads = the chunks' p.V, added in chunk
 * order (into chunk 0's). */
static void finish_item(const attn_job *j, int64_t item, const attn_item_buf *b) {
  int64_t t = item / j->Hkv, h0 = item % j->Hkv * j->G, GD = j->G * j->D;
  for (int64_t c = 1; c < item_chunks(j, item); c++)
    for (int64_t i = 0; i < GD; i++) b->acc[i] = b->acc[i] + b->acc[c * GD + i];
  for (int64_t g = 0; g < j->G; g++)
    memcpy((float *)row_at(j->ex->base, &j->cmd->dst, h0 + g, t), b->acc + g * j->D, (size_t)j->D * sizeof(float));
}

/* ---- scheduling ---- */

/* Carves one item's arrays from `at` (item_floats floats). */
static attn_item_buf item_buf_at(const attn_job *j, float *at) {
  size_t mg = (size_t)(j->max_chunks * j->G);
  attn_item_buf b;
  b.p = at, at += round16((size_t)(j->G * j->P));
  b.m = at, at += round16(mg);
  b.l = (double *)at, at += round16(2 * mg);
  b.acc = at;
  return b;
}

static size_t item_buf_floats(const attn_job *j) {
  size_t mg = (size_t)(j->max_chunks * j->G);
  return round16((size_t)(j->G * j->P)) + round16(mg) + round16(2 * mg) + round16(mg * (size_t)j->D);
}

/* Task k's working arrays, carved from its area of j->work. */
static attn_work work_of(const attn_job *j, uint32_t task) {
  float *at = j->work + (size_t)task * j->work_floats;
  attn_work w;
  w.q = at, at += round16((size_t)(j->G * j->D));
  w.v = at, at += round16((size_t)(4 * j->D));
  w.h = (uint16_t *)at, at += round16(SP_ATTN_CHUNK / 2);
  w.own = j->split ? (attn_item_buf){0} : item_buf_at(j, at);
  return w;
}

static size_t work_area_floats(const attn_job *j) {
  return round16((size_t)(j->G * j->D)) + round16((size_t)(4 * j->D)) + round16(SP_ATTN_CHUNK / 2) +
         (j->split ? 0 : j->item_floats);
}

/* Item mode: both passes over every chunk of one item. */
static void attend_item(const attn_job *j, int64_t item, const attn_work *w) {
  int64_t chunks = item_chunks(j, item);
  load_queries(j, item, w);
  for (int64_t c = 0; c < chunks; c++) score_chunk(j, item, c, w, &w->own);
  weigh_chunks(j, item, &w->own);
  for (int64_t c = 0; c < chunks; c++) value_chunk(j, item, c, w, &w->own);
  finish_item(j, item, &w->own);
}

/* The token whose units include `unit` (first[] increases). */
static int64_t unit_token(const attn_job *j, int64_t unit) {
  int64_t lo = 0, hi = (int64_t)j->cmd->src[3].ne[0] - 1;
  while (lo < hi) {
    int64_t mid = (lo + hi + 1) / 2;
    if (j->first[mid] <= unit) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/* Split mode: one pass of one chunk, for heads_per_unit kv heads. A
 * token's units go chunk by chunk, kv heads inside, so the k and v rows of
 * one chunk (all kv heads side by side in the cache) are read once from
 * memory, together. After pass 2, the thread that finishes an item's last
 * chunk adds up the item (the acquire-release count makes the other
 * chunks' sums visible to it). */
static void attend_unit(const attn_job *j, int64_t unit, const attn_work *w) {
  int64_t t = unit_token(j, unit), local = unit - j->first[t], per_chunk = j->Hkv / j->heads_per_unit;
  int64_t chunk = local / per_chunk, hk0 = local % per_chunk * j->heads_per_unit;
  for (int64_t hk = hk0; hk < hk0 + j->heads_per_unit; hk++) {
    int64_t item = t * j->Hkv + hk;
    attn_item_buf b = item_buf_at(j, j->bufs + (size_t)item * j->item_floats);
    if (j->pass == 1) {
      load_queries(j, item, w);
      score_chunk(j, item, chunk, w, &b);
      continue;
    }
    value_chunk(j, item, chunk, w, &b);
    if (atomic_fetch_sub_explicit(&j->left[item], 1, memory_order_acq_rel) == 1) finish_item(j, item, &b);
  }
}

/* A task claims units one at a time until none are left: a thread that
 * is descheduled (the cores are shared) or has the long items of a causal
 * prompt's last tokens holds up one unit, not a share of them. There is one
 * task per thread, and one work area per task. */
static void attention_task(void *arg, uint32_t task) {
  const attn_job *j = arg;
  attn_work w = work_of(j, task);
  for (int64_t u; (u = atomic_fetch_add_explicit(j->next, 1, memory_order_relaxed)) < j->units;) {
    if (j->split) attend_unit(j, u, &w);
    else attend_item(j, u, &w);
  }
}

/* Runs attention_task on `tasks` tasks over units 0..units-1. */
static void run_units(attn_job *j) {
  _Atomic int64_t next;
  atomic_init(&next, 0);
  j->next = &next;
  sp_threadpool_run(j->ex->pool, j->tasks, attention_task, j);
}

/* ---- the op ---- */

/* Scratch floats after the positions for one mode: split mode's
 * bookkeeping and item arrays, then one work area per task (at most one
 * task per thread). */
static size_t mode_floats(attn_job *j, bool split, unsigned threads) {
  j->split = split;
  size_t n = threads * work_area_floats(j);
  if (split) n += round16((size_t)j->items + 1) + round16((size_t)j->items) + (size_t)j->items * j->item_floats;
  return n;
}

/* Lays out the chosen mode's arrays from `at` (see mode_floats). */
static void carve_scratch(attn_job *j, bool split, float *at) {
  j->split = split;
  j->work_floats = work_area_floats(j);
  if (split) {
    j->first = (uint32_t *)at, at += round16((size_t)j->items + 1);
    j->left = (_Atomic uint32_t *)at, at += round16((size_t)j->items);
    j->bufs = at, at += (size_t)j->items * j->item_floats;
  }
  j->work = at;
}

/* Whether whole items (one per unit) would leave threads idle: fewer
 * than four per thread, as in a decode step. */
static bool few_items(const attn_job *j, unsigned threads) {
  return threads > 1 && j->items < 4 * (int64_t)threads;
}

/* Split mode pays where there are few items and some item has more than
 * one chunk; a short context stays in item mode, where its few keys may
 * run on one thread without waking any other. */
static bool want_split(const attn_job *j, unsigned threads) {
  if (!few_items(j, threads)) return false;
  for (uint32_t t = 0; t < j->cmd->src[3].ne[0]; t++)
    if (token_keys(j, t) > SP_ATTN_CHUNK) return true;
  return false;
}

/* Copies the positions out of guest memory into the first pos_f floats
 * of scratch and checks the copy, which is all that is used afterwards:
 * a position decides addresses. */
static sp_error_t *copy_positions(const sp_cpu_exec *ex, attn_job *j, size_t pos_f) {
  uint32_t T = j->cmd->src[3].ne[0], C = j->cmd->src[1].ne[2];
  int32_t *pos = sp_cpu_scratch_reserve(ex->scratch, pos_f * sizeof(float));
  if (!pos) return sp_error_new("attention: out of scratch memory");
  memcpy(pos, ex->base + j->cmd->src[3].offset, (size_t)T * sizeof *pos);
  for (uint32_t i = 0; i < T; i++)
    if (pos[i] < 0 || (uint32_t)pos[i] >= C)
      return sp_error_with_status(SP_E_BOUNDS, "attention: src[3][%u] = %d is outside 0..%u", i, pos[i], C - 1);
  j->pos = pos;
  return NULL;
}

/* Sizes the arrays for the chunks the positions and the window reach
 * (not for the whole cache: scratch follows the keys really visited) and
 * reserves them after the positions, which are kept. Returns the scratch
 * past the positions, or NULL. */
static float *reserve_scratch(const sp_cpu_exec *ex, attn_job *j, size_t pos_f, unsigned threads) {
  j->max_chunks = 1;
  for (uint32_t t = 0; t < j->cmd->src[3].ne[0]; t++) j->max_chunks = max_i64(j->max_chunks, token_chunks(j, t));
  j->P = j->max_chunks * SP_ATTN_CHUNK;
  j->item_floats = item_buf_floats(j);
  bool split = want_split(j, threads);
  float *s = sp_cpu_scratch_reserve_keep(ex->scratch, (pos_f + mode_floats(j, split, threads)) * sizeof *s,
                                         pos_f * sizeof *s);
  j->pos = (const int32_t *)s;
  return s ? s + pos_f : NULL;
}

/* Item mode: whole items, on as many tasks as the keys to visit are worth
 * (one for a short prompt: waking workers would cost more). */
static void run_items(attn_job *j, unsigned threads) {
  uint64_t keys = 0;
  for (int64_t item = 0; item < j->items; item++) keys += (uint64_t)token_keys(j, item / j->Hkv);
  j->tasks = sp_cpu_task_count(j->ex, keys * (uint64_t)(j->G * j->D) / 4, 16384);
  j->tasks = (uint32_t)min_i64(min_i64(j->tasks, threads), j->items);
  j->units = j->items;
  run_units(j);
}

/* Split mode: pass 1 of every chunk, the factors, pass 2 of every chunk.
 * A unit takes all kv heads of a chunk where that still leaves at least
 * four units per thread, else one kv head. */
static void run_chunks(attn_job *j, unsigned threads) {
  int64_t T = j->cmd->src[3].ne[0], chunks = 0;
  for (int64_t t = 0; t < T; t++) chunks += token_chunks(j, t);
  j->heads_per_unit = chunks >= 4 * (int64_t)threads ? j->Hkv : 1;
  j->units = 0;
  for (int64_t t = 0; t < T; t++) {
    j->first[t] = (uint32_t)j->units;
    j->units += token_chunks(j, t) * (j->Hkv / j->heads_per_unit);
  }
  j->first[T] = (uint32_t)j->units;
  for (int64_t item = 0; item < j->items; item++)
    atomic_store_explicit(&j->left[item], (uint32_t)item_chunks(j, item), memory_order_relaxed);
  j->tasks = (uint32_t)min_i64(j->units, threads);
  j->pass = 1;
  run_units(j);
  for (int64_t item = 0; item < j->items; item++) {
    attn_item_buf b = item_buf_at(j, j->bufs + (size_t)item * j->item_floats);
    weigh_chunks(j, item, &b);
  }
  j->pass = 2;
  run_units(j);
}

sp_error_t *sp_cpu_attention(const sp_cpu_exec *ex, const sp_cmd *cmd) {
  const sp_tensor *q = &cmd->src[0], *k = &cmd->src[1];
  if (!ex->kern->dot[k->dtype]) return sp_error_new("attention: no dot kernel for %s", sp_dtype_name(k->dtype));
  unsigned threads = sp_threadpool_threads(ex->pool);
  attn_job j = {.ex = ex, .cmd = cmd, .dot = ex->kern->dot[k->dtype], .loops = loops_for(ex->kern),
                .scale = sp_f32_from_bits(cmd->param[0]), .window = cmd->param[1], .f16 = k->dtype == SP_DTYPE_F16,
                .D = q->ne[0], .G = q->ne[1] / k->ne[1], .Hkv = k->ne[1], .items = (int64_t)k->ne[1] * q->ne[2]};
  size_t pos_f = round16(cmd->src[3].ne[0]);
  sp_error_t *err = copy_positions(ex, &j, pos_f);
  if (err) return err;
  float *rest = reserve_scratch(ex, &j, pos_f, threads);
  if (!rest) return sp_error_new("attention: out of scratch memory");
  carve_scratch(&j, want_split(&j, threads), rest);
  if (j.split) run_chunks(&j, threads);
  else run_items(&j, threads);
  return NULL;
}
