/*
 * model.c: the transformer forward pass as one command list per call.
 *
 * Each stage is one host op under a one-line comment; shapes are
 * [innermost, ...]. The list for a decode step (n = 1) has the same bytes
 * every token: positions and token ids are read from guest memory, so a
 * backend can replay it.
 *
 * The architectures differ only by the switches in llm_hparams and the
 * per-layer window and RoPE base (model_arch.c): a stage one of them
 * guards is an `if` here, so a Llama file builds exactly the list it
 * always did.
 */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void build_forward(llm_model *m, sp_list *list, uint32_t n);

static void *alloc_f32(size_t n) { return aligned_alloc(64, (n * 4 + 63) / 64 * 64); }

/* Hands out 64-byte aligned pieces of one block. */
typedef struct carver {
  uint8_t *base; /* NULL while only measuring */
  size_t used;
} carver;

static void *carve(carver *c, size_t bytes) {
  void *p = c->base ? c->base + c->used : NULL;
  c->used += (bytes + 63) / 64 * 64;
  return p;
}

/* Lays the activations and the KV cache out in one block (c->base NULL:
 * only measures it). */
static void carve_state(carver *c, llm_state *st, const llm_hparams *hp, size_t cache_elems) {
  size_t E = hp->n_embd, B = st->n_batch, D = hp->head_dim, F = hp->n_ff;
  size_t kv_row = (size_t)hp->n_head_kv * D;
  st->x = carve(c, E * B * 4), st->xb = carve(c, E * B * 4), st->proj = carve(c, E * B * 4);
  st->q = carve(c, D * hp->n_head * B * 4), st->att = carve(c, D * hp->n_head * B * 4);
  st->k = carve(c, kv_row * B * 4), st->v = carve(c, kv_row * B * 4);
  st->gate = carve(c, F * B * 4), st->up = carve(c, F * B * 4);
  st->k_cache = carve(c, cache_elems * 2), st->v_cache = carve(c, cache_elems * 2);
}

/* The commands of the longest forward list, counted by a measuring pass:
 * the list is built into storage with room for none (sp_list_wanted), for
 * one token and for a full batch. No count is written down by hand, so a
 * stage added to the forward pass can never overflow the list. */
static uint32_t forward_commands(llm_model *m) {
  sp_cmd_list_header probe_storage;
  uint32_t most = 0, sizes[2] = {1, m->st.n_batch}, top_n = m->st.top_n;
  uint32_t recent_n = m->st.recent_n;
  m->st.top_n = 1, m->st.recent_n = 1; /* with the candidates' commands, which come and go */
  for (int i = 0; i < 2; i++) {
    sp_list probe = sp_list_init(&probe_storage, 0);
    build_forward(m, &probe, sizes[i]);
    uint32_t wanted = sp_list_wanted(&probe);
    most = wanted > most ? wanted : most;
  }
  m->st.top_n = top_n, m->st.recent_n = recent_n;
  return most;
}

int llm_state_init(llm_model *m, uint32_t n_batch, uint32_t n_ctx, bool logits_all, char *err, int cap) {
  const llm_hparams *hp = &m->hp;
  llm_state *st = &m->st;
  size_t B = n_batch, V = hp->n_vocab;
  size_t kv_row = (size_t)hp->n_head_kv * hp->head_dim;
  memset(st, 0, sizeof *st);
  st->n_batch = n_batch, st->n_ctx = n_ctx, st->logits_all = logits_all;
  /* Activations and the KV cache: one block, declared device-local below.
   * Only commands touch them; the guest reads logits, which stay in
   * ordinary memory with the token ids and positions. */
  size_t cache_elems = (size_t)hp->n_layer * n_ctx * kv_row;
  carver c = {NULL, 0};
  carve_state(&c, st, hp, cache_elems);
  st->block_bytes = c.used;
  st->block = c.used <= 0xFFFFFFFFu ? aligned_alloc(64, c.used) : NULL;
  if (st->block) {
    c = (carver){st->block, 0};
    carve_state(&c, st, hp, cache_elems);
  }
  st->logits = alloc_f32(V * (logits_all ? B : 1));
  st->best = malloc(sizeof *st->best * B);
  st->tokens = alloc_f32(B), st->pos = alloc_f32(B);
  if (st->block && st->logits && st->best && st->tokens && st->pos) {
    st->list_capacity = forward_commands(m);
    st->list_storage = malloc(sizeof(sp_cmd_list_header) + st->list_capacity * sizeof(sp_cmd));
  }
  if (!st->block || !st->logits || !st->best || !st->tokens || !st->pos || !st->list_storage) {
    snprintf(err, (size_t)cap, "model: out of memory for a %u-token context (KV cache %zu MiB)",
             n_ctx, cache_elems * 4 >> 20);
    return -1;
  }
  /* The cache is not cleared: attention reads only positions already
   * written. On a discrete GPU the block then lives in device memory
   * between steps, so kernels never cross the bus for it. */
  if (sp_device_local(st->block, st->block_bytes) != SP_OK) {
    snprintf(err, (size_t)cap, "model: cannot declare the activations device-local: %s", sp_last_error());
    return -1;
  }
  /* Greedy decoding reads only the argmax (st->best): the logits need not
   * cross the bus unless a sampler asks for them (llm_logits_read). Tests
   * that keep every position's logits read them all: those stay put. */
  if (!logits_all) st->logits_local = sp_device_local(st->logits, V * sizeof *st->logits) == SP_OK;
  return 0;
}

int llm_state_candidates(llm_model *m, uint32_t top_n, const int32_t *recent_rows, uint32_t recent_n, char *err,
                         int cap) {
  llm_state *st = &m->st;
  free(st->top_ids), free(st->top_values), free(st->recent_values);
  st->top_ids = NULL, st->top_values = NULL, st->recent_values = NULL;
  st->top_n = 0, st->recent_n = 0, st->recent_rows = NULL;
  st->list_tokens = 0; /* the next forward builds its list again */
  if (top_n == 0) return 0;
  st->top_ids = malloc(sizeof *st->top_ids * top_n);
  st->top_values = malloc(sizeof *st->top_values * top_n);
  st->recent_values = malloc(sizeof *st->recent_values * (recent_n ? recent_n : 1));
  if (!st->top_ids || !st->top_values || !st->recent_values) {
    snprintf(err, (size_t)cap, "model: out of memory for %u sampling candidates", top_n);
    return llm_state_candidates(m, 0, NULL, 0, err, cap), -1;
  }
  st->top_n = top_n, st->recent_rows = recent_rows, st->recent_n = recent_n;
  return 0;
}

int llm_logits_read(llm_model *m, const float *logits, uint32_t rows, char *err, int cap) {
  if (!m->st.logits_local) return 0;
  if (sp_sync(logits, (uint64_t)rows * m->hp.n_vocab * sizeof *logits) == SP_OK) return 0;
  snprintf(err, (size_t)cap, "reading the logits back: %s", sp_last_error());
  return -1;
}

/* A 2-D f32 activation [ne0, n]. */
static sp_tensor act(const float *p, uint32_t ne0, uint32_t n) {
  return sp_tensor_2d(p, SP_DTYPE_F32, ne0, n);
}

/* The RoPE frequency factors: Llama 3's, or LongRoPE's set for the
 * context we run (the long one only when it exceeds the context the
 * frequencies were made for, as llama.cpp chooses), or none. */
static sp_tensor rope_factors(const llm_model *m) {
  if (m->w.rope_freqs.dtype) return m->w.rope_freqs;
  return m->st.n_ctx > m->hp.n_ctx_orig ? m->w.rope_long : m->w.rope_short;
}

/* One layer's attention block: x += Wo . attn(rope(Wq.xn), cache) */
static void attention_block(llm_model *m, sp_list *list, uint32_t il, uint32_t n) {
  const llm_hparams *hp = &m->hp;
  llm_state *st = &m->st;
  const llm_layer *l = &m->w.layers[il];
  uint32_t E = hp->n_embd, D = hp->head_dim, Hq = hp->n_head, Hkv = hp->n_head_kv;
  size_t layer_off = (size_t)il * st->n_ctx * Hkv * D;
  sp_tensor pos = sp_tensor_1d(st->pos, SP_DTYPE_I32, n);
  sp_tensor q3 = sp_tensor_4d(st->q, SP_DTYPE_F32, D, Hq, n, 1);     /* [D, Hq, n] */
  sp_tensor k3 = sp_tensor_4d(st->k, SP_DTYPE_F32, D, Hkv, n, 1);    /* [D, Hkv, n] */
  sp_tensor kc = sp_tensor_4d(st->k_cache + layer_off, SP_DTYPE_F16, D, Hkv, st->n_ctx, 1);
  sp_tensor vc = sp_tensor_4d(st->v_cache + layer_off, SP_DTYPE_F16, D, Hkv, st->n_ctx, 1);
  /* xb = rmsnorm(x) * attn_norm */
  sp_rmsnorm(list, act(st->xb, E, n), act(st->x, E, n), l->attn_norm, hp->norm_eps);
  /* q, k, v projections */
  sp_matmul(list, act(st->q, Hq * D, n), l->wq, act(st->xb, E, n));
  sp_matmul(list, act(st->k, Hkv * D, n), l->wk, act(st->xb, E, n));
  sp_matmul(list, act(st->v, Hkv * D, n), l->wv, act(st->xb, E, n));
  if (hp->qkv_bias) { /* q, k, v += their biases (one row, broadcast) */
    sp_add(list, act(st->q, Hq * D, n), act(st->q, Hq * D, n), l->bq);
    sp_add(list, act(st->k, Hkv * D, n), act(st->k, Hkv * D, n), l->bk);
    sp_add(list, act(st->v, Hkv * D, n), act(st->v, Hkv * D, n), l->bv);
  }
  if (hp->qk_norm) { /* each head of q and k = rmsnorm(head) * q_norm / k_norm */
    sp_rmsnorm(list, act(st->q, D, Hq * n), act(st->q, D, Hq * n), l->q_norm, hp->norm_eps);
    sp_rmsnorm(list, act(st->k, D, Hkv * n), act(st->k, D, Hkv * n), l->k_norm, hp->norm_eps);
  }
  /* rotary embedding of q and k, in place */
  sp_tensor factors = rope_factors(m);
  sp_rope(list, q3, q3, pos, hp->n_rot, l->rope_theta, hp->rope_mode, l->rope_scale, factors);
  sp_rope(list, k3, k3, pos, hp->n_rot, l->rope_theta, hp->rope_mode, l->rope_scale, factors);
  /* append k and v to the cache at their positions (f16) */
  sp_set_rows(list, sp_tensor_2d(st->k_cache + layer_off, SP_DTYPE_F16, Hkv * D, st->n_ctx),
              act(st->k, Hkv * D, n), pos);
  sp_set_rows(list, sp_tensor_2d(st->v_cache + layer_off, SP_DTYPE_F16, Hkv * D, st->n_ctx),
              act(st->v, Hkv * D, n), pos);
  /* causal grouped-query attention over the cache (or its last l->window rows) */
  sp_attention_window(list, sp_tensor_4d(st->att, SP_DTYPE_F32, D, Hq, n, 1), q3, kc, vc, pos, hp->attn_scale,
                      l->window);
  /* proj = Wo . att */
  sp_matmul(list, act(st->proj, E, n), l->wo, act(st->att, Hq * D, n));
  /* proj = rmsnorm(proj) * attn_post_norm (Gemma 3) */
  if (hp->post_norms) sp_rmsnorm(list, act(st->proj, E, n), act(st->proj, E, n), l->attn_post_norm, hp->norm_eps);
  /* x += proj */
  sp_add(list, act(st->x, E, n), act(st->x, E, n), act(st->proj, E, n));
}

/* One layer's feed-forward block: x += Wdown . (act(Wgate.xn) * Wup.xn),
 * act = silu (SwiGLU) or tanh-GELU (GeGLU) */
static void ffn_block(llm_model *m, sp_list *list, uint32_t il, uint32_t n) {
  const llm_hparams *hp = &m->hp;
  llm_state *st = &m->st;
  const llm_layer *l = &m->w.layers[il];
  uint32_t E = hp->n_embd, F = hp->n_ff;
  /* xb = rmsnorm(x) * ffn_norm */
  sp_rmsnorm(list, act(st->xb, E, n), act(st->x, E, n), l->ffn_norm, hp->norm_eps);
  /* gate and up projections */
  sp_matmul(list, act(st->gate, F, n), l->w_gate, act(st->xb, E, n));
  sp_matmul(list, act(st->up, F, n), l->w_up, act(st->xb, E, n));
  /* gate = act(gate) * up, in place */
  if (hp->gelu_ffn) sp_geglu(list, act(st->gate, F, n), act(st->gate, F, n), act(st->up, F, n));
  else sp_swiglu(list, act(st->gate, F, n), act(st->gate, F, n), act(st->up, F, n));
  /* proj = Wdown . gate */
  sp_matmul(list, act(st->proj, E, n), l->w_down, act(st->gate, F, n));
  /* proj = rmsnorm(proj) * ffn_post_norm (Gemma 3) */
  if (hp->post_norms) sp_rmsnorm(list, act(st->proj, E, n), act(st->proj, E, n), l->ffn_post_norm, hp->norm_eps);
  /* x += proj */
  sp_add(list, act(st->x, E, n), act(st->x, E, n), act(st->proj, E, n));
}

static float *submit_forward(const sp_list *list, llm_state *st, char *err, int cap) {
  if (sp_submit_keep(list) != SP_OK) {
    snprintf(err, (size_t)cap, "forward: %s", sp_last_error());
    return NULL;
  }
  return st->logits;
}

float *llm_forward(llm_model *m, const int32_t *tokens, uint32_t n, uint32_t pos0, char *err, int cap) {
  llm_state *st = &m->st;
  if (n == 0 || n > st->n_batch || pos0 > st->n_ctx - n) {
    snprintf(err, (size_t)cap, "forward: %u tokens at position %u do not fit (batch %u, context %u)",
             n, pos0, st->n_batch, st->n_ctx);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) st->tokens[i] = tokens[i], st->pos[i] = (int32_t)(pos0 + i);
  if (st->list_tokens == n) { /* every decode step: the same list again */
    sp_list again = {st->list_storage, st->list_capacity};
    return submit_forward(&again, st, err, cap);
  }
  st->list_tokens = 0;
  sp_list list = sp_list_init(st->list_storage, st->list_capacity);
  build_forward(m, &list, n);
  float *logits = submit_forward(&list, st, err, cap);
  if (logits) st->list_tokens = n;
  return logits;
}

/* The sampler's candidates from the last logits row: the indices of the
 * top_n largest, their values (a gather over the row seen as V rows of one
 * value) and the recent tokens' logits, the same way. */
static void gather_candidates(sp_list *list, const llm_state *st, const float *row, uint32_t V) {
  sp_tensor table = sp_tensor_2d(row, SP_DTYPE_F32, 1, V);
  sp_topk(list, sp_tensor_1d(st->top_ids, SP_DTYPE_I32, st->top_n), sp_tensor_1d(row, SP_DTYPE_F32, V));
  sp_get_rows(list, act(st->top_values, 1, st->top_n), table, sp_tensor_1d(st->top_ids, SP_DTYPE_I32, st->top_n));
  if (st->recent_n)
    sp_get_rows(list, act(st->recent_values, 1, st->recent_n), table,
                sp_tensor_1d(st->recent_rows, SP_DTYPE_I32, st->recent_n));
}

/* The forward pass of n tokens as commands (token ids and positions are
 * read from st->tokens and st->pos when the list runs). */
static void build_forward(llm_model *m, sp_list *list, uint32_t n) {
  const llm_hparams *hp = &m->hp;
  llm_state *st = &m->st;
  uint32_t E = hp->n_embd, V = hp->n_vocab;
  /* x = token embeddings */
  sp_get_rows(list, act(st->x, E, n), m->w.tok_embd, sp_tensor_1d(st->tokens, SP_DTYPE_I32, n));
  /* x *= embd_scale (Gemma: sqrt(E)) */
  if (hp->embd_scale != 1.0f) sp_scale(list, act(st->x, E, n), act(st->x, E, n), hp->embd_scale);
  for (uint32_t il = 0; il < hp->n_layer; il++) {
    attention_block(m, list, il, n);
    ffn_block(m, list, il, n);
  }
  /* logits = output . rmsnorm(x) * out_norm, for the last token or all */
  uint32_t first = st->logits_all ? 0 : n - 1, rows = n - first;
  sp_rmsnorm(list, act(st->xb, E, rows), act(st->x + (size_t)first * E, E, rows), m->w.out_norm,
             hp->norm_eps);
  sp_matmul(list, act(st->logits, V, rows), m->w.output, act(st->xb, E, rows));
  /* logits = cap * tanh(logits / cap) (Gemma's final soft-cap) */
  if (hp->logit_softcap > 0)
    sp_softcap(list, act(st->logits, V, rows), act(st->logits, V, rows), hp->logit_softcap);
  sp_argmax(list, sp_tensor_1d(st->best, SP_DTYPE_I32, rows), act(st->logits, V, rows));
  if (st->top_n) gather_candidates(list, st, st->logits + (size_t)(rows - 1) * V, V);
}
