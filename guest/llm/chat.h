/*
 * chat.h: chat formats, chosen from the model's metadata.
 *
 * GGUF files carry a Jinja template (tokenizer.chat_template). The guest
 * runs no Jinja: it recognises the family of the template by the marker
 * text it contains and formats messages with that family's fixed pieces.
 * Families: ChatML (Qwen, SmolLM2), Llama 3, Gemma (1-3), Gemma 4, Phi-3,
 * Mistral ([INST], with or without the v7 [SYSTEM_PROMPT] block). The
 * pieces are what llama.cpp's Jinja rendering of each family's template
 * produces (tests/test_tok_chat.c compares them with fixtures rendered by
 * jinja2). Anything else is RAW: text goes in as is, and llm_main says so.
 *
 * BOS is never part of the text: the guest adds it as a token id.
 */
#ifndef LLM_CHAT_H
#define LLM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum llm_chat_kind {
  LLM_CHAT_RAW = 0,    /* no or unknown template: text goes in as is */
  LLM_CHAT_CHATML,     /* <|im_start|>role\ncontent<|im_end|>\n */
  LLM_CHAT_LLAMA3,     /* <|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|> */
  LLM_CHAT_GEMMA,      /* <start_of_turn>user\ncontent<end_of_turn>\n, system folded in */
  LLM_CHAT_GEMMA4,     /* <|turn>user\ncontent<turn|>\n */
  LLM_CHAT_PHI3,       /* <|user|>\ncontent<|end|>\n */
  LLM_CHAT_MISTRAL,    /* [INST]content[/INST]reply</s>, system folded into the last user turn */
  LLM_CHAT_MISTRAL_V7  /* [SYSTEM_PROMPT]system[/SYSTEM_PROMPT][INST]content[/INST]reply</s> */
} llm_chat_kind;

/* Where a family puts the system prompt. */
typedef enum llm_chat_system {
  LLM_SYS_OWN,        /* a message of its own */
  LLM_SYS_FOLD_FIRST, /* "system" fold_sep "user" as the first user message */
  LLM_SYS_FOLD_LAST,  /* the same, in the last user message */
  LLM_SYS_DROP        /* the template ignores it */
} llm_chat_system;

/* A family's pieces; every string is static (never NULL). */
typedef struct llm_chat {
  llm_chat_kind kind;
  const char *name;
  llm_chat_system system;
  bool trim; /* the template strips white space around each content */
  const char *fold_sep; /* between a folded system prompt and the user text */
  const char *sys_open, *sys_close;
  const char *user_open, *user_close;
  const char *asst_open, *asst_close; /* an assistant message in the history */
  const char *gen_prompt;             /* opens the reply to generate */
  const char *end_of_turn;            /* the token text a reply ends with */
} llm_chat;

typedef struct llm_chat_msg {
  const char *role; /* "system", "user" or "assistant" */
  const char *content;
} llm_chat_msg;

/* The family of a Jinja template (NULL, or no known marker: RAW). */
llm_chat llm_chat_detect(const char *tmpl, size_t len);

/* Copies the template's built-in default system prompt into out (empty
 * when it has none, or when it is computed rather than a constant). */
void llm_chat_default_system(const char *tmpl, size_t len, char *out, size_t cap);

/* A whole conversation as the family's template renders it (BOS left out),
 * with the generation prompt when add_generation_prompt. Returns a malloc'd
 * string, or NULL when out of memory. RAW joins the contents. */
char *llm_chat_render(const llm_chat *c, const llm_chat_msg *msgs, size_t n,
                      bool add_generation_prompt);

/* How the previous reply ended, for llm_chat_turn. */
typedef enum llm_chat_reply {
  LLM_REPLY_NONE,  /* no reply yet (first turn) */
  LLM_REPLY_ENDED, /* the model produced its end-of-turn token */
  LLM_REPLY_CUT    /* it stopped early (token limit): close it first */
} llm_chat_reply;

/*
 * The text of the next turn of a conversation whose earlier turns are
 * already in the KV cache: the rest of the previous reply's closing, the
 * system prompt on the first turn (system may be "" or NULL), the user
 * message and the generation prompt. For LLM_SYS_FOLD_LAST families the
 * system prompt stays in the first turn (the cache cannot move it).
 * Returns a malloc'd string or NULL (out of memory).
 */
char *llm_chat_turn(const llm_chat *c, const char *system, const char *user, llm_chat_reply prev);

#endif
