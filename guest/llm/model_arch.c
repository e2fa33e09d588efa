/*
 * model_arch.c: what differs between the architectures we run, read from
 * the file's metadata.
 *
 * Every architecture here is the Llama graph (RMSNorm, attention with RoPE,
 * a gated feed-forward) with a few switches: the RoPE mode, biases on the
 * q/k/v projections, RMSNorm of each q and k head, norms after the blocks,
 * GeGLU instead of SwiGLU, fused projection tensors, sliding-window layers.
 * This file turns general.architecture and the "<arch>.*" keys into those
 * switches; model.c reads only the switches, never the architecture name.
 * Settings we cannot honour are refused by key and value, never ignored:
 * a model that loads runs the way its file says.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model_load.h"

/* The fixed traits of an architecture (as llama.cpp builds its graph). */
typedef struct arch_traits {
  const char *name;
  uint32_t rope_mode;   /* 0 adjacent pairs, 2 NeoX halves */
  bool qkv_bias, qk_norm, post_norms, gelu_ffn, fused;
  bool sliding_window;  /* honours <arch>.attention.sliding_window */
} arch_traits;

/* Indexed by llm_arch. Phi-3 files carry a sliding window too, but
 * llama.cpp runs Phi-3 without it (its converters set it inconsistently),
 * so we do as well: the same file must give the same logits. */
static const arch_traits ARCHS[] = {
    [LLM_ARCH_LLAMA] = {"llama", 0, false, false, false, false, false, true},
    [LLM_ARCH_QWEN2] = {"qwen2", 2, true, false, false, false, false, false},
    [LLM_ARCH_QWEN3] = {"qwen3", 2, false, true, false, false, false, false},
    [LLM_ARCH_GEMMA3] = {"gemma3", 2, false, true, true, true, false, true},
    [LLM_ARCH_PHI3] = {"phi3", 2, false, false, false, false, true, false},
};
#define N_ARCHS (sizeof ARCHS / sizeof ARCHS[0])

/* Gemma 3's defaults where the file is silent (llama.cpp's): every 6th
 * layer global, the local ones with RoPE base 10000. */
#define GEMMA3_SWA_PATTERN 6
#define SWA_ROPE_BASE 10000.0f

int llm_arch_select(llm_loader *ld, llm_hparams *hp) {
  int64_t i = gguf_find_key(ld->g, "general.architecture");
  size_t len = 0;
  const char *arch = i >= 0 ? gguf_get_string(ld->g, i, &len) : NULL;
  if (!arch) return llm_load_fail(ld, "model: general.architecture is missing%s", "", 0);
  if (len >= sizeof ld->arch) len = sizeof ld->arch - 1;
  memcpy(ld->arch, arch, len);
  ld->arch[len] = '\0';
  for (size_t a = 0; a < N_ARCHS; a++) {
    const arch_traits *t = &ARCHS[a];
    if (strcmp(ld->arch, t->name) != 0) continue;
    hp->arch = (llm_arch)a;
    hp->rope_mode = t->rope_mode;
    hp->qkv_bias = t->qkv_bias, hp->qk_norm = t->qk_norm, hp->post_norms = t->post_norms;
    hp->gelu_ffn = t->gelu_ffn, hp->fused_qkv = t->fused, hp->fused_gate_up = t->fused;
    return 0;
  }
  return llm_load_fail(ld, "model: general.architecture = \"%s\" is not supported (llama, qwen2, qwen3, gemma3, phi3)",
                       ld->arch, 0);
}

/* A string key's value, NUL-terminated in out (cap bytes); "" when absent.
 * -1 when present but not a string. */
static int meta_string(llm_loader *ld, const char *key, char *out, size_t cap, char full[128]) {
  int64_t i = llm_meta_find(ld, key, full);
  out[0] = '\0';
  if (i < 0) return 0;
  size_t len = 0;
  const char *s = gguf_get_string(ld->g, i, &len);
  if (!s) return llm_load_fail(ld, "model: metadata key %s is not a string", full, 0);
  if (len >= cap) len = cap - 1;
  memcpy(out, s, len);
  out[len] = '\0';
  return 0;
}

/* RoPE scaling: linear (a frequency scale) and LongRoPE (frequency factor
 * tensors, bound in model_load.c, and an attention factor) are what the
 * ROPE op can do; YaRN needs ramps it has not, so it is refused. */
static int read_rope_scaling(llm_loader *ld, llm_hparams *hp) {
  char full[128], type[32];
  if (meta_string(ld, "rope.scaling.type", type, sizeof type, full)) return -1;
  bool none = type[0] == '\0' || strcmp(type, "none") == 0;
  if (!none && strcmp(type, "linear") != 0 && strcmp(type, "longrope") != 0) {
    char msg[192];
    snprintf(msg, sizeof msg, "%s = \"%s\"", full, type);
    return llm_load_fail(ld, "model: %s is not supported (none, linear, longrope)", msg, 0);
  }
  float factor = 1.0f, attn_factor = 1.0f;
  if (llm_meta_positive_f32(ld, "rope.scaling.factor", 1.0f, &factor) ||
      llm_meta_positive_f32(ld, "rope.scaling.attn_factor", 1.0f, &attn_factor) ||
      llm_meta_u32(ld, "rope.scaling.original_context_length", hp->n_ctx_train, &hp->n_ctx_orig))
    return -1;
  hp->rope_freq_scale = none ? 1.0f : 1.0f / factor;
  /* ggml multiplies the rotated values of q and k by attn_factor; with
   * every dimension rotated that is attn_factor^2 on each score, which
   * the attention scale can carry. With some dims unrotated it cannot. */
  if (attn_factor != 1.0f && hp->n_rot != hp->head_dim)
    return llm_load_fail(ld, "model: %s.rope.scaling.attn_factor with partial rotary dims (%lld) is not supported",
                         ld->arch, (long long)hp->n_rot);
  hp->attn_scale *= attn_factor * attn_factor;
  return 0;
}

/* Gemma 3's final logit soft-cap: 0 or absent means none. */
static int read_softcap(llm_loader *ld, llm_hparams *hp) {
  char full[128];
  int64_t i = llm_meta_find(ld, "final_logit_softcapping", full);
  hp->logit_softcap = 0;
  if (i < 0) return 0;
  if (!gguf_get_f32(ld->g, i, &hp->logit_softcap) || !(hp->logit_softcap >= 0 && hp->logit_softcap < INFINITY))
    return llm_load_fail(ld, "model: %s is not a finite number >= 0", full, 0);
  return 0;
}

int llm_arch_hparams(llm_loader *ld, llm_hparams *hp) {
  hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
  hp->embd_scale = 1.0f;
  if (hp->arch == LLM_ARCH_GEMMA3) {
    /* Gemma scales the embeddings by sqrt(E) (as a float, as llama.cpp). */
    hp->embd_scale = sqrtf((float)hp->n_embd);
    if (llm_meta_positive_f32(ld, "attention.scale", hp->attn_scale, &hp->attn_scale) || read_softcap(ld, hp))
      return -1;
  }
  return read_rope_scaling(ld, hp);
}

/* Gemma 3's layer pattern: either a per-layer array of booleans (true:
 * sliding) or n, meaning layers il with il % n < n - 1 slide and every n-th
 * is global (n = 0: all slide). */
static int read_swa_pattern(llm_loader *ld, const llm_hparams *hp, bool *sliding) {
  char full[128];
  int64_t i = llm_meta_find(ld, "attention.sliding_window_pattern", full);
  uint32_t n = GEMMA3_SWA_PATTERN;
  if (i >= 0 && gguf_kv_type(ld->g, i) == GGUF_TYPE_ARRAY) {
    if (gguf_arr_n(ld->g, i) != hp->n_layer)
      return llm_load_fail(ld, "model: %s has %lld entries, not one per layer", full, (long long)gguf_arr_n(ld->g, i));
    for (uint32_t il = 0; il < hp->n_layer; il++) {
      int64_t v = 0;
      const uint8_t *raw = gguf_arr_data(ld->g, i);
      if (gguf_arr_type(ld->g, i) == GGUF_TYPE_BOOL && raw) v = raw[il];
      else if (!gguf_get_arr_int(ld->g, i, il, &v))
        return llm_load_fail(ld, "model: %s is not an array of booleans", full, 0);
      sliding[il] = v != 0;
    }
    return 0;
  }
  if (i >= 0 && !gguf_get_u32(ld->g, i, &n))
    return llm_load_fail(ld, "model: metadata key %s is not an unsigned integer", full, 0);
  /* A pattern the file states must fit its layers; llama.cpp's default
   * applies to whatever count there is (fewer than 6 layers: all local). */
  if (i >= 0 && n > hp->n_layer)
    return llm_load_fail(ld, "model: %s = %lld is longer than the layer count", full, (long long)n);
  for (uint32_t il = 0; il < hp->n_layer; il++) sliding[il] = n == 0 || il % n < n - 1;
  return 0;
}

int llm_arch_layers(llm_loader *ld, const llm_hparams *hp, llm_layer *layers) {
  uint32_t window = 0;
  float swa_theta = SWA_ROPE_BASE;
  if (ARCHS[hp->arch].sliding_window && llm_meta_u32(ld, "attention.sliding_window", 0, &window)) return -1;
  for (uint32_t il = 0; il < hp->n_layer; il++) {
    layers[il].window = window;
    layers[il].rope_theta = hp->rope_theta, layers[il].rope_scale = hp->rope_freq_scale;
  }
  if (hp->arch != LLM_ARCH_GEMMA3 || window == 0) return 0; /* Mistral: every layer slides */
  /* Gemma 3: local (sliding) layers and global ones, each with its RoPE. */
  bool sliding[1024];
  if (read_swa_pattern(ld, hp, sliding) || llm_meta_positive_f32(ld, "rope.freq_base_swa", SWA_ROPE_BASE, &swa_theta))
    return -1;
  for (uint32_t il = 0; il < hp->n_layer; il++) {
    if (!sliding[il]) layers[il].window = 0;
    else layers[il].rope_theta = swa_theta, layers[il].rope_scale = 1.0f;
  }
  return 0;
}
