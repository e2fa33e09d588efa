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
