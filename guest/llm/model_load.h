/* model_load.h: llm_model from a parsed GGUF file mapped in linear memory. */
#ifndef LLM_MODEL_LOAD_H
#define LLM_MODEL_LOAD_H

#include "gguf.h"
#include "model.h"

/* Reads hyperparameters and binds every weight tensor (shapes and types
 * checked). Returns 0, or -1 with a message naming the key or tensor. */
int llm_model_load(llm_model *m, const gguf_ctx *g, char *err, int cap);

#endif
