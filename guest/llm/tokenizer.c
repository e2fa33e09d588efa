/*
 * tokenizer.c: GGUF tokenizers (byte-level BPE, SentencePiece, Gemma 4 BPE),
 * matching llama.cpp's id for id (see tokenizer.h for the pipelines).
 *
 * Sections: load (metadata -> tables), BPE merging, SentencePiece text
 * preparation, special-token partitioning, encode, decode. The
 * pre-tokenizer splits live in unicode.c (tok_split) and score-ordered
 * merging in tok_spm.c; this file names which passes each
 * tokenizer.ggml.pre value runs, in llama.cpp's order.
 */
#include "tokenizer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_spm.h"
#include "unicode.h"

/* Internal attribute bits kept next to TOK_ATTR_* in tok_vocab.attr. */
#define ATTR_EOG 0x100
#define ATTR_RSTRIP 0x200 /* white space after this special token is dropped */

/* The three vocabulary families (tokenizer.ggml.model). */
typedef enum tok_kind {
  KIND_BPE,    /* "gpt2": byte-level BPE over the GPT-2 byte map */
  KIND_SPM,    /* "llama": SentencePiece, score-ordered merges (tok_spm.c) */
  KIND_BPE_SPM /* "gemma4": BPE merges over raw UTF-8 with "▁" for spaces */
} tok_kind;

/* ---- pre-tokenizers: tokenizer.ggml.pre -> split passes ---- */

#define MAX_PASSES 4

typedef struct pre_def {
  const char *name;
  uint8_t passes[MAX_PASSES + 1];
  bool ignore_merges; /* a pre-token found whole in the vocab skips merging */
  bool add_bos;       /* default when tokenizer.ggml.add_bos_token is absent */
} pre_def;

/* Names as llama.cpp spells them (llama-vocab.cpp), with the passes of the
 * regex list llama.cpp uses for each. */
static const pre_def pre_defs[] = {
    {"default",
     {TOK_SPLIT_PUNCT_RUNS, TOK_SPLIT_GPT2, TOK_SPLIT_NUMBER_RUNS, TOK_SPLIT_DIGIT_TRIPLES},
     false, false},
    {"gpt-2", {TOK_SPLIT_GPT2}, false, false},
    {"gpt2", {TOK_SPLIT_GPT2}, false, false},
    {"phi-2", {TOK_SPLIT_GPT2}, false, false},
    {"mpt", {TOK_SPLIT_GPT2}, false, false},
    {"olmo", {TOK_SPLIT_GPT2}, false, false},
    {"smollm", {TOK_SPLIT_EACH_NUMBER, TOK_SPLIT_GPT2}, false, false},
    {"starcoder", {TOK_SPLIT_EACH_NUMBER, TOK_SPLIT_GPT2}, false, false},
    {"refact", {TOK_SPLIT_EACH_NUMBER, TOK_SPLIT_GPT2}, false, false},
    {"command-r", {TOK_SPLIT_EACH_NUMBER, TOK_SPLIT_GPT2}, false, false},
    {"codeshell", {TOK_SPLIT_EACH_NUMBER, TOK_SPLIT_GPT2}, false, false},
    {"llama3", {TOK_SPLIT_LLAMA3}, true, true},
    {"llama-v3", {TOK_SPLIT_LLAMA3}, true, true},
    {"llama-bpe", {TOK_SPLIT_LLAMA3}, true, true},
    {"falcon3", {TOK_SPLIT_LLAMA3}, true, true},
    {"pixtral", {TOK_SPLIT_LLAMA3}, true, true},
    {"dbrx", {TOK_SPLIT_LLAMA3}, false, false},
    {"smaug-bpe", {TOK_SPLIT_LLAMA3}, false, false},
    {"qwen2", {TOK_SPLIT_QWEN2}, false, false},
    {"qwen35", {TOK_SPLIT_QWEN35}, false, false},
    {"stablelm2", {TOK_SPLIT_QWEN2}, false, false},
    {"falcon", {TOK_SPLIT_PUNCT_RUNS_BT, TOK_SPLIT_GPT2, TOK_SPLIT_DIGIT_TRIPLES}, false, false},
    /* llama.cpp always uses this one for tokenizer.ggml.model "gemma4" and
     * forces BOS on. */
    {"gemma4", {TOK_SPLIT_NEWLINE_RUNS}, false, true},
};

/* SentencePiece vocabularies have no pre-tokenizer: the whole text merges. */
static const pre_def spm_pre = {"spm", {TOK_SPLIT_END}, false, true};


/* ---- the vocab ---- */

/* A merge rule "left right": left = s[0..left_len), right follows the space. */
typedef struct merge {
  const char *s;
  uint32_t left_len;
  uint32_t right_len;
  uint32_t rank; /* index in tokenizer.ggml.merges */
} merge;

struct tok_vocab {
  uint32_t n;               /* token count */
  const char **text;        /* [n] vocab texts, in the GGUF buffer */
  uint32_t *len;            /* [n] their byte lengths */
  uint16_t *attr;           /* [n] TOK_ATTR_* | ATTR_EOG */
  uint32_t *tok_slots;      /* text -> id + 1 (open addressing) */
  uint32_t tok_mask;
  merge *merges;            /* [n_merges] */
  uint32_t n_merges;
  uint32_t *merge_slots;    /* (left, right) -> merge index + 1 */
  uint32_t merge_mask;
  int32_t *specials;        /* ids matched in text before BPE, longest first */
  uint32_t n_specials;
  char *pieces;             /* decoded bytes of every id, back to back */
  uint32_t *piece_off;      /* [n + 1] */
  int32_t bos, eos, eot, unk;
  bool add_bos;
  const pre_def *pre;
  tok_kind kind;
  float *scores;          /* [n] SPM merge priorities (tokenizer.ggml.scores) */
  bool add_space_prefix;  /* SPM: a text after BOS/special starts with "▁" */
};

/* ---- errors ---- */

typedef struct loader {
  const gguf_ctx *g;
  tok_vocab *v;
  char *err;
  size_t err_cap;
} loader;

static tok_status fail(loader *l, tok_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "tok: <message>" and returns st. */
static tok_status fail(loader *l, tok_status st, const char *fmt, ...) {
  if (!l->err || l->err_cap < 8) return st;
  memcpy(l->err, "tok: ", 6);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(l->err + 5, l->err_cap - 5, fmt, ap);
  va_end(ap);
  return st;
}

/* ---- hashing ---- */

static uint32_t fnv(uint32_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 16777619u;
  return h;
}

#define FNV_SEED 2166136261u

/* A zeroed slot table with at least 2n slots (power of two). */
static uint32_t *slots_new(uint64_t n, uint32_t *mask) {
  uint64_t cap = 16;
  while (cap < 2 * n) cap <<= 1;
  if (cap > SIZE_MAX / sizeof(uint32_t)) return NULL;
  *mask = (uint32_t)(cap - 1);
  return calloc((size_t)cap, sizeof(uint32_t));
}

int32_t tok_find(const tok_vocab *v, const char *text, size_t len) {
  if (!v || (!text && len)) return -1;
  for (uint32_t h = fnv(FNV_SEED, text, len) & v->tok_mask;; h = (h + 1) & v->tok_mask) {
    uint32_t s = v->tok_slots[h];
    if (s == 0) return -1;
    if (v->len[s - 1] == len && memcmp(v->text[s - 1], text, len) == 0) return (int32_t)(s - 1);
  }
}

static uint32_t merge_hash(const char *a, size_t an, const char *b, size_t bn) {
  static const uint8_t sep = 0xff; /* never inside UTF-8 text */
  return fnv(fnv(fnv(FNV_SEED, a, an), &sep, 1), b, bn);
}

/* The slot holding the pair, or the empty slot where it would go. */
static uint32_t merge_slot(const tok_vocab *v, const char *a, size_t an, const char *b,
                           size_t bn) {
  for (uint32_t h = merge_hash(a, an, b, bn) & v->merge_mask;; h = (h + 1) & v->merge_mask) {
    uint32_t s = v->merge_slots[h];
    if (s == 0) return h;
    const merge *m = &v->merges[s - 1];
    if (m->left_len == an && m->right_len == bn && memcmp(m->s, a, an) == 0 &&
        memcmp(m->s + an + 1, b, bn) == 0)
      return h;
  }
}

/* The rank of merging a with b, or -1. */
static int64_t merge_rank(const tok_vocab *v, const char *a, size_t an, const char *b,
                          size_t bn) {
  uint32_t s = v->merge_slots[merge_slot(v, a, an, b, bn)];
  return s ? (int64_t)v->merges[s - 1].rank : -1;
}

/* ---- load ---- */

/* A required string array key, with its length. */
static tok_status find_str_array(loader *l, const char *key, int64_t *idx, uint64_t *n) {
  *idx = gguf_find_key(l->g, key);
  if (*idx < 0) return fail(l, TOK_E_FORMAT, "missing %s", key);
  if (gguf_arr_type(l->g, *idx) != GGUF_TYPE_STRING)
    return fail(l, TOK_E_FORMAT, "%s is not an array of strings", key);
  *n = gguf_arr_n(l->g, *idx);
  return TOK_OK;
}

/* True when the string value of `key` equals s (absent keys never do). */
static bool key_str_is(const gguf_ctx *g, int64_t idx, const char *s) {
  size_t n;
  const char *v = gguf_get_string(g, idx, &n);
  return v && n == strlen(s) && memcmp(v, s, n) == 0;
}

/* The pre-tokenizer named by tokenizer.ggml.pre (absent: "default"). */
static tok_status load_pre(loader *l) {
  int64_t p = gguf_find_key(l->g, "tokenizer.ggml.pre");
  size_t n = 0;
  const char *name = p >= 0 ? gguf_get_string(l->g, p, &n) : NULL;
  if (p >= 0 && !name) return fail(l, TOK_E_FORMAT, "tokenizer.ggml.pre is not a string");
  if (!name) { /* llama.cpp falls back to "default" too */
    l->v->pre = &pre_defs[0];
    return TOK_OK;
  }
  for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++) {
    if (key_str_is(l->g, p, pre_defs[i].name)) {
      l->v->pre = &pre_defs[i];
      return TOK_OK;
    }
  }
  return fail(l, TOK_E_UNSUPPORTED, "unsupported pre-tokenizer '%.*s'", (int)(n > 64 ? 64 : n),
              name);
}

static const pre_def *find_pre(const char *name) {
  for (size_t i = 0; i < sizeof pre_defs / sizeof pre_defs[0]; i++)
    if (strcmp(pre_defs[i].name, name) == 0) return &pre_defs[i];
  return &pre_defs[0];
}

/* tokenizer.ggml.model picks the family; each family has llama.cpp's
 * defaults for the space prefix (SPM only, overridable by
 * tokenizer.ggml.add_space_prefix) and the pre-tokenizer. */
static tok_status load_kind(loader *l) {
  int64_t m = gguf_find_key(l->g, "tokenizer.ggml.model");
  size_t n = 0;
  const char *model = m >= 0 ? gguf_get_string(l->g, m, &n) : NULL;
  if (m < 0) return fail(l, TOK_E_FORMAT, "missing tokenizer.ggml.model");
  if (!model) return fail(l, TOK_E_FORMAT, "tokenizer.ggml.model is not a string");
  tok_vocab *v = l->v;
  if (key_str_is(l->g, m, "gpt2")) {
    v->kind = KIND_BPE;
    return load_pre(l);
  }
  if (key_str_is(l->g, m, "llama")) {
    v->kind = KIND_SPM;
    v->pre = &spm_pre;
    v->add_space_prefix = true;
  } else if (key_str_is(l->g, m, "gemma4")) {
    v->kind = KIND_BPE_SPM;
    v->pre = find_pre("gemma4");
  } else {
    return fail(l, TOK_E_UNSUPPORTED,
                "unsupported tokenizer.ggml.model '%.*s' (expected gpt2, llama or gemma4)",
                (int)(n > 64 ? 64 : n), model);
  }
  bool b;
  if (gguf_get_bool(l->g, gguf_find_key(l->g, "tokenizer.ggml.add_space_prefix"), &b))
    v->add_space_prefix = b;
  return TOK_OK;
}

static tok_status load_tokens(loader *l) {
  tok_vocab *v = l->v;
  int64_t idx = -1;
  uint64_t n = 0;
  tok_status st = find_str_array(l, "tokenizer.ggml.tokens", &idx, &n);
  if (st) return st;
  if (n == 0 || n > INT32_MAX)
    return fail(l, TOK_E_FORMAT, "vocab size %llu", (unsigned long long)n);
  v->n = (uint32_t)n;
  v->text = calloc(n, sizeof *v->text);
  v->len = calloc(n, sizeof *v->len);
  v->attr = calloc(n, sizeof *v->attr);
  v->tok_slots = slots_new(n, &v->tok_mask);
  if (!v->text || !v->len || !v->attr || !v->tok_slots) return fail(l, TOK_E_NOMEM, "no memory");
  for (uint32_t i = 0; i < v->n; i++) {
    size_t len;
    v->text[i] = gguf_get_arr_str(l->g, idx, i, &len);
    if (len > UINT32_MAX) return fail(l, TOK_E_FORMAT, "token %u is too long", i);
    v->len[i] = (uint32_t)len;
    v->attr[i] = TOK_ATTR_NORMAL;
    if (len == 0) continue; /* never matched; decodes to nothing */
    uint32_t h = fnv(FNV_SEED, v->text[i], len) & v->tok_mask;
    for (; v->tok_slots[h]; h = (h + 1) & v->tok_mask) {
      uint32_t o = v->tok_slots[h] - 1;
      if (v->len[o] == len && memcmp(v->text[o], v->text[i], len) == 0)
        return fail(l, TOK_E_FORMAT, "duplicate token text: ids %u and %u", o, i);
    }
    v->tok_slots[h] = i + 1;
  }
  return TOK_OK;
}

/* tokenizer.ggml.token_type values (llama_token_type) -> attributes. */
static uint16_t attr_of_type(int64_t t) {
  switch (t) {
    case 1: return TOK_ATTR_NORMAL;
    case 2: return TOK_ATTR_UNKNOWN;
    case 3: return TOK_ATTR_CONTROL;
    case 4: return TOK_ATTR_USER_DEFINED;
    case 5: return TOK_ATTR_UNUSED;
    case 6: return TOK_ATTR_BYTE;
    default: return 0; /* undefined */
  }
}

static tok_status load_types(loader *l) {
  int64_t idx = gguf_find_key(l->g, "tokenizer.ggml.token_type");
  if (idx < 0) return TOK_OK; /* all normal */
  if (gguf_kv_type(l->g, idx) != GGUF_TYPE_ARRAY || gguf_arr_n(l->g, idx) < l->v->n)
    return fail(l, TOK_E_FORMAT, "tokenizer.ggml.token_type is not an array of %u ints", l->v->n);
  for (uint32_t i = 0; i < l->v->n; i++) {
    int64_t t;
    if (!gguf_get_arr_int(l->g, idx, i, &t))
      return fail(l, TOK_E_FORMAT, "tokenizer.ggml.token_type[%u] is not an integer", i);
    l->v->attr[i] = attr_of_type(t);
  }
  return TOK_OK;
}

/* tokenizer.ggml.scores (float or int, as llama.cpp accepts): the SPM merge
 * priorities. Absent scores are all 0, which still merges, leftmost first. */
static tok_status load_scores(loader *l) {
  tok_vocab *v = l->v;
  if (v->kind != KIND_SPM) return TOK_OK;
  v->scores = calloc(v->n, sizeof *v->scores);
  if (!v->scores) return fail(l, TOK_E_NOMEM, "no memory for scores");
  int64_t idx = gguf_find_key(l->g, "tokenizer.ggml.scores");
  if (idx < 0) return TOK_OK;
  gguf_type t = gguf_arr_type(l->g, idx);
  if (gguf_kv_type(l->g, idx) != GGUF_TYPE_ARRAY ||
      (t != GGUF_TYPE_FLOAT32 && t != GGUF_TYPE_INT32) || gguf_arr_n(l->g, idx) < v->n)
    return fail(l, TOK_E_FORMAT, "tokenizer.ggml.scores is not an array of %u numbers", v->n);
  for (uint32_t i = 0; i < v->n; i++) {
    int64_t k = 0;
    bool ok = t == GGUF_TYPE_FLOAT32 ? gguf_get_arr_f32(l->g, idx, i, &v->scores[i])
                                     : gguf_get_arr_int(l->g, idx, i, &k);
    if (t == GGUF_TYPE_INT32) v->scores[i] = (float)k;
    if (!ok || v->scores[i] != v->scores[i]) /* NaN would break the heap order */
      return fail(l, TOK_E_FORMAT, "tokenizer.ggml.scores[%u] is not a number", i);
  }
  return TOK_OK;
}

/* Adds merge i ("left right", split at the first space after byte 0, as
 * llama.cpp does); a repeated pair keeps its first (lowest) rank. */
static void add_merge(tok_vocab *v, const char *s, size_t len, uint32_t rank) {
  const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
  if (!sp) return; /* llama.cpp records ("", ""), which can never match */
  size_t ln = (size_t)(sp - s), rn = len - ln - 1;
  uint32_t h = merge_slot(v, s, ln, sp + 1, rn);
  if (v->merge_slots[h]) return;
  v->merges[v->n_merges] = (merge){s, (uint32_t)ln, (uint32_t)rn, rank};
  v->merge_slots[h] = ++v->n_merges;
}

static tok_status load_merges(loader *l) {
  tok_vocab *v = l->v;
  int64_t idx = -1;
  uint64_t n = 0;
  if (v->kind == KIND_SPM) { /* SentencePiece merges by score, not by rule */
    v->merge_slots = slots_new(0, &v->merge_mask);
    return v->merge_slots ? TOK_OK : fail(l, TOK_E_NOMEM, "no memory for merges");
  }
  tok_status st = find_str_array(l, "tokenizer.ggml.merges", &idx, &n);
  if (st) return st;
  if (n > INT32_MAX) return fail(l, TOK_E_FORMAT, "%llu merges", (unsigned long long)n);
  v->merges = calloc(n ? n : 1, sizeof *v->merges);
  v->merge_slots = slots_new(n, &v->merge_mask);
  if (!v->merges || !v->merge_slots) return fail(l, TOK_E_NOMEM, "no memory for merges");
  for (uint32_t i = 0; i < n; i++) {
    size_t len;
    const char *s = gguf_get_arr_str(l->g, idx, i, &len);
    add_merge(v, s, len, i);
  }
  return TOK_OK;
}

/* An optional token id key: `dflt` when absent or out of range (llama.cpp
 * keeps its default over a bad id too). */
static int32_t load_id(loader *l, const char *key, int32_t dflt) {
  uint32_t id;
  if (dflt >= (int64_t)l->v->n) dflt = -1;
  if (!gguf_get_u32(l->g, gguf_find_key(l->g, key), &id) || id >= l->v->n) return dflt;
  return (int32_t)id;
}

static bool text_is(const tok_vocab *v, uint32_t id, const char *s) {
  return v->len[id] == strlen(s) && memcmp(v->text[id], s, v->len[id]) == 0;
}

static bool text_in(const tok_vocab *v, uint32_t id, const char *const *list) {
  for (; *list; list++)
    if (text_is(v, id, *list)) return true;
  return false;
}

/* Texts llama.cpp treats as end-of-generation (and forces to CONTROL). */
static const char *const eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>", "</s>", "<eos>", "<turn|>",
    "<|tool_response>", "[EOT]", "[EOS]", "<|return|>", "<|call|>", NULL};
/* End-of-turn candidates, in order of preference, when
 * tokenizer.ggml.eot_token_id is absent. */
static const char *const eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "<end_of_utterance>", "<|endoftext|>", NULL};
/* Fill-in-the-middle texts llama.cpp forces to CONTROL; the pad, repo and
 * file-separator ones also end generation. */
static const char *const fim_texts[] = {
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "<|fim_suffix|>",
    "<fim-suffix>", "<fim_suffix>", "<SUF>", "<|fim_middle|>", "<fim-middle>", "<fim_middle>",
    "<MID>", NULL};
static const char *const fim_eog_texts[] = {
    "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "<|fim_repo|>", "<|repo_name|>",
    "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>", NULL};

/* Gemma 4 has an ordinary "</s>" text token: where "<|tool_response>"
 * exists, llama.cpp takes "</s>" off the end-of-generation list again. */
static void normal_end_of_text(tok_vocab *v) {
  int32_t s = tok_find(v, "</s>", 4);
  if (s < 0 || tok_find(v, "<|tool_response>", 16) < 0 || s == v->eos || s == v->eot) return;
  v->attr[s] = TOK_ATTR_NORMAL;
}

/* llama.cpp gives Phi-3's special tokens the rstrip attribute by model name
 * (general.name containing "phi-3" or "phi3", any case), except <unk>, <s>
 * and <|endoftext|>, so "<|user|>\n" parses as the token alone. */
static void phi3_rstrip(loader *l) {
  tok_vocab *v = l->v;
  size_t n = 0;
  const char *name = gguf_get_string(l->g, gguf_find_key(l->g, "general.name"), &n);
  bool phi3 = false;
  for (size_t i = 0; name && i + 4 <= n && !phi3; i++) {
    char c[5] = {0};
    for (size_t k = 0; k < 5 && i + k < n; k++) c[k] = (char)(name[i + k] | 0x20);
    phi3 = memcmp(c, "phi3", 4) == 0 || (i + 5 <= n && memcmp(c, "phi-3", 5) == 0);
  }
  if (!phi3) return;
  static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>", NULL};
  for (uint32_t i = 0; i < v->n; i++) {
    bool special = v->attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN);
    if ((special || text_is(v, i, "</s>")) && !text_in(v, i, keep)) v->attr[i] |= ATTR_RSTRIP;
  }
}

/* Special ids, BOS policy, and llama.cpp's by-text fixes of token types. */
static void load_specials(loader *l) {
  tok_vocab *v = l->v;
  bool spm = v->kind == KIND_SPM; /* llama.cpp's SPM defaults: <unk> 0, <s> 1, </s> 2 */
  v->bos = load_id(l, "tokenizer.ggml.bos_token_id", spm ? 1 : -1);
  v->eos = load_id(l, "tokenizer.ggml.eos_token_id", spm ? 2 : -1);
  v->eot = load_id(l, "tokenizer.ggml.eot_token_id", -1);
  v->unk = load_id(l, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
  v->add_bos = v->pre->add_bos;
  bool b;
  if (gguf_get_bool(l->g, gguf_find_key(l->g, "tokenizer.ggml.add_bos_token"), &b))
    v->add_bos = b;
  if (v->kind == KIND_BPE_SPM) v->add_bos = true; /* llama.cpp overrides it for Gemma 4 */
  if (v->add_bos && v->bos < 0) v->add_bos = false;
  for (const char *const *t = eot_texts; v->eot < 0 && *t; t++)
    v->eot = tok_find(v, *t, strlen(*t));
  for (uint32_t i = 0; i < v->n; i++) {
    if (text_in(v, i, eog_texts) || text_in(v, i, fim_eog_texts))
      v->attr[i] |= TOK_ATTR_CONTROL | ATTR_EOG;
    else if (text_in(v, i, fim_texts))
      v->attr[i] |= TOK_ATTR_CONTROL;
  }
  if (v->eos >= 0) v->attr[v->eos] |= ATTR_EOG;
  if (v->eot >= 0) v->attr[v->eot] |= TOK_ATTR_CONTROL | ATTR_EOG;
  normal_end_of_text(v);
}

typedef struct special_key {
  uint32_t len;
  int32_t id;
} special_key;

static int cmp_special(const void *a, const void *b) {
  const special_key *x = a, *y = b;
  if (x->len != y->len) return x->len > y->len ? -1 : 1; /* longest first */
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Control, user-defined and unknown tokens, longest text first. */
static tok_status build_specials(loader *l) {
  tok_vocab *v = l->v;
  const uint16_t want = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
  uint32_t n = 0;
  for (uint32_t i = 0; i < v->n; i++) n += (v->attr[i] & want) && v->len[i] > 0;
  special_key *keys = calloc(n ? n : 1, sizeof *keys);
  v->specials = calloc(n ? n : 1, sizeof *v->specials);
  if (!keys || !v->specials) {
    free(keys);
    return fail(l, TOK_E_NOMEM, "no memory for special tokens");
  }
  for (uint32_t i = 0, k = 0; i < v->n; i++)
    if ((v->attr[i] & want) && v->len[i] > 0) keys[k++] = (special_key){v->len[i], (int32_t)i};
  qsort(keys, n, sizeof *keys, cmp_special);
  for (uint32_t k = 0; k < n; k++) v->specials[k] = keys[k].id;
  v->n_specials = n;
  free(keys);
  return TOK_OK;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Writes the bytes id decodes to (control text rendered) and returns their
 * count; never more than len[id] + 1 bytes. */
static size_t render_piece(const tok_vocab *v, uint32_t id, char *out) {
  const char *t = v->text[id];
  size_t n = v->len[id], o = 0;
  uint16_t a = v->attr[id];
  if (a & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN | TOK_ATTR_USER_DEFINED)) {
    memcpy(out, t, n);
    return n;
  }
  if ((a & TOK_ATTR_NORMAL) && v->kind != KIND_BPE) {
    /* SentencePiece texts are raw UTF-8 with "▁" standing for a space. */
    for (size_t i = 0; i < n; i++) {
      bool sp = i + 3 <= n && memcmp(t + i, "\xe2\x96\x81", 3) == 0;
      out[o++] = sp ? ' ' : t[i];
      i += sp ? 2 : 0;
    }
    return o;
  }
  if (a & TOK_ATTR_NORMAL) {
    /* Undo the byte-to-unicode map; a codepoint outside it is kept as is. */
    for (size_t i = 0; i < n;) {
      uint32_t cp;
      size_t k = tok_utf8_decode((const uint8_t *)t + i, n - i, &cp);
      int b = tok_cpt_to_byte(cp);
      if (b >= 0) out[o++] = (char)b;
      else memcpy(out + o, t + i, k), o += k;
      i += k;
    }
    return o;
  }
  if ((a & TOK_ATTR_BYTE) && n == 6 && memcmp(t, "<0x", 3) == 0 && t[5] == '>') {
    int hi = hex_digit(t[3]), lo = hex_digit(t[4]);
    if (hi >= 0 && lo >= 0) out[o++] = (char)(hi << 4 | lo);
  }
  return o; /* unused / undefined tokens decode to nothing */
}

static tok_status build_pieces(loader *l) {
  tok_vocab *v = l->v;
  uint64_t total = 0;
  for (uint32_t i = 0; i < v->n; i++) total += (uint64_t)v->len[i] + 1;
  if (total > UINT32_MAX || total > SIZE_MAX) return fail(l, TOK_E_FORMAT, "vocab text too large");
  v->pieces = malloc((size_t)total);
  v->piece_off = calloc((size_t)v->n + 1, sizeof *v->piece_off);
  if (!v->pieces || !v->piece_off) return fail(l, TOK_E_NOMEM, "no memory for pieces");
  uint32_t o = 0;
  for (uint32_t i = 0; i < v->n; i++) {
    v->piece_off[i] = o;
    o += (uint32_t)render_piece(v, i, v->pieces + o);
  }
  v->piece_off[v->n] = o;
  return TOK_OK;
}

tok_status tok_vocab_new(const gguf_ctx *g, tok_vocab **out, char *err, size_t err_cap) {
  loader l = {g, NULL, err, err_cap};
  if (err && err_cap) err[0] = '\0';
  if (!out || !g) return fail(&l, TOK_E_ARG, "NULL argument");
  *out = NULL;
  if (!(l.v = calloc(1, sizeof *l.v))) return fail(&l, TOK_E_NOMEM, "no memory");
  tok_status st = load_kind(&l);
  if (!st) st = load_tokens(&l);
  if (!st) st = load_types(&l);
  if (!st) st = load_merges(&l);
  if (!st) st = load_scores(&l);
  if (!st) load_specials(&l);
  if (!st) phi3_rstrip(&l);
  if (!st) st = build_specials(&l);
  if (!st) st = build_pieces(&l);
  if (st) {
    tok_vocab_free(l.v);
    return st;
  }
  *out = l.v;
  return TOK_OK;
}

void tok_vocab_free(tok_vocab *v) {
  if (!v) return;
  free(v->text);
  free(v->len);
  free(v->attr);
  free(v->tok_slots);
  free(v->merges);
  free(v->merge_slots);
  free(v->specials);
  free(v->pieces);
  free(v->piece_off);
  free(v->scores);
  free(v);
}

/* ---- small accessors ---- */

static bool valid_id(const tok_vocab *v, int32_t id) { return v && id >= 0 && (uint32_t)id < v->n; }

uint32_t tok_n_vocab(const tok_vocab *v) { return v ? v->n : 0; }
int32_t tok_bos(const tok_vocab *v) { return v ? v->bos : -1; }
int32_t tok_eos(const tok_vocab *v) { return v ? v->eos : -1; }
int32_t tok_eot(const tok_vocab *v) { return v ? v->eot : -1; }
bool tok_add_bos(const tok_vocab *v) { return v && v->add_bos; }
const char *tok_pre_name(const tok_vocab *v) { return v ? v->pre->name : ""; }

uint32_t tok_attr(const tok_vocab *v, int32_t id) {
  return valid_id(v, id) ? v->attr[id] & 0xffu : 0;
}

bool tok_is_eog(const tok_vocab *v, int32_t id) {
  return valid_id(v, id) && (v->attr[id] & ATTR_EOG);
}

/* ---- encoder scratch ---- */

typedef struct sym {
  uint32_t off, n; /* bytes of the word; n == 0 once merged away */
  int32_t prev, next;
} sym;

typedef struct bigram {
  uint32_t rank;
  int32_t left, right;
  uint32_t n; /* combined length when queued; stale if it changed */
} bigram;

typedef struct frag {
  size_t off, len; /* raw text, when id < 0 */
  int32_t id;
} frag;

typedef struct enc {
  const tok_vocab *v;
  int32_t *out;
  size_t cap, n_out;
  bool nomem;
  uint32_t *cps; /* scratch, grown as needed */
  uint8_t *flags;
  size_t *ends_a, *ends_b;
  size_t cps_cap;
  uint8_t *word;
  size_t word_cap;
  sym *syms;
  size_t syms_cap;
  bigram *heap;
  size_t heap_n, heap_cap;
} enc;

/* Grows *buf to hold `need` elements; false (and e->nomem) on failure. */
static bool grow(enc *e, void **buf, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return true;
  size_t c = *cap ? *cap : 64;
  while (c < need) c = c > SIZE_MAX / 2 ? need : c * 2;
  void *p = c <= SIZE_MAX / elem ? realloc(*buf, c * elem) : NULL;
  if (!p) return !(e->nomem = true);
  *buf = p;
  *cap = c;
  return true;
}

static void emit(enc *e, int32_t id) {
  if (e->n_out < e->cap) e->out[e->n_out] = id;
  e->n_out++;
}

/* ---- BPE ---- */

static bool bigram_less(const bigram *x, const bigram *y) {
  return x->rank < y->rank || (x->rank == y->rank && x->left < y->left);
}

/* Queues the pair (l, r) if the merges rank it. */
static void push_pair(enc *e, int32_t l, int32_t r) {
  if (l < 0 || r < 0) return;
  const sym *a = &e->syms[l], *b = &e->syms[r];
  int64_t rank = merge_rank(e->v, (const char *)e->word + a->off, a->n,
                            (const char *)e->word + b->off, b->n);
  if (rank < 0 || !grow(e, (void **)&e->heap, &e->heap_cap, e->heap_n + 1, sizeof *e->heap))
    return;
  bigram g = {(uint32_t)rank, l, r, a->n + b->n};
  size_t i = e->heap_n++;
  for (; i > 0 && bigram_less(&g, &e->heap[(i - 1) / 2]); i = (i - 1) / 2)
    e->heap[i] = e->heap[(i - 1) / 2];
  e->heap[i] = g;
}

static bigram pop_pair(enc *e) {
  bigram top = e->heap[0], last = e->heap[--e->heap_n];
  size_t i = 0, n = e->heap_n;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && bigram_less(&e->heap[c + 1], &e->heap[c])) c++;
    if (!bigram_less(&e->heap[c], &last)) break;
    e->heap[i] = e->heap[c];
    i = c;
  }
  if (n) e->heap[i] = last;
  return top;
}

/* The id BPE may produce for t[0..n): control and unknown tokens are only
 * ever produced by the special-token pass, never by merging. */
static int32_t bpe_id(const tok_vocab *v, const uint8_t *t, size_t n) {
  int32_t id = tok_find(v, (const char *)t, n);
  return id >= 0 && (v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)) ? -1 : id;
}

/* Emits the id of a final symbol, or (like llama.cpp) the ids of its single
 * bytes that happen to be tokens when the whole is not. */
static void emit_symbol(enc *e, const uint8_t *t, size_t n) {
  int32_t id = bpe_id(e->v, t, n);
  if (id >= 0) {
    emit(e, id);
    return;
  }
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    if (e->v->kind == KIND_BPE) { /* GPT-2 maps every byte to a token text */
      id = bpe_id(e->v, t + i, 1);
    } else { /* raw UTF-8 vocabularies fall back to <0xNN> byte tokens */
      char b[6] = {'<', '0', 'x', hex[t[i] >> 4], hex[t[i] & 15], '>'};
      id = tok_find(e->v, b, sizeof b);
    }
    if (id >= 0) emit(e, id);
  }
}

/* Gemma 4 looks a run of newlines up whole before merging (llama.cpp's
 * fix for it), since its merges never build "\n\n\n". */
static bool newline_run_token(enc *e, size_t wn) {
  if (e->v->kind != KIND_BPE_SPM || wn == 0 || bpe_id(e->v, e->word, wn) < 0) return false;
  for (size_t i = 0; i < wn; i++)
    if (e->word[i] != '\n') return false;
  return true;
}

/* Merges the mapped word e->word[0..wn) and emits its ids. */
static void bpe_word(enc *e, size_t wn) {
  if (wn > INT32_MAX) return (void)(e->nomem = true); /* symbol indices are int32 */
  if ((e->v->pre->ignore_merges && bpe_id(e->v, e->word, wn) >= 0) || newline_run_token(e, wn)) {
    emit_symbol(e, e->word, wn);
    return;
  }
  size_t ns = 0;
  for (size_t off = 0; off < wn; ns++) {
    if (!grow(e, (void **)&e->syms, &e->syms_cap, ns + 1, sizeof *e->syms)) return;
    size_t k = tok_utf8_seq_len(e->word[off]);
    if (k > wn - off) k = wn - off;
    e->syms[ns] = (sym){(uint32_t)off, (uint32_t)k, (int32_t)ns - 1, -1};
    if (ns) e->syms[ns - 1].next = (int32_t)ns;
    off += k;
  }
  e->heap_n = 0;
  for (size_t i = 1; i < ns; i++) push_pair(e, (int32_t)i - 1, (int32_t)i);
  while (e->heap_n) {
    bigram g = pop_pair(e);
    sym *l = &e->syms[g.left], *r = &e->syms[g.right];
    if (l->n == 0 || r->n == 0 || l->n + r->n != g.n) continue; /* stale */
    l->n += r->n;
    r->n = 0;
    l->next = r->next;
    if (r->next >= 0) e->syms[r->next].prev = g.left;
    push_pair(e, l->prev, g.left);
    push_pair(e, g.left, l->next);
  }
  for (int32_t i = ns ? 0 : -1; i >= 0; i = e->syms[i].next)
    emit_symbol(e, e->word + e->syms[i].off, e->syms[i].n);
}

/* Maps the UTF-8 of cps[a..b) through the byte-to-unicode map into e->word,
 * then runs BPE on it. */
static void encode_piece(enc *e, size_t a, size_t b) {
  if (!grow(e, (void **)&e->word, &e->word_cap, (b - a) * 8, 1)) return;
  size_t wn = 0;
  for (size_t i = a; i < b; i++) {
    uint8_t u[4], m[4];
    size_t k = tok_utf8_encode(e->cps[i], u);
    if (e->v->kind != KIND_BPE) { /* raw UTF-8, no byte map */
      memcpy(e->word + wn, u, k);
      wn += k;
      continue;
    }
    for (size_t j = 0; j < k; j++) {
      size_t mk = tok_utf8_encode(tok_byte_to_cpt(u[j]), m);
      memcpy(e->word + wn, m, mk);
      wn += mk;
    }
  }
  bpe_word(e, wn);
}

/* Makes the per-codepoint scratch arrays hold `need` entries each. */
static bool text_scratch(enc *e, size_t need) {
  if (need <= e->cps_cap) return true;
  if (need > SIZE_MAX / 8 / sizeof(size_t)) return !(e->nomem = true);
  uint32_t *c = realloc(e->cps, need * sizeof *c);
  if (c) e->cps = c;
  uint8_t *f = realloc(e->flags, need);
  if (f) e->flags = f;
  size_t *a = realloc(e->ends_a, need * sizeof *a);
  if (a) e->ends_a = a;
  size_t *b = realloc(e->ends_b, need * sizeof *b);
  if (b) e->ends_b = b;
  if (!c || !f || !a || !b) return !(e->nomem = true);
  e->cps_cap = need;
  return true;
}

/* Pre-tokenizes and encodes a stretch of text with no special tokens. */
static void encode_text(enc *e, const uint8_t *t, size_t len) {
  if (!text_scratch(e, len + 1)) return;
  size_t n = 0;
  for (size_t i = 0; i < len; n++) {
    i += tok_utf8_decode(t + i, len - i, &e->cps[n]);
    if (e->cps[n] == ' ' && e->v->kind == KIND_BPE_SPM) e->cps[n] = 0x2581; /* "▁" */
    e->flags[n] = (uint8_t)tok_cpt_flags(e->cps[n]);
  }
  if (n == 0) return;
  e->ends_a[0] = n;
  size_t n_ends = 1;
  for (const uint8_t *p = e->v->pre->passes; *p != TOK_SPLIT_END; p++) {
    tok_split((tok_split_pass)*p, e->cps, e->flags, e->ends_a, n_ends, e->ends_b, &n_ends);
    size_t *tmp = e->ends_a;
    e->ends_a = e->ends_b, e->ends_b = tmp;
  }
  for (size_t i = 0, a = 0; i < n_ends && !e->nomem; a = e->ends_a[i++])
    encode_piece(e, a, e->ends_a[i]);
}

/* ---- SentencePiece ---- */

static void emit_cb(void *ctx, int32_t id) { emit(ctx, id); }

/* SentencePiece text: a space first when add_space_prefix and the text
 * follows the start or a special token, every space as "▁", then tok_spm. */
static void encode_spm(enc *e, const uint8_t *t, size_t len, bool after_special) {
  bool prefix = e->v->add_space_prefix && after_special;
  if (len > (SIZE_MAX - 3) / 3 || !grow(e, (void **)&e->word, &e->word_cap, 3 * len + 3, 1))
    return (void)(e->nomem = true);
  size_t wn = 0;
  for (size_t i = 0; i < len + prefix; i++) {
    uint8_t c = prefix ? (i ? t[i - 1] : ' ') : t[i];
    if (c == ' ') memcpy(e->word + wn, "\xe2\x96\x81", 3), wn += 3;
    else e->word[wn++] = c;
  }
  if (!tok_spm_encode(e->v, e->v->scores, e->v->unk, e->word, wn, emit_cb, e)) e->nomem = true;
}

/* ---- special tokens ---- */

/* The first occurrence of pat[0..pn) in t[0..n), or NULL. */
static const uint8_t *find_bytes(const uint8_t *t, size_t n, const uint8_t *pat, size_t pn) {
  while (n >= pn) {
    const uint8_t *q = memchr(t, pat[0], n - pn + 1);
    if (!q) return NULL;
    if (memcmp(q, pat, pn) == 0) return q;
    n -= (size_t)(q - t) + 1;
    t = q + 1;
  }
  return NULL;
}

typedef struct frags {
  frag *f;
  size_t n, cap;
} frags;

static void add_frag(enc *e, frags *fs, frag f) {
  if (grow(e, (void **)&fs->f, &fs->cap, fs->n + 1, sizeof(frag))) fs->f[fs->n++] = f;
}

/* C's isspace in the "C" locale, which llama.cpp's rstrip uses. */
static bool is_c_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Cuts every occurrence of special token `id` out of the text fragments. */
static void cut_special(enc *e, const uint8_t *text, const frags *in, frags *out, int32_t id) {
  const uint8_t *pat = (const uint8_t *)e->v->text[id];
  size_t pn = e->v->len[id];
  bool rstrip = e->v->attr[id] & ATTR_RSTRIP;
  out->n = 0;
  for (size_t i = 0; i < in->n; i++) {
    frag f = in->f[i];
    const uint8_t *q;
    while (f.id < 0 && (q = find_bytes(text + f.off, f.len, pat, pn))) {
      size_t left = (size_t)(q - text) - f.off;
      if (left) add_frag(e, out, (frag){f.off, left, -1});
      add_frag(e, out, (frag){0, 0, id});
      f.off += left + pn;
      f.len -= left + pn;
      while (rstrip && f.len && is_c_space(text[f.off])) f.off++, f.len--;
    }
    if (f.id >= 0 || f.len) add_frag(e, out, f);
  }
}

/* Splits the text around special tokens (longest first, as llama.cpp) and
 * returns the fragments in *a. */
static void partition(enc *e, const uint8_t *text, size_t len, bool parse_special, frags *a,
                      frags *b) {
  if (len) add_frag(e, a, (frag){0, len, -1});
  for (uint32_t k = 0; k < e->v->n_specials && !e->nomem; k++) {
    int32_t id = e->v->specials[k];
    if (!parse_special && (e->v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
    cut_special(e, text, a, b, id);
    frags t = *a;
    *a = *b, *b = t;
  }
}

tok_status tok_encode(const tok_vocab *v, const char *text, size_t len, bool parse_special,
                      int32_t *out, size_t cap, size_t *n_out) {
  if (n_out) *n_out = 0;
  if (!v || !n_out || (!text && len) || (!out && cap)) return TOK_E_ARG;
  enc e = {.v = v, .out = out, .cap = cap};
  frags a = {0}, b = {0};
  const uint8_t *t = (const uint8_t *)text;
  partition(&e, t, len, parse_special, &a, &b);
  bool after_special = true; /* the text start counts, as in llama.cpp */
  for (size_t i = 0; i < a.n && !e.nomem; i++) {
    if (a.f[i].id >= 0) emit(&e, a.f[i].id);
    else if (v->kind == KIND_SPM) encode_spm(&e, t + a.f[i].off, a.f[i].len, after_special);
    else encode_text(&e, t + a.f[i].off, a.f[i].len);
    after_special = a.f[i].id >= 0;
  }
  free(a.f), free(b.f), free(e.cps), free(e.flags), free(e.ends_a), free(e.ends_b);
  free(e.word), free(e.syms), free(e.heap);
  if (e.nomem) return TOK_E_NOMEM;
  *n_out = e.n_out;
  return e.n_out > cap ? TOK_E_SPACE : TOK_OK;
}

/* ---- decode ---- */

tok_status tok_piece(const tok_vocab *v, int32_t id, bool render_special, const char **bytes,
                     size_t *len) {
  if (!valid_id(v, id)) return TOK_E_ID;
  bool hide = !render_special && (v->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
  if (bytes) *bytes = v->pieces + v->piece_off[id];
  if (len) *len = hide ? 0 : v->piece_off[id + 1] - v->piece_off[id];
  return TOK_OK;
}

tok_status tok_decode(const tok_vocab *v, const int32_t *ids, size_t n, bool render_special,
                      char *out, size_t cap, size_t *n_out) {
  if (!v || !n_out || (!ids && n) || (!out && cap)) return TOK_E_ARG;
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    const char *p;
    size_t pn;
    if (tok_piece(v, ids[i], render_special, &p, &pn)) {
      *n_out = o;
      return TOK_E_ID;
    }
    /* The space the encoder prefixed is dropped again (llama.cpp's
     * detokenize strips one leading space of the first piece). */
    if (i == 0 && v->add_space_prefix && pn && p[0] == ' ') p++, pn--;
    if (o < cap) memcpy(out + o, p, pn < cap - o ? pn : cap - o);
    o += pn;
  }
  *n_out = o;
  return o > cap ? TOK_E_SPACE : TOK_OK;
}

tok_status tok_decoder_init(tok_decoder *d, const tok_vocab *v, bool render_special) {
  if (!d || !v) return TOK_E_ARG;
  uint32_t max = 0;
  for (uint32_t i = 0; i < v->n; i++)
    if (v->piece_off[i + 1] - v->piece_off[i] > max) max = v->piece_off[i + 1] - v->piece_off[i];
  *d = (tok_decoder){v, render_special, NULL, (size_t)max + 4, 0, 0};
  d->buf = malloc(d->cap);
  return d->buf ? TOK_OK : TOK_E_NOMEM;
}

void tok_decoder_deinit(tok_decoder *d) {
  if (!d) return;
  free(d->buf);
  d->buf = NULL;
}

tok_status tok_decoder_push(tok_decoder *d, int32_t id, const char **bytes, size_t *n) {
  const char *p;
  size_t pn;
  if (!d || !d->buf || !bytes || !n) return TOK_E_ARG;
  tok_status st = tok_piece(d->vocab, id, d->render_special, &p, &pn);
  if (st) return st;
  /* Bring the held tail to the front, append the piece, and hand out the
   * part that ends on a sequence boundary. pn + n_held <= cap by
   * construction (cap = longest piece + 4, n_held < 4). */
  memmove(d->buf, d->buf + d->held_off, d->n_held);
  memcpy(d->buf + d->n_held, p, pn);
  size_t total = d->n_held + pn, ready = tok_utf8_complete_prefix(d->buf, total);
  d->held_off = ready;
  d->n_held = total - ready;
  *bytes = (const char *)d->buf;
  *n = ready;
  return TOK_OK;
}

tok_status tok_decoder_flush(tok_decoder *d, const char **bytes, size_t *n) {
  if (!d || !d->buf || !bytes || !n) return TOK_E_ARG;
  *bytes = (const char *)d->buf + d->held_off;
  *n = d->n_held;
  d->held_off = d->n_held = 0;
  return TOK_OK;
}
