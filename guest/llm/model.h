/*
 * model.h: a decoder-only transformer (Llama, Qwen2, Qwen3, Gemma 3, Phi-3)
 * whose tensors all live in the guest's linear memory. The guest owns the architecture: it lays out
 * weights (mapped from the GGUF file), activations and the KV cache, and
 * describes each forward pass as one command list for the host.
 */
#ifndef LLM_MODEL_H
#define LLM_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "samepage_guest.h"

/* The architectures we run; each is the Llama graph plus the switches in
 * llm_hparams (model_arch.c reads them from the file). */
typedef enum llm_arch { LLM_ARCH_LLAMA, LLM_ARCH_QWEN2, LLM_ARCH_QWEN3, LLM_ARCH_GEMMA3, LLM_ARCH_PHI3 } llm_arch;

typedef struct llm_hparams {
  llm_arch arch;
  uint32_t n_vocab;     /* tokens */
  uint32_t n_embd;      /* E, the residual width */
  uint32_t n_layer;
  uint32_t n_head;      /* Hq */
  uint32_t n_head_kv;   /* Hkv, Hq % Hkv == 0 */
  uint32_t head_dim;    /* D */
  uint32_t n_ff;        /* F, the feed-forward width */
  uint32_t n_ctx_train; /* context the model was trained for */
  uint32_t n_rot;       /* rotated dims per head (usually D) */
  float norm_eps;       /* RMSNorm epsilon */
  float rope_theta;     /* RoPE frequency base (global layers) */
  uint32_t rope_mode;   /* 0: adjacent pairs (Llama), 2: NeoX halves */
  float rope_freq_scale; /* 1 / linear rope scaling factor; 1 = none */
  uint32_t n_ctx_orig;  /* context the RoPE frequencies were made for (LongRoPE) */
  float attn_scale;     /* softmax scale of q.k (folds in a LongRoPE attn_factor) */
  float embd_scale;     /* token embeddings are multiplied by it (Gemma: sqrt(E)) */
  float logit_softcap;  /* final logits = cap * tanh(logits / cap); 0 = none */
  bool qkv_bias;        /* Qwen2: q, k, v projections have biases */
  bool qk_norm;         /* Qwen3, Gemma 3: RMSNorm of each q and k head before RoPE */
  bool post_norms;      /* Gemma 3: RMSNorm of each block's output too */
  bool gelu_ffn;        /* Gemma 3: GeGLU (tanh GELU) instead of SwiGLU */
  bool fused_qkv;       /* Phi-3: one attn_qkv tensor, split at load */
  bool fused_gate_up;   /* Phi-3: ffn_up holds gate then up, split at load */
} llm_hparams;

typedef struct llm_layer {
  uint32_t window;      /* sliding attention window (0: attends to everything) */
  float rope_theta;     /* this layer's RoPE base (Gemma 3: local layers differ) */
  float rope_scale;     /* this layer's RoPE frequency scale (1 = none) */
  sp_tensor attn_norm;  /* f32 [E] */
  sp_tensor wq;         /* [E, Hq*D] */
  sp_tensor wk;         /* [E, Hkv*D] */
  sp_tensor wv;         /* [E, Hkv*D] */
  sp_tensor wo;         /* [Hq*D, E] */
  sp_tensor bq, bk, bv; /* f32 [Hq*D], [Hkv*D], [Hkv*D] biases (qkv_bias) */
  sp_tensor q_norm;     /* f32 [D] (qk_norm) */
  sp_tensor k_norm;     /* f32 [D] (qk_norm) */
  sp_tensor attn_post_norm; /* f32 [E] (post_norms) */
  sp_tensor ffn_post_norm;  /* f32 [E] (post_norms) */
  sp_tensor ffn_norm;   /* f32 [E] */
  sp_tensor w_gate;     /* [E, F] */
  sp_tensor w_up;       /* [E, F] */
  sp_tensor w_down;     /* [F, E] */
} llm_layer;

typedef struct llm_weights {
  sp_tensor tok_embd;   /* [E, V] */
  sp_tensor out_norm;   /* f32 [E] */
  sp_tensor output;     /* [E, V], the embedding table when tied */
  sp_tensor rope_freqs; /* f32 [n_rot/2] Llama 3 frequency factors, or empty */
  sp_tensor rope_long;  /* f32 [n_rot/2] LongRoPE factors beyond n_ctx_orig, or empty */
  sp_tensor rope_short; /* f32 [n_rot/2] LongRoPE factors within n_ctx_orig, or empty */
  llm_layer *layers;    /* [n_layer] */
} llm_weights;

/* Per-step buffers, sized for n_batch tokens, and the KV cache. */
typedef struct llm_state {
  uint32_t n_batch;     /* most tokens per forward call */
  uint32_t n_ctx;       /* KV cache length C */
  bool logits_all;      /* logits for every token, not only the last */
  float *x;             /* [E, B] residual stream */
  float *xb;            /* [E, B] normed input of a block */
  float *q;             /* [D, Hq, B] */
  float *k;             /* [D, Hkv, B] */
  float *v;             /* [D, Hkv, B] */
  float *att;           /* [D, Hq, B] attention output */
  float *proj;          /* [E, B] a block's output projection */
  float *gate;          /* [F, B] */
  float *up;            /* [F, B] */
  float *logits;        /* [V, B or 1]; device-local unless logits_all: read them
                           through llm_logits_read */
  int32_t *best;        /* [B or 1] the argmax of each logits row (ordinary memory) */
  bool logits_local;
  int32_t *tokens;      /* [B] */
  int32_t *pos;         /* [B] absolute positions */
  uint16_t *k_cache;    /* f16 [n_layer][C][Hkv*D] */
  uint16_t *v_cache;    /* f16 [n_layer][C][Hkv*D] */
  void *block;          /* x .. v_cache above: one device-local block */
  size_t block_bytes;
  /* Sampling candidates (llm_state_candidates; top_n 0: none): the forward
   * list ends with the top_n largest logits of the last row (ids and values)
   * and the logits of recent_n recent tokens, in ordinary memory. */
  uint32_t top_n, recent_n;
  int32_t *top_ids;
  float *top_values;
  const int32_t *recent_rows;
  float *recent_values;
  sp_cmd_list_header *list_storage;
  uint32_t list_capacity;
  uint32_t list_tokens;  /* tokens of the forward list in list_storage (0: none): a
                            list depends only on that count, positions are data */
} llm_state;

typedef struct llm_model {
  llm_hparams hp;
  llm_weights w;
  llm_state st;
} llm_model;

/* Allocates activations for n_batch tokens and an f16 KV cache of n_ctx
 * positions, in one block declared device-local (read it only after
 * sp_sync). Returns 0, or -1 with a message in err. */
int llm_state_init(llm_model *m, uint32_t n_batch, uint32_t n_ctx, bool logits_all, char *err, int cap);

/* Runs tokens[0..n) at positions pos0..pos0+n-1 (n <= n_batch, pos0 + n <=
 * n_ctx), appending to the KV cache. Returns a pointer to the logits: [V]
 * for the last token, or [V, n] when logits_all (read them through
 * llm_logits_read); st->best holds each row's argmax. NULL with a message
 * in err when the host rejects the work. */
float *llm_forward(llm_model *m, const int32_t *tokens, uint32_t n, uint32_t pos0, char *err, int cap);

/* From the next forward on, also gather the top_n largest logits of the last
 * row and the logits of rows recent_rows[0..recent_n) (which must stay valid
 * token ids); top_n 0 stops it. 0, or -1 (out of memory) with the reason in
 * err. */
int llm_state_candidates(llm_model *m, uint32_t top_n, const int32_t *recent_rows, uint32_t recent_n, char *err,
                         int cap);

/* Makes `rows` rows of logits from `logits` (inside st->logits) readable by
 * the guest: a copy back from the device when they are device-local. 0, or
 * -1 with the reason in err. */
int llm_logits_read(llm_model *m, const float *logits, uint32_t rows, char *err, int cap);

#endif
