/*
 * chat.h: chat templates, chosen from the model's metadata.
 *
 * GGUF files carry a Jinja template (tokenizer.chat_template). We do not run
 * Jinja in the guest; we recognise the families we support and format their
 * messages directly: ChatML (SmolLM2, Qwen) and the Llama 3 header format.
 */
#ifndef LLM_CHAT_H
#define LLM_CHAT_H

#include <stddef.h>

typedef enum llm_chat_kind {
  LLM_CHAT_RAW = 0,  /* no template: text goes in as is */
  LLM_CHAT_CHATML,   /* <|im_start|>role\ncontent<|im_end|>\n */
  LLM_CHAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
} llm_chat_kind;

/* Recognises the family of a Jinja template (NULL or unknown -> RAW). */
llm_chat_kind llm_chat_detect(const char *tmpl, size_t len);

/* Copies the template's built-in default system prompt into out (empty
 * when it has none). */
void llm_chat_default_system(const char *tmpl, size_t len, char *out, size_t cap);

/* Formats one message; returns the bytes written (excluding NUL), or -1
 * when out is too small. */
int llm_chat_message(llm_chat_kind kind, const char *role, const char *content, char *out, size_t cap);

/* The text that opens the assistant's reply. */
const char *llm_chat_assistant_prefix(llm_chat_kind kind);

/* The special token that ends a turn ("<|im_end|>", "<|eot_id|>"), or NULL. */
const char *llm_chat_end_of_turn(llm_chat_kind kind);

/* Text between the end-of-turn token and the next message. */
const char *llm_chat_separator(llm_chat_kind kind);

#endif
