/* sampler.c: penalties, truncation, temperature and a seeded draw. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __wasm_simd128__
#include <wasm_simd128.h>
#endif

/* llama.cpp's defaults, with a mild repetition penalty: small chat models
 * loop without one. Greedy is --temp 0. */
llm_sampler_params llm_sampler_defaults(void) {
  llm_sampler_params p = {0.8f, 40, 0.95f, 0.05f, 1.1f, 64, 0x5eed, 0.0f, 0.0f};
  return p;
}

int llm_sampler_init(llm_sampler *s, const llm_sampler_params *p, int32_t vocab, char *err, int cap) {
  memset(s, 0, sizeof *s);
  if (vocab <= 0 || p->top_k < 0 || p->top_p <= 0 || p->top_p > 1 || p->min_p < 0 || p->min_p >= 1 ||
      p->repeat_penalty <= 0 || p->repeat_last_n < 0 || p->repeat_last_n > 1 << 20 ||
      !(p->presence_penalty >= -2 && p->presence_penalty <= 2) ||
      !(p->frequency_penalty >= -2 && p->frequency_penalty <= 2)) {
    snprintf(err, (size_t)cap, "sampler: invalid parameters (need top_k >= 0, 0 < top_p <= 1, "
                               "0 <= min_p < 1, repeat_penalty > 0, presence and frequency "
                               "penalties in -2..2)");
    return -1;
  }
  s->params = *p;
  s->vocab = vocab;
  s->rng = p->seed;
  size_t ring = (size_t)(p->repeat_last_n ? p->repeat_last_n : 1);
  s->cand = malloc(sizeof *s->cand * ((size_t)vocab + ring)); /* the candidates path adds recent tokens */
  s->saved = malloc(sizeof *s->saved * ring);
  s->saved_ids = malloc(sizeof *s->saved_ids * ring);
  s->recent = malloc(sizeof *s->recent * ring);
  s->recent_rows = calloc(ring, sizeof *s->recent_rows);
  if (!s->cand || !s->saved || !s->saved_ids || !s->recent || !s->recent_rows) {
    snprintf(err, (size_t)cap, "sampler: out of memory");
    llm_sampler_free(s);
    return -1;
  }
  return 0;
}

void llm_sampler_free(llm_sampler *s) {
  free(s->cand);
  free(s->saved);
  free(s->saved_ids);
  free(s->recent);
  free(s->recent_rows);
  s->cand = NULL, s->saved = NULL, s->saved_ids = NULL, s->recent = NULL, s->recent_rows = NULL;
}

void llm_sampler_accept(llm_sampler *s, int32_t token) {
  int32_t n = s->params.repeat_last_n;
  if (n == 0) return;
  s->recent[s->recent_head] = token;
  s->recent_rows[s->recent_head] = token >= 0 && token < s->vocab ? token : 0;
  s->recent_head = (s->recent_head + 1) % n;
  if (s->n_recent < n) s->n_recent++;
}

void llm_sampler_forget(llm_sampler *s) { s->n_recent = 0, s->recent_head = 0; }

#ifdef __wasm_simd128__
/* Four lanes, each keeping the first index of its own maximum; then the
 * greatest lane value, ties to the smallest index: the scalar loop's
 * answer (the first maximum) for any input without NaN. A vocabulary of
 * 128k logits takes a quarter of the time. */
int32_t llm_argmax(const float *logits, int32_t n) {
  if (n < 8) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
      if (logits[i] > logits[best]) best = i;
    return best;
  }
  v128_t top = wasm_v128_load(logits), best = wasm_i32x4_make(0, 1, 2, 3), idx = best;
  const v128_t four = wasm_i32x4_splat(4);
  int32_t i = 4;
  for (; i + 4 <= n; i += 4) {
    idx = wasm_i32x4_add(idx, four);
    v128_t v = wasm_v128_load(logits + i), gt = wasm_f32x4_gt(v, top);
    top = wasm_v128_bitselect(v, top, gt);
    best = wasm_v128_bitselect(idx, best, gt);
  }
  float tops[4];
  int32_t bests[4];
  wasm_v128_store(tops, top), wasm_v128_store(bests, best);
  int32_t pick = 0;
  for (int32_t l = 1; l < 4; l++)
    if (tops[l] > tops[pick] || (tops[l] == tops[pick] && bests[l] < bests[pick])) pick = l;
  float t = tops[pick];
  int32_t b = bests[pick];
  for (; i < n; i++)
    if (logits[i] > t) t = logits[i], b = i;
  return b;
}
#else
int32_t llm_argmax(const float *logits, int32_t n) {
  int32_t best = 0;
  float top = logits[0]; /* in a register: no load on the loop's critical path */
  for (int32_t i = 1; i < n; i++)
    if (logits[i] > top) top = logits[i], best = i;
  return best;
}
#endif

/* splitmix64: small, fast, and its whole state is one integer. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static bool penalties_on(const llm_sampler *s) {
  const llm_sampler_params *p = &s->params;
  return p->repeat_last_n > 0 && (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f);
}

/* The penalised logit of the recent token at ring slot i, whose raw logit is
 * raw: repetition (divide a positive logit, multiply a negative one), then
 * frequency (per occurrence in the window) and presence; false when the
 * slot is not its token's first, or the token is out of range (each
 * distinct token is penalised once). */
static bool penalised(const llm_sampler *s, int32_t i, float raw, float *out) {
  int32_t id = s->recent[i];
  if (id < 0 || id >= s->vocab) return false;
  for (int32_t j = 0; j < i; j++)
    if (s->recent[j] == id) return false;
  float frequency = s->params.frequency_penalty, penalty = s->params.repeat_penalty;
  int32_t count = 1;
  for (int32_t j = i + 1; frequency != 0.0f && j < s->n_recent; j++) count += s->recent[j] == id;
  float l = raw > 0 ? raw / penalty : raw * penalty;
  *out = l - ((float)count * frequency + s->params.presence_penalty);
  return true;
}

/* Penalises tokens seen recently, as llama.cpp does (divide positive
 * logits, multiply negative ones), each distinct token once, in place:
 * their old values go to s->saved for restore_penalty. Copying a 128k
 * vocabulary's logits instead would cost more than the argmax. Returns the
 * number of values saved. */
static int32_t apply_penalty(llm_sampler *s, float *logits) {
  int32_t n = 0;
  for (int32_t i = 0; penalties_on(s) && i < s->n_recent; i++) {
    int32_t id = s->recent[i];
    float l;
    if (id < 0 || id >= s->vocab || !penalised(s, i, logits[id], &l)) continue;
    s->saved[n] = logits[id], s->saved_ids[n++] = id;
    logits[id] = l;
  }
  return n;
}

static void restore_penalty(const llm_sampler *s, float *logits, int32_t n) {
  for (int32_t i = 0; i < n; i++) logits[s->saved_ids[i]] = s->saved[i];
}

/* The candidates' order, the host's SP_OP_TOPK order: larger logit first,
 * of equal logits the smaller id; NaN after every number. One total order
 * makes the full and the candidates paths keep the same top_k. */
static bool ranks_above(llm_candidate a, llm_candidate b) {
  bool a_nan = a.logit != a.logit, b_nan = b.logit != b.logit;
  if (a_nan != b_nan) return b_nan;
  if (!a_nan && a.logit != b.logit) return a.logit > b.logit;
  return a.id < b.id;
}

static int by_rank_desc(const void *a, const void *b) {
  llm_candidate x = *(const llm_candidate *)a, y = *(const llm_candidate *)b;
  return ranks_above(y, x) - ranks_above(x, y);
}

/* Restores the min-heap order of h[0..n) below position i (lowest ranked
 * at the root). */
static void sift_down(llm_candidate *h, int32_t n, int32_t i) {
  for (;;) {
    int32_t l = 2 * i + 1, r = l + 1, m = i;
    if (l < n && ranks_above(h[m], h[l])) m = l;
    if (r < n && ranks_above(h[m], h[r])) m = r;
    if (m == i) return;
    llm_candidate t = h[i];
    h[i] = h[m], h[m] = t;
    i = m;
  }
}

/* Keeps the k best of the n logits x in c[0..k), sorted best first, and
 * returns k. One pass with a min-heap of k entries: with 50k-128k logits a
 * token, repeated threshold passes or a full sort would cost more than a
 * GPU's whole forward pass. */
static int32_t keep_top_k(llm_candidate *c, const float *x, int32_t n, int32_t k) {
  if (k <= 0 || k > n) k = n;
  for (int32_t i = 0; i < k; i++) c[i] = (llm_candidate){i, x[i]};
  for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
  for (int32_t i = k; i < n; i++) {
    llm_candidate next = {i, x[i]};
    if (!ranks_above(next, c[0])) continue;
    c[0] = next;
    sift_down(c, k, 0);
  }
  qsort(c, (size_t)k, sizeof *c, by_rank_desc);
  return k;
}

static void softmax_sorted(llm_candidate *c, int32_t n, float temperature) {
  float max = c[0].logit, sum = 0;
  for (int32_t i = 0; i < n; i++) sum += c[i].logit = expf((c[i].logit - max) / temperature);
  for (int32_t i = 0; i < n; i++) c[i].logit /= sum;
}

/* The token from the n best candidates s->cand (penalised logits, sorted
 * best first): top-p, min-p, temperature and the draw. */
static int32_t draw(llm_sampler *s, int32_t n) {
  const llm_sampler_params *p = &s->params;
  /* top-p and min-p on probabilities at temperature 1, as llama.cpp. */
  softmax_sorted(s->cand, n, 1.0f);
  float cum = 0;
  int32_t keep = n;
  for (int32_t i = 0; i < n; i++) {
    cum += s->cand[i].logit;
    if (cum >= p->top_p) { keep = i + 1; break; }
  }
  float floor_p = p->min_p * s->cand[0].logit;
  while (keep > 1 && s->cand[keep - 1].logit < floor_p) keep--;
  /* Temperature on the survivors: p^(1/T), renormalised. */
  float sum = 0;
  for (int32_t i = 0; i < keep; i++) sum += s->cand[i].logit = powf(s->cand[i].logit, 1.0f / p->temperature);
  double r = (double)(next_random(&s->rng) >> 11) / 9007199254740992.0 * sum;
  for (int32_t i = 0; i < keep; i++) {
    r -= s->cand[i].logit;
    if (r <= 0) return s->cand[i].id;
  }
  return s->cand[keep - 1].id;
}

/* The token for penalised logits. */
static int32_t pick(llm_sampler *s, const float *logits) {
  if (s->params.temperature <= 0.0f) return llm_argmax(logits, s->vocab);
  return draw(s, keep_top_k(s->cand, logits, s->vocab, s->params.top_k));
}

bool llm_sampler_keeps_argmax(const llm_sampler *s, int32_t argmax) {
  float penalty = s->params.repeat_penalty;
  bool others = s->params.presence_penalty != 0.0f || s->params.frequency_penalty != 0.0f;
  if (s->params.temperature > 0.0f || penalty < 1.0f || s->params.presence_penalty < 0.0f ||
      s->params.frequency_penalty < 0.0f)
    return false;
  for (int32_t i = 0; (penalty != 1.0f || others) && i < s->n_recent; i++)
    if (s->recent[i] == argmax) return false;
  return true;
}

int32_t llm_sampler_sample(llm_sampler *s, float *logits) {
  int32_t saved = apply_penalty(s, logits);
  int32_t token = pick(s, logits);
  restore_penalty(s, logits, saved);
  return token;
}

/* ---- the candidates path ---- */

int32_t llm_sampler_candidates_wanted(const llm_sampler *s, int32_t max_m) {
  const llm_sampler_params *p = &s->params;
  /* Greedy reads the list's argmax; only when a penalty could move it
   * (rare: the argmax is a recent token) does it read the row, which costs
   * less than a TOPK on every step. */
  int32_t k = p->temperature <= 0.0f ? 0 : p->top_k;
  if (k <= 0) return 0;
  int64_t m = (int64_t)k + (penalties_on(s) ? p->repeat_last_n : 0);
  return m <= max_m && m <= s->vocab ? (int32_t)m : 0;
}

const int32_t *llm_sampler_recent_rows(const llm_sampler *s) { return s->recent_rows; }
int32_t llm_sampler_recent_count(const llm_sampler *s) { return s->params.repeat_last_n ? s->params.repeat_last_n : 1; }

int32_t llm_sampler_sample_candidates(llm_sampler *s, const int32_t *ids, const float *values, int32_t m,
                                      const float *recent_values) {
  int32_t n = 0;
  for (int32_t i = 0; i < m; i++) s->cand[n++] = (llm_candidate){ids[i], values[i]};
  for (int32_t i = 0; penalties_on(s) && i < s->n_recent; i++) {
    float l;
    if (!penalised(s, i, recent_values[i], &l)) continue;
    int32_t at = 0;
    while (at < n && s->cand[at].id != s->recent[i]) at++;
    if (at == n) n++;
    s->cand[at] = (llm_candidate){s->recent[i], l};
  }
  qsort(s->cand, (size_t)n, sizeof *s->cand, by_rank_desc);
  if (s->params.temperature <= 0.0f) return s->cand[0].id;
  return draw(s, n < s->params.top_k ? n : s->params.top_k);
}
