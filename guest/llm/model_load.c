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

/* Writes the message and returns -1, so callers can `return llm_load_fail(...)`. */
int llm_load_fail(llm_loader *ld, const char *fmt, const char *a, long long b) {
  snprintf(ld->err, (size_t)ld->cap, fmt, a, b);
  return -1;
}

int64_t llm_meta_find(llm_loader *ld, const char *key, char full[128]) {
  snprintf(full, 128, "%s.%s", ld->arch, key);
  return gguf_find_key(ld->g, full);
}

int llm_meta_u32(llm_loader *ld, const char *key, long fallback, uint32_t *out) {
  char full[128];
  int64_t i = llm_meta_find(ld, key, full);
  if (i < 0) {
    if (fallback < 0) return llm_load_fail(ld, "model: metadata key %s is missing", full, 0);
    *out = (uint32_t)fallback;
    return 0;
  }
  if (!gguf_get_u32(ld->g, i, out)) return llm_load_fail(ld, "model: metadata key %s is not an unsigned integer", full, 0);
  return 0;
}

int llm_meta_positive_f32(llm_loader *ld, const char *key, float fallback, float *out) {
  char full[128];
  int64_t i = llm_meta_find(ld, key, full);
  *out = fallback;
  if (i >= 0 && !gguf_get_f32(ld->g, i, out)) return llm_load_fail(ld, "model: metadata key %s is not a float", full, 0);
  if (!(*out > 0 && *out <= FLT_MAX)) /* false for NaN, infinities, <= 0 */
    return llm_load_fail(ld, "model: %s is not a finite positive number", full, 0);
  return 0;
}

/* A count from the metadata that must be in [1, max] (a zero would divide
 * or allocate nothing later, a huge one exhaust memory): the message names
 * the key and its value. */
static int get_count(llm_loader *ld, const char *key, long fallback, uint32_t max, uint32_t *out) {
  if (llm_meta_u32(ld, key, fallback, out)) return -1;
  if (*out >= 1 && *out <= max) return 0;
  char full[128];
  llm_meta_find(ld, key, full);
  return llm_load_fail(ld, "model: %s = %lld is out of range", full, (long long)*out);
}

/* The shape every architecture shares. Keys are read as llama.cpp reads
 * them; each bad value is refused naming its key. */
static int read_hparams(llm_loader *ld, llm_hparams *hp) {
  if (get_count(ld, "embedding_length", -1, 65536, &hp->n_embd) ||
      get_count(ld, "block_count", -1, 1024, &hp->n_layer) ||
      get_count(ld, "feed_forward_length", -1, 1u << 20, &hp->n_ff) ||
      get_count(ld, "attention.head_count", -1, 1024, &hp->n_head) ||
      get_count(ld, "context_length", 2048, 1u << 30, &hp->n_ctx_train) ||
      get_count(ld, "attention.head_count_kv", hp->n_head, hp->n_head, &hp->n_head_kv))
    return -1;
  char full[128];
  if (hp->n_head % hp->n_head_kv) {
    llm_meta_find(ld, "attention.head_count_kv", full);
    return llm_load_fail(ld, "model: %s = %lld does not divide the head count", full, (long long)hp->n_head_kv);
  }
  /* Without an explicit head size the heads split the width (Gemma and
   * Qwen3 give key_length, and their heads need not). */
  bool explicit_head = llm_meta_find(ld, "attention.key_length", full) >= 0;
  if (!explicit_head && hp->n_embd % hp->n_head) {
    llm_meta_find(ld, "attention.head_count", full);
    return llm_load_fail(ld, "model: %s = %lld does not divide the embedding length", full, (long long)hp->n_head);
  }
  uint32_t v_len = 0;
  if (get_count(ld, "attention.key_length", hp->n_embd / hp->n_head, 1024, &hp->head_dim) ||
      get_count(ld, "attention.value_length", hp->head_dim, 1024, &v_len) ||
      llm_meta_u32(ld, "rope.dimension_count", hp->head_dim, &hp->n_rot))
    return -1;
  if (v_len != hp->head_dim) {
    llm_meta_find(ld, "attention.value_length", full);
    return llm_load_fail(ld, "model: %s = %lld differs from the key length (not supported)", full,
                         (long long)v_len);
  }
  if (hp->n_rot == 0 || hp->n_rot % 2 || hp->n_rot > hp->head_dim) {
    llm_meta_find(ld, "rope.dimension_count", full);
    return llm_load_fail(ld, "model: %s = %lld is zero, odd or larger than the head size", full,
                         (long long)hp->n_rot);
  }
  if (llm_meta_positive_f32(ld, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps) ||
      llm_meta_positive_f32(ld, "rope.freq_base", 10000.0f, &hp->rope_theta))
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
static int bind(llm_loader *ld, const char *name, uint32_t ne0, uint32_t ne1, bool f32_only, sp_tensor *out) {
  const gguf_tensor *t = gguf_find_tensor(ld->g, name);
  if (!t) return llm_load_fail(ld, "model: tensor %s is missing", name, 0);
  uint32_t dtype = sp_dtype_of(t->type);
  if (!dtype || (f32_only && dtype != SP_DTYPE_F32))
    return llm_load_fail(ld, "model: tensor %s has unsupported type %lld", name, (long long)t->type);
  if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1)
    return llm_load_fail(ld, "model: tensor %s does not have the shape the metadata implies (ne0 = %lld)", name, (long long)t->ne[0]);
  *out = sp_tensor_2d(t->data, (sp_dtype)dtype, ne0, ne1);
  return 0;
}

/* Binds a 1-D f32 tensor of n elements (norm weights, biases, RoPE factors). */
static int bind_vec(llm_loader *ld, const char *name, uint32_t n, sp_tensor *out) {
  if (bind(ld, name, n, 1, true, out)) return -1;
  *out = sp_tensor_1d((const void *)(uintptr_t)out->offset, SP_DTYPE_F32, n);
  return 0;
}

/* Binds a fused projection [ne0, sum of rows[]] and hands out each part as
 * its own weight: consecutive rows of a weight are consecutive bytes, so a
 * part is the same data at a row offset, and the forward pass multiplies
 * by it like by any weight (no strided activations needed). */
static int bind_split(llm_loader *ld, const char *name, uint32_t ne0, const uint32_t *rows, sp_tensor **parts, int n) {
  uint32_t total = 0;
  for (int i = 0; i < n; i++) total += rows[i];
  sp_tensor whole;
  if (bind(ld, name, ne0, total, false, &whole)) return -1;
  const gguf_type_info *ti = gguf_ggml_type_info(gguf_find_tensor(ld->g, name)->type);
  size_t row_bytes = (size_t)ne0 / ti->block_size * ti->type_size, first = 0;
  for (int i = 0; i < n; i++) {
    *parts[i] = whole;
    parts[i]->offset = whole.offset + (uint32_t)(first * row_bytes);
    parts[i]->ne[1] = rows[i];
    first += rows[i];
  }
  return 0;
}

/* One layer's tensors: those every architecture has, then the optional
 * ones its switches ask for (a switch on means the tensor is required). */
static int bind_layer(llm_loader *ld, const llm_hparams *hp, uint32_t il, llm_layer *l) {
  uint32_t E = hp->n_embd, F = hp->n_ff, D = hp->head_dim, Q = hp->n_head * D, KV = hp->n_head_kv * D;
  const struct {
    const char *suffix;
    uint32_t ne0, ne1;
    bool want, vec;
    sp_tensor *field;
  } specs[] = {
      {"attn_norm.weight", E, 1, true, true, &l->attn_norm},
      {"attn_q.weight", E, Q, !hp->fused_qkv, false, &l->wq},
      {"attn_k.weight", E, KV, !hp->fused_qkv, false, &l->wk},
      {"attn_v.weight", E, KV, !hp->fused_qkv, false, &l->wv},
      {"attn_q.bias", Q, 1, hp->qkv_bias, true, &l->bq},
      {"attn_k.bias", KV, 1, hp->qkv_bias, true, &l->bk},
      {"attn_v.bias", KV, 1, hp->qkv_bias, true, &l->bv},
      {"attn_q_norm.weight", D, 1, hp->qk_norm, true, &l->q_norm},
      {"attn_k_norm.weight", D, 1, hp->qk_norm, true, &l->k_norm},
      {"attn_output.weight", Q, E, true, false, &l->wo},
      {"post_attention_norm.weight", E, 1, hp->post_norms, true, &l->attn_post_norm},
      {"ffn_norm.weight", E, 1, true, true, &l->ffn_norm},
      {"ffn_gate.weight", E, F, !hp->fused_gate_up, false, &l->w_gate},
      {"ffn_up.weight", E, F, !hp->fused_gate_up, false, &l->w_up},
      {"ffn_down.weight", F, E, true, false, &l->w_down},
      {"post_ffw_norm.weight", E, 1, hp->post_norms, true, &l->ffn_post_norm},
  };
  char name[96];
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
    if (!specs[i].want) continue;
    snprintf(name, sizeof name, "blk.%u.%s", il, specs[i].suffix);
    int rc = specs[i].vec ? bind_vec(ld, name, specs[i].ne0, specs[i].field)
                          : bind(ld, name, specs[i].ne0, specs[i].ne1, false, specs[i].field);
    if (rc) return -1;
  }
  if (hp->fused_qkv) { /* Phi-3: [E, Q + 2 KV], q rows first */
    uint32_t rows[] = {Q, KV, KV};
    sp_tensor *parts[] = {&l->wq, &l->wk, &l->wv};
    snprintf(name, sizeof name, "blk.%u.attn_qkv.weight", il);
    if (bind_split(ld, name, E, rows, parts, 3)) return -1;
  }
  if (hp->fused_gate_up) { /* Phi-3: [E, 2F], the gate's rows first */
    uint32_t rows[] = {F, F};
    sp_tensor *parts[] = {&l->w_gate, &l->w_up};
    snprintf(name, sizeof name, "blk.%u.ffn_up.weight", il);
    if (bind_split(ld, name, E, rows, parts, 2)) return -1;
  }
  return 0;
}

/* An optional f32 [n_rot / 2] RoPE frequency-factor tensor. */
static int bind_rope_factors(llm_loader *ld, const llm_hparams *hp, const char *name, sp_tensor *out) {
  if (!gguf_find_tensor(ld->g, name)) return 0;
  return bind_vec(ld, name, hp->n_rot / 2, out);
}

int llm_model_load(llm_model *m, const gguf_ctx *g, char *err, int cap) {
  llm_loader ld = {.g = g, .err = err, .cap = cap};
  memset(m, 0, sizeof *m);
  llm_hparams *hp = &m->hp;
  if (llm_arch_select(&ld, hp) || read_hparams(&ld, hp) || llm_arch_hparams(&ld, hp)) return -1;
  const gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
  if (!emb || emb->ne[1] == 0 || emb->ne[1] > 1u << 24) return llm_load_fail(&ld, "model: tensor %s is missing or empty", "token_embd.weight", 0);
  hp->n_vocab = (uint32_t)emb->ne[1];
  if (bind(&ld, "token_embd.weight", hp->n_embd, hp->n_vocab, false, &m->w.tok_embd) ||
      bind(&ld, "output_norm.weight", hp->n_embd, 1, true, &m->w.out_norm))
    return -1;
  if (gguf_find_tensor(g, "output.weight")) {
    if (bind(&ld, "output.weight", hp->n_embd, hp->n_vocab, false, &m->w.output)) return -1;
  } else {
    m->w.output = m->w.tok_embd; /* tied embeddings */
  }
  if (bind_rope_factors(&ld, hp, "rope_freqs.weight", &m->w.rope_freqs) ||
      bind_rope_factors(&ld, hp, "rope_factors_long.weight", &m->w.rope_long) ||
      bind_rope_factors(&ld, hp, "rope_factors_short.weight", &m->w.rope_short))
    return -1;
  m->w.layers = calloc(hp->n_layer, sizeof *m->w.layers);
  if (!m->w.layers) return llm_load_fail(&ld, "model: out of memory%s", "", 0);
  for (uint32_t il = 0; il < hp->n_layer; il++)
    if (bind_layer(&ld, hp, il, &m->w.layers[il])) return -1;
  return llm_arch_layers(&ld, hp, m->w.layers);
}
