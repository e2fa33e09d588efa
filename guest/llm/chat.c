/* chat.c: chat families (see chat.h): detection, default system prompt,
 * and rendering a conversation or one turn of it from fixed pieces. */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *find(const char *hay, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= len && i <= len - n; i++)
    if (!memcmp(hay + i, needle, n)) return hay + i;
  return NULL;
}

/* ---- the families ----
 * Pieces as each template emits them; sources: the tokenizer.chat_template
 * of llama.cpp's ggml-vocab-{qwen2,phi-3,gemma-4}.gguf and its
 * models/templates/{google-gemma-2-2b-it, mistralai-Mistral-Nemo-Instruct-
 * 2407, Mistral-Small-3.2-24B-Instruct-2506}.jinja, and Meta-Llama-3's. */

static const llm_chat raw = {LLM_CHAT_RAW, "raw", LLM_SYS_DROP, false, "", "", "", "", "", "", "", "", ""};

static const llm_chat families[] = {
    {LLM_CHAT_CHATML, "chatml", LLM_SYS_OWN, false, "\n", "<|im_start|>system\n", "<|im_end|>\n",
     "<|im_start|>user\n", "<|im_end|>\n", "<|im_start|>assistant\n", "<|im_end|>\n",
     "<|im_start|>assistant\n", "<|im_end|>"},
    {LLM_CHAT_LLAMA3, "llama3", LLM_SYS_OWN, true, "\n",
     "<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>",
     "<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
     "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>",
     "<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"},
    {LLM_CHAT_GEMMA, "gemma", LLM_SYS_FOLD_FIRST, true, "\n", "", "", "<start_of_turn>user\n",
     "<end_of_turn>\n", "<start_of_turn>model\n", "<end_of_turn>\n", "<start_of_turn>model\n",
     "<end_of_turn>"},
    /* Gemma 4 opens a reply with an empty thought channel when thinking is
     * off; history replies have none. */
    {LLM_CHAT_GEMMA4, "gemma4", LLM_SYS_OWN, true, "\n", "<|turn>system\n", "<turn|>\n",
     "<|turn>user\n", "<turn|>\n", "<|turn>model\n", "<turn|>\n",
     "<|turn>model\n<|channel>thought\n<channel|>", "<turn|>"},
    {LLM_CHAT_PHI3, "phi3", LLM_SYS_OWN, false, "\n", "<|system|>\n", "<|end|>\n", "<|user|>\n",
     "<|end|>\n", "<|assistant|>\n", "<|end|>\n", "<|assistant|>\n", "<|end|>"},
    {LLM_CHAT_MISTRAL_V7, "mistral-v7", LLM_SYS_OWN, false, "\n", "[SYSTEM_PROMPT]",
     "[/SYSTEM_PROMPT]", "[INST]", "[/INST]", "", "</s>", "", "</s>"},
    {LLM_CHAT_MISTRAL, "mistral", LLM_SYS_FOLD_LAST, false, "\n\n", "", "", "[INST]", "[/INST]", "",
     "</s>", "", "</s>"},
};

static llm_chat family(llm_chat_kind k) {
  for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
    if (families[i].kind == k) return families[i];
  return raw;
}

/* Marker texts, most specific first: a Gemma 4 template also mentions
 * other families' tokens in tool-call code, so its own marker leads. */
static const struct {
  const char *marker;
  llm_chat_kind kind;
} markers[] = {
    {"<|turn>", LLM_CHAT_GEMMA4},           {"<|im_start|>", LLM_CHAT_CHATML},
    {"<|start_header_id|>", LLM_CHAT_LLAMA3}, {"<start_of_turn>", LLM_CHAT_GEMMA},
    {"<|user|>", LLM_CHAT_PHI3},            {"[SYSTEM_PROMPT]", LLM_CHAT_MISTRAL_V7},
    {"[INST]", LLM_CHAT_MISTRAL},
    /* Phi-3-small style: '<|' + message['role'] + '|>' names no user tag. */
    {"<|assistant|>", LLM_CHAT_PHI3},
};

llm_chat llm_chat_detect(const char *tmpl, size_t len) {
  if (!tmpl) return raw;
  for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++) {
    if (!find(tmpl, len, markers[i].marker)) continue;
    llm_chat c = family(markers[i].kind);
    /* Phi-3 (not 3.5) templates render no system message: llama.cpp then
     * puts it before the first user message, joined by "\n". */
    if (c.kind == LLM_CHAT_PHI3 && !find(tmpl, len, "<|system|>") &&
        !find(tmpl, len, "'<|' + message['role'] + '|>'"))
      c.system = LLM_SYS_FOLD_FIRST;
    /* Gemma 3 folds it in itself, with a blank line. */
    if (c.kind == LLM_CHAT_GEMMA && find(tmpl, len, "first_user_prefix")) c.fold_sep = "\n\n";
    /* Mistral v1 templates fold it into the first turn; old ones have no
     * system role at all (llama.cpp's "\n" fold then). */
    if (c.kind == LLM_CHAT_MISTRAL && find(tmpl, len, "loop.first and system_message"))
      c.system = LLM_SYS_FOLD_FIRST;
    else if (c.kind == LLM_CHAT_MISTRAL && !find(tmpl, len, "system_message"))
      c.system = LLM_SYS_FOLD_FIRST, c.fold_sep = "\n";
    /* Mistral v1-v3 templates differ only in the spaces around [INST]. */
    if (c.kind == LLM_CHAT_MISTRAL && find(tmpl, len, "[INST] ")) c.user_open = "[INST] ";
    if (c.kind == LLM_CHAT_MISTRAL && find(tmpl, len, " [/INST]")) c.user_close = " [/INST]";
    return c;
  }
  return raw;
}

/* Finds "<|im_start|>system" followed by a newline (real, or the two
 * characters \n inside a Jinja string literal) and copies the text up to
 * "<|im_end|>", turning escaped newlines back into real ones. */
void llm_chat_default_system(const char *tmpl, size_t len, char *out, size_t cap) {
  if (!out || cap == 0) return;
  out[0] = '\0';
  const char *at = tmpl ? find(tmpl, len, "<|im_start|>system") : NULL;
  if (!at) return;
  const char *end_of_tmpl = tmpl + len;
  at += strlen("<|im_start|>system");
  if (at < end_of_tmpl && *at == '\n') at++;
  else if (at + 1 < end_of_tmpl && at[0] == '\\' && at[1] == 'n') at += 2;
  else return;
  const char *stop = find(at, (size_t)(end_of_tmpl - at), "<|im_end|>");
  /* A '{' or a quote means the text is templated or concatenated. */
  if (!stop || memchr(at, '{', (size_t)(stop - at)) || memchr(at, '\'', (size_t)(stop - at)) ||
      memchr(at, '"', (size_t)(stop - at)))
    return;
  size_t o = 0;
  for (const char *p = at; p < stop && o + 1 < cap; p++) {
    if (p + 1 < stop && p[0] == '\\' && p[1] == 'n') out[o++] = '\n', p++;
    else out[o++] = *p;
  }
  out[o] = '\0';
}

/* ---- rendering ---- */

typedef struct sbuf {
  char *s;
  size_t n, cap;
  bool nomem;
} sbuf;

static void put_n(sbuf *b, const char *s, size_t n) {
  if (b->nomem) return;
  if (n >= SIZE_MAX / 2 - b->n) {
    b->nomem = true;
    return;
  }
  if (b->n + n + 1 > b->cap) {
    size_t cap = (b->n + n + 1) * 2;
    char *p = realloc(b->s, cap);
    if (!p) {
      b->nomem = true;
      return;
    }
    b->s = p, b->cap = cap;
  }
  memcpy(b->s + b->n, s, n);
  b->n += n;
  b->s[b->n] = '\0';
}

static void put(sbuf *b, const char *s) { put_n(b, s, strlen(s)); }

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Content, trimmed when the family's template trims it (Jinja's trim). */
static void put_content(sbuf *b, const llm_chat *c, const char *s) {
  size_t n = strlen(s), a = 0;
  if (c->trim) {
    while (a < n && is_ws(s[a])) a++;
    while (n > a && is_ws(s[n - 1])) n--;
  }
  put_n(b, s + a, n - a);
}

static char *finish(sbuf *b) {
  if (!b->nomem && !b->s) put(b, "");
  if (b->nomem) {
    free(b->s);
    return NULL;
  }
  return b->s;
}

/* A user message, with the system prompt folded in front when asked: the
 * content becomes system + fold_sep + user (llama.cpp's "\n" for templates
 * without a system role; Gemma 3 and Mistral templates use "\n\n"). */
static void put_user(sbuf *b, const llm_chat *c, const char *system, const char *user) {
  put(b, c->user_open);
  if (system && system[0]) {
    sbuf t = {0};
    put(&t, system), put(&t, c->fold_sep), put(&t, user);
    if (t.nomem) b->nomem = true;
    else put_content(b, c, t.s);
    free(t.s);
  } else {
    put_content(b, c, user);
  }
  put(b, c->user_close);
}

static void put_system(sbuf *b, const llm_chat *c, const char *system) {
  put(b, c->sys_open);
  put_content(b, c, system);
  put(b, c->sys_close);
}

char *llm_chat_render(const llm_chat *c, const llm_chat_msg *msgs, size_t n,
                      bool add_generation_prompt) {
  sbuf b = {0};
  const char *system = n && !strcmp(msgs[0].role, "system") ? msgs[0].content : NULL;
  size_t first_user = n, last_user = n;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(msgs[i].role, "user")) last_user = i, first_user = first_user == n ? i : first_user;
  if (system && c->system == LLM_SYS_OWN && c->kind != LLM_CHAT_RAW) put_system(&b, c, system);
  for (size_t i = system ? 1 : 0; i < n; i++) {
    const char *content = msgs[i].content;
    if (c->kind == LLM_CHAT_RAW) {
      put(&b, content);
    } else if (!strcmp(msgs[i].role, "user")) {
      bool fold = (c->system == LLM_SYS_FOLD_FIRST && i == first_user) ||
                  (c->system == LLM_SYS_FOLD_LAST && i == last_user);
      put_user(&b, c, fold ? system : NULL, content);
    } else if (!strcmp(msgs[i].role, "assistant")) {
      put(&b, c->asst_open), put_content(&b, c, content), put(&b, c->asst_close);
    }
  }
  if (add_generation_prompt) put(&b, c->gen_prompt);
  return finish(&b);
}

char *llm_chat_turn(const llm_chat *c, const char *system, const char *user, llm_chat_reply prev) {
  sbuf b = {0};
  const char *close = c->asst_close;
  size_t eot = strlen(c->end_of_turn);
  /* After the end-of-turn token the cache holds it: only the rest follows. */
  if (prev == LLM_REPLY_ENDED && !strncmp(close, c->end_of_turn, eot)) close += eot;
  if (prev != LLM_REPLY_NONE) put(&b, close);
  bool first = prev == LLM_REPLY_NONE;
  bool has_system = first && system && system[0] && c->kind != LLM_CHAT_RAW;
  if (has_system && c->system == LLM_SYS_OWN) put_system(&b, c, system);
  bool fold = has_system && (c->system == LLM_SYS_FOLD_FIRST || c->system == LLM_SYS_FOLD_LAST);
  if (c->kind == LLM_CHAT_RAW) put(&b, user);
  else put_user(&b, c, fold ? system : NULL, user);
  put(&b, c->gen_prompt);
  return finish(&b);
}
