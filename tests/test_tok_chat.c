/* test_tok_chat.c: the guest's chat formats (guest/llm/chat.c) against the
 * prompts llama.cpp's Jinja path renders for each family's template.
 *
 *   test_tok_chat MODELS_DIR FIXTURE
 * MODELS_DIR is llama.cpp's models/ folder (scripts/fetch-llama-vocab.sh);
 * FIXTURE is tests/fixtures/chat_llamacpp.txt (tests/test_tok_chat_gen.py).
 * For every fixture line: the template (a vocab file's
 * tokenizer.chat_template or a .jinja file) must be detected as the named
 * family; the conversation rendered by llm_chat_render must equal the
 * fixture byte for byte; for the families whose turns append (the system
 * prompt first, replies opened as in the history) the guest's turn-by-turn
 * text must add up to the same. The parts that need no files (unknown
 * templates, hostile sizes) run first; exit 77 when the files are missing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "check.h"
#include "gguf.h"

static char *read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc(n > 0 ? (size_t)n + 1 : 1);
  if (!b || n < 0 || fread(b, 1, (size_t)n, f) != (size_t)n) {
    free(b);
    fclose(f);
    return NULL;
  }
  b[n] = 0;
  fclose(f);
  *size = (size_t)n;
  return b;
}

/* The template_str literal of the case named `name` in llama.cpp's
 * tests/test-chat-template.cpp, unescaped in place (NULL if not found). */
static char *cpp_case_template(char *file, const char *name, size_t *len) {
  char quoted[128];
  snprintf(quoted, sizeof quoted, "\"%s\"", name);
  char *at = strstr(file, quoted);
  at = at ? strstr(at, "template_str=") : NULL;
  at = at ? strchr(at + 13, '"') : NULL;
  if (!at) return NULL;
  char *o = file;
  for (char *p = at + 1; *p && *p != '"'; p++) {
    if (*p == '\\' && p[1]) p++, *o++ = *p == 'n' ? '\n' : *p;
    else *o++ = *p;
  }
  *o = 0;
  *len = (size_t)(o - file);
  return file;
}

/* The template of a .gguf (tokenizer.chat_template), a .jinja file, or a
 * case of llama.cpp's chat template test ("file.cpp#case"). */
static char *load_template(const char *models, const char *src, size_t *len) {
  char path[4096];
  snprintf(path, sizeof path, "%s/../%s", models, src);
  char *hash = strchr(path, '#');
  if (hash) *hash = 0;
  size_t n = 0;
  char *file = read_file(path, &n);
  if (file && hash) {
    if (!cpp_case_template(file, hash + 1, len)) free(file), file = NULL;
    return file;
  }
  if (!file || !strstr(src, ".gguf")) {
    *len = n;
    return file;
  }
  gguf_ctx *g = NULL;
  char err[256], *out = NULL;
  if (gguf_parse((const uint8_t *)file, n, &g, err, sizeof err) == GGUF_OK) {
    const char *t = gguf_get_string(g, gguf_find_key(g, "tokenizer.chat_template"), len);
    if (t && (out = malloc(*len + 1))) memcpy(out, t, *len), out[*len] = 0;
  }
  gguf_free(g);
  free(file);
  return out;
}

/* Undoes the fixture's \\, \n, \t escapes in place. */
static void unescape(char *s) {
  char *o = s;
  for (; *s; s++) {
    if (*s == '\\' && s[1]) {
      s++;
      *o++ = *s == 'n' ? '\n' : *s == 't' ? '\t' : *s;
    } else {
      *o++ = *s;
    }
  }
  *o = 0;
}

static void show_diff(const char *got, const char *want) {
  size_t i = 0;
  while (got[i] && got[i] == want[i]) i++;
  printf("    first difference at byte %zu\n    got:  '%.120s'\n    want: '%.120s'\n", i, got + i,
         want + i);
}

static const llm_chat_msg conv_a[] = {{"system", "You are terse."},
                                      {"user", "Hi there"},
                                      {"assistant", "Hello! How can I help?"},
                                      {"user", "Name a color."}};

/* Turn by turn, as llm_main builds the cache: turn 1 (with the system
 * prompt), the reply and its end-of-turn token, turn 2. */
static char *by_turns(const llm_chat *c) {
  char *t1 = llm_chat_turn(c, conv_a[0].content, conv_a[1].content, LLM_REPLY_NONE);
  char *t2 = llm_chat_turn(c, conv_a[0].content, conv_a[3].content, LLM_REPLY_ENDED);
  size_t n = strlen(t1) + strlen(conv_a[2].content) + strlen(c->end_of_turn) + strlen(t2) + 1;
  char *all = malloc(n);
  snprintf(all, n, "%s%s%s%s", t1, conv_a[2].content, c->end_of_turn, t2);
  free(t1), free(t2);
  return all;
}

/* One fixture line: family, conversation, template source, expected. */
static void check_case(const char *models, char *line, int *n_cases) {
  char *fam = strtok(line, "\t"), *conv = strtok(NULL, "\t"), *src = strtok(NULL, "\t");
  char *want = strtok(NULL, "\n");
  if (!fam || !conv || !src || !want) return;
  unescape(want);
  size_t len = 0;
  char *tmpl = load_template(models, src, &len);
  CHECK(tmpl != NULL, "%s: cannot read the template", src);
  if (!tmpl) return;
  llm_chat c = llm_chat_detect(tmpl, len);
  CHECK(strcmp(c.name, fam) == 0, "%s: detected %s, want %s", src, c.name, fam);
  char sys[2048];
  llm_chat_default_system(tmpl, len, sys, sizeof sys);
  llm_chat_msg b[2] = {{"system", sys}, {"user", "What is 2+2?"}};
  bool is_a = conv[0] == 'A';
  char *got = is_a ? llm_chat_render(&c, conv_a, 4, true)
                   : llm_chat_render(&c, sys[0] ? b : b + 1, sys[0] ? 2 : 1, true);
  bool same = got && strcmp(got, want) == 0;
  CHECK(same, "%s %s (%s): rendering differs from llama.cpp's", fam, conv, src);
  if (!same && got) show_diff(got, want);
  bool appends = c.system != LLM_SYS_FOLD_LAST && strcmp(c.gen_prompt, c.asst_open) == 0;
  if (is_a && appends) {
    char *turns = by_turns(&c);
    CHECK(strcmp(turns, want) == 0, "%s (%s): turn-by-turn text differs", fam, src);
    if (strcmp(turns, want)) show_diff(turns, want);
    free(turns);
  }
  printf("  %-10s %s %-60s %s%s\n", fam, conv, src, same ? "ok" : "DIFFERS",
         is_a && appends ? " (turns too)" : "");
  (*n_cases)++;
  free(got);
  free(tmpl);
}

/* What needs no files: unknown templates fall back to raw, odd inputs. */
static void check_fallbacks(void) {
  llm_chat c = llm_chat_detect(NULL, 0);
  CHECK(c.kind == LLM_CHAT_RAW, "NULL template is raw");
  c = llm_chat_detect("{{ messages }}", 14);
  CHECK(c.kind == LLM_CHAT_RAW && strcmp(c.name, "raw") == 0, "unknown template is raw");
  char *t = llm_chat_turn(&c, "ignored", "just text", LLM_REPLY_NONE);
  CHECK(t && strcmp(t, "just text") == 0, "raw turn is the text: '%s'", t ? t : "(null)");
  free(t);
  /* A marker cut short is no marker. */
  c = llm_chat_detect("<|im_start|>", 11);
  CHECK(c.kind == LLM_CHAT_RAW, "truncated marker");
  /* A templated (non-constant) system text is not taken as a default. */
  char sys[64];
  const char *tm = "{{'<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>'}}";
  llm_chat_default_system(tm, strlen(tm), sys, sizeof sys);
  CHECK(sys[0] == 0, "templated system prompt: '%s'", sys);
  const char *qt = "'<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n'";
  llm_chat_default_system(qt, strlen(qt), sys, 8);
  CHECK(strcmp(sys, "You are") == 0, "default system truncated to cap: '%s'", sys);
  /* A long message renders whole. */
  size_t big = 1 << 20;
  char *text = malloc(big + 1);
  memset(text, 'x', big);
  text[big] = 0;
  c = llm_chat_detect("<|im_start|>", 12);
  t = llm_chat_turn(&c, "", text, LLM_REPLY_CUT);
  CHECK(t && strlen(t) == big + strlen("<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n"),
        "1 MiB message");
  free(t), free(text);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: test_tok_chat MODELS_DIR FIXTURE\n");
    return 2;
  }
  check_fallbacks();
  size_t n = 0;
  char *fix = read_file(argv[2], &n), path[4096];
  snprintf(path, sizeof path, "%s/ggml-vocab-qwen2.gguf", argv[1]);
  FILE *probe = fopen(path, "rb");
  if (!fix || !probe) {
    printf("SKIP: %s or the llama.cpp files in %s are missing\n", argv[2], argv[1]);
    int rc = CHECK_DONE();
    return rc ? rc : 77;
  }
  fclose(probe);
  int n_cases = 0;
  for (char *line = fix, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = 0;
    if (line[0] != '#' && line[0]) check_case(argv[1], line, &n_cases);
  }
  free(fix);
  CHECK(n_cases >= 17, "only %d fixture cases", n_cases);
  printf("%d chat cases checked\n", n_cases);
  return CHECK_DONE();
}
