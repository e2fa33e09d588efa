/* model_load.h: llm_model from a parsed GGUF file mapped in linear memory. */
#ifndef LLM_MODEL_LOAD_H
#define LLM_MODEL_LOAD_H

#include "gguf.h"
#include "model.h"

/* Reads hyperparameters and binds every weight tensor (shapes and types
 * checked). Returns 0, or -1 with a message naming the key or tensor. */
int llm_model_load(llm_model *m, const gguf_ctx *g, char *err, int cap);

/* ---- shared by model_load.c and model_arch.c ---- */

/* A load in progress: the file, its architecture name (the prefix of its
 * keys) and where a failure's message goes. */
typedef struct llm_loader {
  const gguf_ctx *g;
  char arch[32];
  char *err;
  int cap;
} llm_loader;

/* Writes the message (fmt takes one string and one long) and returns -1. */
int llm_load_fail(llm_loader *ld, const char *fmt, const char *a, long long b);

/* "<arch>.<key>" into full (128 bytes), and its index or -1 when absent. */
int64_t llm_meta_find(llm_loader *ld, const char *key, char full[128]);

/* Reads "<arch>.<key>" as u32; `fallback` when absent (or -1 to require). */
int llm_meta_u32(llm_loader *ld, const char *key, long fallback, uint32_t *out);

/* Reads "<arch>.<key>" as a finite float > 0 (it feeds an op parameter);
 * `fallback` when absent. Fails naming the key. */
int llm_meta_positive_f32(llm_loader *ld, const char *key, float fallback, float *out);

/* model_arch.c: the architecture named by general.architecture, with its
 * fixed traits (RoPE mode, biases, norms, fused tensors) set in hp. */
int llm_arch_select(llm_loader *ld, llm_hparams *hp);

/* model_arch.c: the architecture's optional settings (RoPE scaling,
 * attention scale, embedding scale, logit soft-cap), after the shape. */
int llm_arch_hparams(llm_loader *ld, llm_hparams *hp);

/* model_arch.c: each layer's attention window and RoPE base. */
int llm_arch_layers(llm_loader *ld, const llm_hparams *hp, llm_layer *layers);

#endif
