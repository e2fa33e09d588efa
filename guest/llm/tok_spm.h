/*
 * tok_spm.h: SentencePiece-style merging for tokenizer.ggml.model "llama"
 * (Llama 2, Gemma 1-3, Phi-3 files), as llama.cpp's SPM tokenizer does it.
 *
 * The text arrives already prepared by tokenizer.c (space prefix added,
 * spaces replaced by U+2581 "▁"). It is cut into UTF-8 characters, then the
 * adjacent pair whose concatenation is a vocab token with the highest score
 * is merged, again and again (leftmost pair on ties), until no pair forms a
 * token. Each final piece becomes its id; a piece with no id falls back to
 * its bytes as <0xNN> tokens (or, failing that, the one-byte token, or the
 * unknown token).
 */
#ifndef SP_GUEST_TOK_SPM_H
#define SP_GUEST_TOK_SPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* Receives each id produced, in order. */
typedef void (*tok_emit_fn)(void *ctx, int32_t id);

/*
 * Encodes text[0..len) (raw bytes; need not be valid UTF-8).
 *   scores: [tok_n_vocab(v)] merge priorities (tokenizer.ggml.scores).
 *   unk: the unknown token's id, or -1 (a byte with no token is dropped).
 * Returns false when memory runs out (some ids may have been emitted).
 */
bool tok_spm_encode(const tok_vocab *v, const float *scores, int32_t unk, const uint8_t *text,
                    size_t len, tok_emit_fn emit, void *ctx);

#endif
