/* chat.c: ChatML and Llama 3 message formatting. */
#include "chat.h"

#include <stdio.h>
#include <string.h>

static const char *find(const char *hay, size_t len, const char *needle) {
  size_t n = strlen(needle);
  for (size_t i = 0; n <= len && i <= len - n; i++)
    if (!memcmp(hay + i, needle, n)) return hay + i;
  return NULL;
}

llm_chat_kind llm_chat_detect(const char *tmpl, size_t len) {
  if (!tmpl) return LLM_CHAT_RAW;
  if (find(tmpl, len, "<|im_start|>")) return LLM_CHAT_CHATML;
  if (find(tmpl, len, "<|start_header_id|>")) return LLM_CHAT_LLAMA3;
  return LLM_CHAT_RAW;
}

/* Finds "<|im_start|>system" followed by a newline (real, or the two
 * characters \n inside a Jinja string literal) and copies the text up to
 * "<|im_end|>", turning escaped newlines back into real ones. */
void llm_chat_default_system(const char *tmpl, size_t len, char *out, size_t cap) {
  out[0] = '\0';
  const char *at = tmpl ? find(tmpl, len, "<|im_start|>system") : NULL;
  if (!at) return;
  const char *end_of_tmpl = tmpl + len;
  at += strlen("<|im_start|>system");
  if (at < end_of_tmpl && *at == '\n') at++;
  else if (at + 1 < end_of_tmpl && at[0] == '\\' && at[1] == 'n') at += 2;
  else return;
  const char *stop = find(at, (size_t)(end_of_tmpl - at), "<|im_end|>");
  if (!stop || memchr(at, '{', (size_t)(stop - at))) return; /* templated, not a constant */
  size_t o = 0;
  for (const char *p = at; p < stop && o + 1 < cap; p++) {
    if (p + 1 < stop && p[0] == '\\' && p[1] == 'n') out[o++] = '\n', p++;
    else out[o++] = *p;
  }
  out[o] = '\0';
}

int llm_chat_message(llm_chat_kind kind, const char *role, const char *content, char *out, size_t cap) {
  int n;
  switch (kind) {
    case LLM_CHAT_CHATML:
      n = snprintf(out, cap, "<|im_start|>%s\n%s<|im_end|>", role, content);
      break;
    case LLM_CHAT_LLAMA3:
      n = snprintf(out, cap, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", role, content);
      break;
    default:
      n = snprintf(out, cap, "%s", content);
  }
  return n < 0 || (size_t)n >= cap ? -1 : n;
}

const char *llm_chat_assistant_prefix(llm_chat_kind kind) {
  switch (kind) {
    case LLM_CHAT_CHATML: return "<|im_start|>assistant\n";
    case LLM_CHAT_LLAMA3: return "<|start_header_id|>assistant<|end_header_id|>\n\n";
    default: return "";
  }
}

const char *llm_chat_end_of_turn(llm_chat_kind kind) {
  switch (kind) {
    case LLM_CHAT_CHATML: return "<|im_end|>";
    case LLM_CHAT_LLAMA3: return "<|eot_id|>";
    default: return NULL;
  }
}

const char *llm_chat_separator(llm_chat_kind kind) {
  return kind == LLM_CHAT_CHATML ? "\n" : "";
}
