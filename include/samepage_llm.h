/*
 * samepage_llm.h: the record the LLM guest (guest/llm) leaves for its hosts
 * (the CLI, the server) after each decoding step.
 *
 * One guest call a token: llm_next() samples a token, feeds it back, and
 * returns the guest address of an sp_llm_step in its memory (0 when the
 * guest is broken). The host reads it in place; it holds until the next
 * call into the guest. Every field is guest-written data: a host checks
 * that the record lies inside the memory and that piece_len is at most
 * SP_LLM_PIECE_MAX before it reads the text.
 */
#ifndef SAMEPAGE_LLM_H
#define SAMEPAGE_LLM_H

#include <stddef.h>
#include <stdint.h>

#define SP_LLM_PIECE_MAX 512

typedef struct sp_llm_step {
  int32_t token;      /* the token sampled, or < 0 after a failure (llm_error_ptr says why) */
  uint32_t turn_done; /* 1: that token ended the turn (end of generation; it has no text) */
  uint32_t piece_len; /* bytes of text in piece */
  uint8_t piece[SP_LLM_PIECE_MAX]; /* the text this token completes, whole UTF-8 characters */
} sp_llm_step;

_Static_assert(sizeof(sp_llm_step) == 12 + SP_LLM_PIECE_MAX, "sp_llm_step has no padding");

/* The record at guest address `addr` (llm_next's i32 result) of a memory of
 * `size` bytes at `base`, or NULL when it does not lie inside it, is
 * misaligned, or claims more text than it holds. */
static inline const sp_llm_step *sp_llm_step_at(const uint8_t *base, size_t size, int64_t addr) {
  uint64_t at = (uint32_t)addr; /* an i32 result: addresses past 2 GiB come back negative */
  if (at == 0 || at % 4 || at + sizeof(sp_llm_step) > size) return NULL;
  const sp_llm_step *step = (const sp_llm_step *)(base + at);
  return step->piece_len <= SP_LLM_PIECE_MAX ? step : NULL;
}

#endif /* SAMEPAGE_LLM_H */
