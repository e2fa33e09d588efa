/*
 * sampler.h: choosing the next token from logits, in the guest.
 *
 * The chain, in llama.cpp's default order: repetition penalty -> top-k ->
 * top-p -> min-p -> temperature -> a draw from the distribution. A
 * temperature <= 0 means greedy (argmax after the penalty). The random
 * generator is seeded explicitly and lives in linear memory, so the same
 * seed gives the same tokens, and a snapshot resumes the same stream.
 */
#ifndef LLM_SAMPLER_H
#define LLM_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct llm_sampler_params {
  float temperature;    /* <= 0: greedy */
  int32_t top_k;        /* 0: off */
  float top_p;          /* 1: off */
  float min_p;          /* 0: off */
  float repeat_penalty; /* 1: off */
  int32_t repeat_last_n;/* tokens the penalty looks back over */
  uint64_t seed;
  float presence_penalty;  /* subtracted once from each recent token (0: off) */
  float frequency_penalty; /* subtracted per occurrence in the window (0: off) */
} llm_sampler_params;

typedef struct llm_candidate {
  int32_t id;
  float logit; /* then probability, after softmax */
} llm_candidate;

typedef struct llm_sampler {
  llm_sampler_params params;
  uint64_t rng;             /* splitmix64 state */
  int32_t vocab;
  llm_candidate *cand;      /* [top_k or vocab] the kept candidates */
  float *saved;             /* [repeat_last_n] logits the penalty changed, for restoring */
  int32_t *saved_ids;       /* [repeat_last_n] their tokens */
  int32_t *recent;          /* ring of the last repeat_last_n tokens */
  int32_t *recent_rows;     /* the same tokens as logits rows (0 where out of range or
                               unfilled): indices a gather over the logits can use */
  int32_t n_recent, recent_head;
} llm_sampler;

/* Defaults: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, repetition
 * penalty 1.1 over 64 tokens, no presence or frequency penalty. The
 * presence and frequency penalties (OpenAI's, as llama.cpp applies them)
 * look at the same window of repeat_last_n tokens. */
llm_sampler_params llm_sampler_defaults(void);

/* Allocates the scratch for `vocab` tokens; 0 on success, -1 on OOM or bad
 * params (message in err). */
int llm_sampler_init(llm_sampler *s, const llm_sampler_params *p, int32_t vocab, char *err, int cap);
void llm_sampler_free(llm_sampler *s);

/* Picks a token from logits[vocab]. The repetition penalty adjusts a few of
 * them in place during the call; they hold their old values again when it
 * returns. */
int32_t llm_sampler_sample(llm_sampler *s, float *logits);

/* The candidates path. The host's top-k op (SP_OP_TOPK) gives the indices
 * of the m largest raw logits, a gather gives their values and the raw
 * logits of the recent tokens (rows llm_sampler_recent_rows()[0 ..
 * llm_sampler_recent_count())); from those alone the sampler picks exactly
 * the token llm_sampler_sample would: a penalty changes only recent tokens,
 * so the top_k best after it lie among the top_k + repeat_last_n best before
 * it and the recent tokens. The guest then reads some hundred numbers a
 * token instead of the whole vocabulary.
 *
 * The m the path needs (top_k + the recent window), or 0 when it does not
 * apply: greedy (the list's argmax serves, sampler.c says why), no top-k
 * truncation, or m above max_m or the vocabulary. */
int32_t llm_sampler_candidates_wanted(const llm_sampler *s, int32_t max_m);
const int32_t *llm_sampler_recent_rows(const llm_sampler *s);
int32_t llm_sampler_recent_count(const llm_sampler *s);

/* Picks a token from the m best raw logits (ids[i], values[i], best first,
 * m = llm_sampler_candidates_wanted) and the raw logits recent_values[i] of
 * the tokens of llm_sampler_recent_rows. */
int32_t llm_sampler_sample_candidates(llm_sampler *s, const int32_t *ids, const float *values, int32_t m,
                                      const float *recent_values);

/* Whether the sampler would pick `argmax`, the logits' argmax, without
 * looking at them: greedy, and no repetition penalty can move it (a
 * penalty > 1 only lowers recent tokens' logits; argmax is not one). */
bool llm_sampler_keeps_argmax(const llm_sampler *s, int32_t argmax);

/* Records a token (prompt or generated) for the repetition penalty. */
void llm_sampler_accept(llm_sampler *s, int32_t token);

/* Forgets every recorded token (the window is refilled by the caller). */
void llm_sampler_forget(llm_sampler *s);

/* Index of the largest logit (first on ties). */
int32_t llm_argmax(const float *logits, int32_t n);

#endif
