/*
 * model_load.c: binds a parsed GGUF (mapped in linear memory) to llm_model:
 * hyperparameters from metadata, weights as tensors pointing into the
 * mapped file. Every tensor's shape and type is checked here, so a lying
 * file fails with its name in the message rather than in a kernel.
 */
#include "model_load.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct loader {
  const gguf_ctx *g;
  char arch[32];
  char *err;
  int cap;
} loader;

static int fail(loader *ld, const char *fmt, const char *a, long b) {
  snprintf(ld->err, (size_t)ld->cap, fmt, a, b);
  return -1;
}

/* Reads "<arch>.<key>" as u32; `fallback` when absent (or -1 to require). */
static int get_u32(loader *ld, const char *key, long fallback, uint32_t *out) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", ld->arch, key);
  int64_t i = gguf_find_key(ld->g, full);
  if (i < 0) {
    if (fallback < 0) return fail(ld, "model: metadata key %s is missing", full, 0);
    *out = (uint32_t)fallback;
    return 0;
  }
  if (!gguf_get_u32(ld->g, i, out)) return fail(ld, "model: metadata key %s is not an unsigned integer", full, 0);
  return 0;
}

/* Reads "<arch>.<key>" as a float that feeds an op parameter (an epsilon, a
 * RoPE base): it must be finite and > 0, or the load fails naming the key.
 * `fallback` when absent. */
static int get_positive_f32(loader *ld, const char *key, float fallback, float *out) {
  char full[128];
  snprintf(full, sizeof full, "%s.%s", ld->arch, key);
  int64_t i = gguf_find_key(ld->g, full);
  *out = fallback;
  if (i >= 0 && !gguf_get_f32(ld->g, i, out)) return fail(ld, "model: metadata key %s is not a float", full, 0);
  if (!(*out > 0 && *out <= FLT_MAX)) /* false for NaN, infinities, <= 0 */
    return fail(ld, "model: %s is not a finite positive number", full, 0);
  return 0;
}

static int read_arch(loader *ld) {
  int64_t i = gguf_find_key(ld->g, "general.architecture");
  size_t len = 0;
  const char *arch = i >= 0 ? gguf_get_string(ld->g, i, &len) : NULL;
  if (!arch) return fail(ld, "model: general.architecture is missing%s", "", 0);
  if (len >= sizeof ld->arch) len = sizeof ld->arch - 1;
  memcpy(ld->arch, arch, len);
  ld->arch[len] = '\0';
  /* Llama-family graphs we run as they are (same tensors, same ops). */
  if (strcmp(ld->arch, "llama") != 0) return fail(ld, "model: architecture \"%s\" is not supported (llama only)", ld->arch, 0);
  return 0;
}

static int read_hparams(loader *ld, llm_hparams *hp) {
  if (get_u32(ld, "embedding_length", -1, &hp->n_embd) || get_u32(ld, "block_count", -1, &hp->n_layer) ||
      get_u32(ld, "feed_forward_length", -1, &hp->n_ff) || get_u32(ld, "attention.head_count", -1, &hp->n_head) ||
      get_u32(ld, "context_length", 2048, &hp->n_ctx_train))
    return -1;
  if (get_u32(ld, "attention.head_count_kv", hp->n_head, &hp->n_head_kv)) return -1;
  if (hp->n_head == 0 || hp->n_head_kv == 0 || hp->n_head % hp->n_head_kv || hp->n_embd % hp->n_head ||
      hp->n_layer == 0 || hp->n_layer > 1024 || hp->n_embd > 65536 || hp->n_ff > 1 << 20)
    return fail(ld, "model: inconsistent shape (heads, kv heads, embedding length)%s", "", 0);
  if (get_u32(ld, "attention.key_length", hp->n_embd / hp->n_head, &hp->head_dim) ||
      get_u32(ld, "rope.dimension_count", hp->head_dim, &hp->n_rot))
    return -1;
  if (hp->head_dim == 0 || hp->head_dim > 1024 || hp->n_rot % 2 || hp->n_rot > hp->head_dim)
    return fail(ld, "model: head dim %s%ld or rope dims are invalid", "", (long)hp->head_dim);
  if (get_positive_f32(ld, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps) ||
      get_positive_f32(ld, "rope.freq_base", 10000.0f, &hp->rope_theta))
    return -1;
  return 0;
}

static uint32_t sp_dtype_of(uint32_t ggml_type) {
  switch (ggml_type) {
    case GGUF_GGML_F32: return SP_DTYPE_F32;
    case GGUF_GGML_F16: return SP_DTYPE_F16;
    case GGUF_GGML_BF16: return SP_DTYPE_BF16;
    case GGUF_GGML_Q8_0: return SP_DTYPE_Q8_0;
    case GGUF_GGML_Q4_0: return SP_DTYPE_Q4_0;
    case GGUF_GGML_Q4_1: return SP_DTYPE_Q4_1;
    case GGUF_GGML_Q5_0: return SP_DTYPE_Q5_0;
    case GGUF_GGML_Q5_1: return SP_DTYPE_Q5_1;
    case GGUF_GGML_Q2_K: return SP_DTYPE_Q2_K;
    case GGUF_GGML_Q3_K: return SP_DTYPE_Q3_K;
    case GGUF_GGML_Q4_K: return SP_DTYPE_Q4_K;
    case GGUF_GGML_Q5_K: return SP_DTYPE_Q5_K;
    case GGUF_GGML_Q6_K: return SP_DTYPE_Q6_K;
    case GGUF_GGML_IQ4_NL: return SP_DTYPE_IQ4_NL;
    case GGUF_GGML_IQ4_XS: return SP_DTYPE_IQ4_XS;
    default: return SP_DTYPE_NONE;
  }
}

/* Binds tensor `name` with shape [ne0, ne1]; f32_only for norms. */
static int bind(loader *ld, const char *name, uint32_t ne0, uint32_t ne1, bool f32_only, sp_tensor *out) {
  const gguf_tensor *t = gguf_find_tensor(ld->g, name);
  if (!t) return fail(ld, "model: tensor %s is missing", name, 0);
  uint32_t dtype = sp_dtype_of(t->type);
  if (!dtype || (f32_only && dtype != SP_DTYPE_F32))
    return fail(ld, "model: tensor %s has unsupported type %ld", name, (long)t->type);
  if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
    return fail(ld, "model: tensor %s does not have the shape the metadata implies (ne0 = %ld)", name, (long)t->ne[0]);
  *out = sp_tensor_2d(t->data, (sp_dtype)dtype, ne0, ne1);
  return 0;
}

static int bind_layer(loader *ld, const llm_hparams *hp, uint32_t il, llm_layer *l) {
  uint32_t E = hp->n_embd, F = hp->n_ff, Q = hp->n_head * hp->head_dim, KV = hp->n_head_kv * hp->head_dim;
  const struct {
    const char *suffix;
    uint32_t ne0, ne1;
    bool f32_only;
    sp_tensor *field;
  } specs[] = {
      {"attn_norm", E, 1, true, &l->attn_norm}, {"attn_q", E, Q, false, &l->wq},
      {"attn_k", E, KV, false, &l->wk},         {"attn_v", E, KV, false, &l->wv},
      {"attn_output", Q, E, false, &l->wo},     {"ffn_norm", E, 1, true, &l->ffn_norm},
      {"ffn_gate", E, F, false, &l->w_gate},    {"ffn_up", E, F, false, &l->w_up},
      {"ffn_down", F, E, false, &l->w_down},
  };
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    char name[96];
    snprintf(name, sizeof name, "blk.%u.%s.weight", il, specs[i].suffix);
    if (bind(ld, name, specs[i].ne0, specs[i].ne1, specs[i].f32_only, specs[i].field)) return -1;
  }
  return 0;
}

int llm_model_load(llm_model *m, const gguf_ctx *g, char *err, int cap) {
  loader ld = {.g = g, .err = err, .cap = cap};
  memset(m, 0, sizeof *m);
  llm_hparams *hp = &m->hp;
  if (read_arch(&ld) || read_hparams(&ld, hp)) return -1;
  const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
  if (!emb || emb->ne[1] == 0 || emb->ne[1] > 1u << 24) return fail(&ld, "model: tensor %s is missing or empty", "token_embd.weight", 0);
  hp->n_vocab = (uint32_t)emb->ne[1];
  if (bind(&ld, "token_embd.weight", hp->n_embd, hp->n_vocab, false, &m->w.tok_embd) ||
      bind(&ld, "output_norm.weight", hp->n_embd, 1, true, &m->w.out_norm))
    return -1;
  if (gguf_find_tensor(g, "output.weight")) {
    if (bind(&ld, "output.weight", hp->n_embd, hp->n_vocab, false, &m->w.output)) return -1;
  } else {
    m->w.output = m->w.tok_embd; /* tied embeddings */
  }
  if (gguf_find_tensor(g, "rope_freqs.weight")) {
    if (bind(&ld, "rope_freqs.weight", hp->n_rot / 2, 1, true, &m->w.rope_freqs)) return -1;
    m->w.rope_freqs = sp_tensor_1d((const void *)(uintptr_t)m->w.rope_freqs.offset, SP_DTYPE_F32, hp->n_rot / 2);
  }
  m->w.layers = calloc(hp->n_layer, sizeof *m->w.layers);
  if (!m->w.layers) return fail(&ld, "model: out of memory%s", "", 0);
  for (uint32_t il = 0; il < hp->n_layer; il++)
    if (bind_layer(&ld, hp, il, &m->w.layers[il])) return -1;
  return 0;
}
