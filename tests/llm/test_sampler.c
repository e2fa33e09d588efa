/*
 * test_sampler.c: the guest sampler's two paths pick the same tokens
 * (guest/llm/sampler.h, "the candidates path"), natively.
 *
 * For random sampler settings (greedy and sampled; top_k 1..200; top_p,
 * min_p; repetition, presence and frequency penalties, positive and
 * negative; windows of 0..64 tokens with repeats) and random logits
 * (wide, with long runs of equal values, with recent tokens among the
 * best and the worst), one sampler draws from the whole row
 * (llm_sampler_sample) and a twin from what the host's SP_OP_TOPK and its
 * gathers would give it: the m best indices by (value, then index) and
 * the recent tokens' raw logits. Every token must be equal, and the random
 * streams must stay in step (the twins keep drawing the same numbers).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t next_u32(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}
static float uniform(float lo, float hi) { return lo + (hi - lo) * (float)(next_u32() >> 8) / 16777216.0f; }

static const float *order_row;
static int by_value_then_index(const void *a, const void *b) {
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (order_row[i] != order_row[j]) return order_row[i] > order_row[j] ? -1 : 1;
  return i < j ? -1 : 1;
}

static llm_sampler_params random_params(void) {
  llm_sampler_params p = llm_sampler_defaults();
  p.temperature = next_u32() % 5 == 0 ? 0.0f : uniform(0.1f, 2.0f);
  p.top_k = 1 + (int32_t)(next_u32() % 200);
  p.top_p = next_u32() % 3 == 0 ? 1.0f : uniform(0.05f, 1.0f);
  p.min_p = next_u32() % 3 == 0 ? 0.0f : uniform(0.0f, 0.5f);
  p.repeat_penalty = next_u32() % 4 == 0 ? 1.0f : uniform(0.5f, 2.0f);
  p.repeat_last_n = (int32_t)(next_u32() % 65);
  p.presence_penalty = next_u32() % 2 ? 0.0f : uniform(-2.0f, 2.0f);
  p.frequency_penalty = next_u32() % 2 ? 0.0f : uniform(-2.0f, 2.0f);
  p.seed = next_u32();
  return p;
}

static void random_logits(float *x, int32_t vocab, int kind) {
  for (int32_t i = 0; i < vocab; i++) {
    if (kind == 0) x[i] = uniform(-10, 10);
    else if (kind == 1) x[i] = (float)(next_u32() % 7) - 3.0f; /* long runs of ties */
    else x[i] = next_u32() % 50 == 0 ? uniform(5, 15) : uniform(-20, 0);
  }
}

int main(void) {
  const int32_t vocab = 3000;
  float *logits = malloc(sizeof *logits * vocab), *copy = malloc(sizeof *copy * vocab);
  int32_t *order = malloc(sizeof *order * vocab), *ids = malloc(sizeof *ids * vocab);
  float *values = malloc(sizeof *values * vocab), recent_values[64];
  int failures = 0, draws = 0, candidates = 0;
  char err[256];
  for (int trial = 0; trial < 400; trial++) {
    llm_sampler_params p = random_params();
    llm_sampler full, twin;
    if (llm_sampler_init(&full, &p, vocab, err, sizeof err) || llm_sampler_init(&twin, &p, vocab, err, sizeof err)) {
      printf("FAIL init: %s\n", err);
      return 1;
    }
    /* a window with repeats, some of them among the best logits */
    int32_t pool = 1 + (int32_t)(next_u32() % 40);
    for (int32_t i = 0; i < (int32_t)(next_u32() % 100); i++) {
      int32_t t = (int32_t)(next_u32() % (uint32_t)pool) * 7 % vocab;
      llm_sampler_accept(&full, t), llm_sampler_accept(&twin, t);
    }
    int32_t m = llm_sampler_candidates_wanted(&twin, 1024);
    for (int step = 0; step < 8; step++) {
      random_logits(logits, vocab, (trial + step) % 3);
      if (next_u32() % 2) /* a recent token on top */
        logits[llm_sampler_recent_rows(&twin)[0]] = 30.0f;
      memcpy(copy, logits, sizeof *copy * vocab);
      int32_t want = llm_sampler_sample(&full, copy);
      int32_t got = want;
      if (m > 0) {
        for (int32_t i = 0; i < vocab; i++) order[i] = i;
        order_row = logits;
        qsort(order, (size_t)vocab, sizeof *order, by_value_then_index);
        for (int32_t i = 0; i < m; i++) ids[i] = order[i], values[i] = logits[order[i]];
        const int32_t *rows = llm_sampler_recent_rows(&twin);
        for (int32_t i = 0; i < llm_sampler_recent_count(&twin); i++) recent_values[i] = logits[rows[i]];
        got = llm_sampler_sample_candidates(&twin, ids, values, m, recent_values);
        candidates++;
      } else {
        got = llm_sampler_sample(&twin, logits);
      }
      draws++;
      bool ok = got == want && full.rng == twin.rng && !memcmp(logits, copy, sizeof *copy * vocab);
      if (!ok && failures++ < 10)
        printf("FAIL trial %d step %d: full %d, candidates %d (m %d, temp %g, top_k %d, top_p %g, min_p %g, "
               "penalty %g over %d, presence %g, frequency %g)\n",
               trial, step, want, got, m, (double)p.temperature, p.top_k, (double)p.top_p, (double)p.min_p,
               (double)p.repeat_penalty, p.repeat_last_n, (double)p.presence_penalty, (double)p.frequency_penalty);
      llm_sampler_accept(&full, want), llm_sampler_accept(&twin, got);
    }
    llm_sampler_free(&full), llm_sampler_free(&twin);
  }
  printf("%s %d draws (%d through candidates), %d differ\n", failures ? "FAIL" : "ok  ", draws, candidates, failures);
  free(logits), free(copy), free(order), free(ids), free(values);
  return failures ? 1 : 0;
}
