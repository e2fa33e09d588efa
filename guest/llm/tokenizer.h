/*
 * tokenizer.h: the tokenizers of GGUF files, built from their metadata.
 *
 * tokenizer.ggml.model picks the family, as in llama.cpp:
 *   "gpt2"   byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM, ...): steps 1-4
 *            below;
 *   "llama"  SentencePiece (Llama 2, Gemma 1-3, Phi-3): special tokens cut
 *            out as in step 1, then each text stretch gets a " " in front
 *            (tokenizer.ggml.add_space_prefix, default on) when it follows
 *            the start or a special token, every space becomes U+2581 "▁",
 *            and the pieces merge by tokenizer.ggml.scores (tok_spm.h);
 *            a piece with no id falls back to <0xNN> byte tokens;
 *   "gemma4" BPE merges over raw UTF-8 with "▁" for spaces, split into
 *            lines first, <0xNN> byte fallback (Gemma 4).
 *
 * The vocabulary is read once from a parsed GGUF file (tokenizer.ggml.*):
 * token texts and merges stay in the file buffer; the tokenizer builds hash
 * maps (text -> id, merge pair -> rank), the list of special tokens and a
 * decoded-bytes cache for every id. Encoding and decoding then allocate only
 * scratch proportional to their input. The aim is id-for-id agreement with
 * llama.cpp, which is the reference our fixtures come from.
 *
 * Encoding a text:
 *
 *  1. Special tokens (control, user-defined, unknown) are cut out of the
 *     text first, longest first. Control and unknown ones only when
 *     parse_special is true; user-defined ones always (as llama.cpp does).
 *  2. Each remaining stretch is decoded as UTF-8 (bad bytes become U+FFFD)
 *     and split into pre-tokens by the model's pre-tokenizer
 *     (tokenizer.ggml.pre), hand-written here for: "smollm" (digits one by
 *     one, then the GPT-2 rules), "gpt2"/"gpt-2", "llama-bpe"/"llama3"
 *     (Llama 3 rules, whole-word vocab hits skip merging), "qwen2",
 *     "qwen35" (Qwen2's with marks as letters), "falcon", "default" and the
 *     other names llama.cpp maps to these. Others are rejected at load.
 *  3. Each pre-token's UTF-8 bytes are mapped to printable codepoints (the
 *     GPT-2 byte-to-unicode map) and merged pairwise, lowest merge rank
 *     first (leftmost on ties), until no ranked pair remains.
 *  4. Each final piece becomes its vocab id; a piece with no id (or whose id
 *     is a control/unknown token, which BPE never produces) falls back to
 *     the ids of its single bytes, as llama.cpp does.
 *
 * Decoding maps ids back to bytes ("▁" back to a space in SentencePiece
 * texts, <0xNN> to its byte); tok_decode drops the space the encoder
 * prefixed, as llama.cpp's detokenize does; tok_decoder streams pieces and
 * only hands out whole UTF-8 sequences, holding back a partial one.
 */
#ifndef SP_GUEST_TOKENIZER_H
#define SP_GUEST_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef enum tok_status {
  TOK_OK = 0,
  TOK_E_FORMAT = -1,      /* tokenizer metadata missing, mistyped or inconsistent */
  TOK_E_UNSUPPORTED = -2, /* tokenizer model or pre-tokenizer not implemented */
  TOK_E_NOMEM = -3,       /* malloc failed */
  TOK_E_SPACE = -4,       /* output buffer too small (the needed size is reported) */
  TOK_E_ID = -5,          /* token id out of range */
  TOK_E_ARG = -6          /* NULL argument */
} tok_status;

/* Token attributes, as bit flags (llama.cpp's llama_token_attr values). */
#define TOK_ATTR_UNKNOWN 0x01
#define TOK_ATTR_UNUSED 0x02
#define TOK_ATTR_NORMAL 0x04
#define TOK_ATTR_CONTROL 0x08
#define TOK_ATTR_USER_DEFINED 0x10
#define TOK_ATTR_BYTE 0x20

typedef struct tok_vocab tok_vocab;

/*
 * Builds a tokenizer from a parsed GGUF file.
 *   g: the parsed file (borrowed; it and its buffer must outlive the vocab).
 *   out: receives the vocab (owned by the caller; tok_vocab_free it).
 *   err, err_cap: a NUL-terminated message on failure (may be NULL), e.g.
 *     "tok: unsupported pre-tokenizer 'qwen35'".
 * Returns TOK_OK, TOK_E_FORMAT (missing or bad tokenizer.ggml.* keys, e.g.
 * scores of the wrong type or length or NaN, no merges for a BPE model,
 * duplicate token texts), TOK_E_UNSUPPORTED (tokenizer.ggml.model not
 * "gpt2", "llama" or "gemma4", or an unknown tokenizer.ggml.pre) or
 * TOK_E_NOMEM.
 */
tok_status tok_vocab_new(const gguf_ctx *g, tok_vocab **out, char *err, size_t err_cap);

/* Frees a vocab (NULL is fine). */
void tok_vocab_free(tok_vocab *v);

/* Number of token ids (valid ids are 0..n-1). */
uint32_t tok_n_vocab(const tok_vocab *v);

/* Special ids from the metadata, or -1 when the model has none. */
int32_t tok_bos(const tok_vocab *v);
int32_t tok_eos(const tok_vocab *v);
int32_t tok_eot(const tok_vocab *v); /* end of turn, e.g. <|im_end|> */

/* Whether prompts should start with BOS (tokenizer.ggml.add_bos_token, else
 * the pre-tokenizer's default). tok_encode never adds it by itself. */
bool tok_add_bos(const tok_vocab *v);

/* The pre-tokenizer name in effect ("smollm", "default", ...). */
const char *tok_pre_name(const tok_vocab *v);

/* TOK_ATTR_* flags of an id (0 for an invalid id). */
uint32_t tok_attr(const tok_vocab *v, int32_t id);

/* Whether generating this id ends the turn (EOS, EOT, <|im_end|>, ...). */
bool tok_is_eog(const tok_vocab *v, int32_t id);

/* The id whose vocab text is exactly text[0..len), or -1. */
int32_t tok_find(const tok_vocab *v, const char *text, size_t len);

/*
 * Encodes UTF-8 text (any bytes are accepted) into token ids.
 *   text, len: the input (borrowed; need not be NUL-terminated).
 *   parse_special: match control tokens such as "<|im_start|>" in the text.
 *   out, cap: receives up to cap ids.
 *   n_out: receives the number of ids the text encodes to, even when that
 *     exceeds cap (then TOK_E_SPACE is returned and out holds the first cap).
 * Returns TOK_OK, TOK_E_SPACE, TOK_E_NOMEM or TOK_E_ARG.
 */
tok_status tok_encode(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                      int32_t *out, size_t cap, size_t *n_out);

/*
 * The bytes an id decodes to: a normal token's bytes, a user-defined
 * token's text, a control/unknown token's text only when render_special
 * (else nothing). The bytes are owned by the vocab.
 * Returns TOK_OK or TOK_E_ID (bytes and len untouched).
 */
tok_status tok_piece(const tok_vocab *v, int32_t id, bool render_special, const char **bytes,
                     size_t *len);

/* Decodes ids into out[0..cap); *n_out gets the full decoded length (even
 * past cap, with TOK_E_SPACE). With add_space_prefix (SentencePiece) one
 * leading space of the first piece is dropped. Returns TOK_E_ID at the
 * first invalid id. */
tok_status tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, bool render_special,
                      char *out, size_t cap, size_t *n_out);

/* ---- streaming decoder ---- */

/* Caller-owned; fields are private. */
typedef struct tok_decoder {
  const tok_vocab *vocab;
  bool render_special;
  uint8_t *buf;    /* held-back bytes, then the current output */
  size_t cap;      /* bytes in buf */
  size_t held_off; /* where the held-back tail of the last output starts */
  size_t n_held;   /* its length (an unfinished UTF-8 sequence, < 4) */
} tok_decoder;

/* Prepares a decoder for `v` (borrowed). Returns TOK_OK or TOK_E_NOMEM. */
tok_status tok_decoder_init(tok_decoder *d, const tok_vocab *v, bool render_special);

/* Releases the decoder's buffer. */
void tok_decoder_deinit(tok_decoder *d);

/*
 * Feeds one id. *bytes and *n receive the bytes now ready: whole UTF-8
 * sequences, possibly completing one held back earlier; an unfinished
 * sequence at the end is held for the next call. Bytes that can never form
 * valid UTF-8 are passed through, not held. The bytes stay valid until the
 * next push/flush/deinit. Returns TOK_OK or TOK_E_ID (nothing consumed).
 */
tok_status tok_decoder_push(tok_decoder *d, int32_t id, const char **bytes, size_t *n);

/* Hands out whatever is still held (an incomplete sequence) and resets. */
tok_status tok_decoder_flush(tok_decoder *d, const char **bytes, size_t *n);

#endif
