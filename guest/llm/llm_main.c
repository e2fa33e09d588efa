/*
 * llm_main.c: the LLM guest, a reactor the host drives turn by turn.
 *
 * Exports (all state lives in linear memory, so between calls the actor is
 * quiescent and its memory is its whole state):
 *   llm_init() -> 0 | -1          options from argv, map + parse the GGUF
 *                                 granted as "model", tokenizer, KV cache
 *   llm_input(len) -> addr        a buffer for the host to write input into
 *   llm_prompt(len, mode) -> n    mode 0: a chat turn (templated), 1: raw
 *                                 text, 2: raw token ids (int32); prefill;
 *                                 returns the tokens added, or -1
 *   llm_next() -> addr            sample one token and feed it back; the
 *                                 address of its sp_llm_step record (token
 *                                 or < 0 on error, whether it ended the turn,
 *                                 its text): one call a token
 *                                 (include/samepage_llm.h)
 *   llm_step() -> id | -2         the same, returning the token; -2 on
 *                                 error; llm_turn_done() tells whether that
 *                                 token ended the turn (end of generation)
 *   llm_tokenize(len, special)    tokens of the input, at llm_tokens_ptr
 *   llm_piece_ptr/len             the text of the last step (whole UTF-8)
 *   llm_error_ptr                 the message of the last failure
 *   llm_n_past, llm_n_vocab, llm_logits_ptr, llm_argmax_ptr (tests)
 * For a server (src/server/), whose requests each carry a whole
 * conversation and their own sampling settings:
 *   llm_render(len, mode) -> n    the tokens of the input, BOS first, at
 *                                 llm_tokens_ptr: mode 0 a conversation
 *                                 ("role\0content\0" pairs) rendered with
 *                                 the generation prompt, 1 raw text
 *   llm_sync(len) -> n            make the KV cache hold exactly the input
 *                                 token ids (int32): keep the common prefix
 *                                 with what it holds, prefill the rest (at
 *                                 least one token, for fresh logits);
 *                                 returns the tokens prefilled, or -1
 *   llm_sampling(len) -> 0 | -1   sampling settings for the next steps, as
 *                                 "--option\0value\0" pairs (the sampling
 *                                 options of argv); unnamed ones: defaults
 *   llm_logprobs(on, top) -> 0    from the next step on, record the chosen
 *                                 token's log-probability and its top
 *                                 (0..20) alternatives: the model's own
 *                                 log-softmax, before penalties and
 *                                 temperature; llm_logprobs_ptr: the last
 *                                 step's record (words: entries, words
 *                                 used, then per entry id, logprob (f32),
 *                                 byte length, bytes padded to 4)
 *   llm_rewind(n) -> n            forget cached positions from n on
 *   llm_history_ptr, llm_n_ctx    the cached token ids; the context length
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wasi/api.h>

#include "chat.h"
#include "samepage_llm.h"
#include "gguf.h"
#include "model.h"
#include "model_load.h"
#include "sampler.h"
#include "tokenizer.h"

#define EXPORT(name) __attribute__((export_name(#name)))
#define STEP_ERROR (-2)

typedef struct llm_options {
  uint32_t n_ctx, n_batch;
  bool logits_all; /* argmax of every position kept (tests) */
  bool progress;   /* print loading progress on stderr */
  bool sample_full; /* the sampler reads the whole logits row (comparisons, tests) */
  bool warmup;      /* one prompt-sized forward and one step at load (--warmup) */
  char system[2048];
  llm_sampler_params sampling;
} llm_options;

static struct llm_guest {
  llm_options opt;
  gguf_ctx *gguf;
  tok_vocab *vocab;
  llm_model model;
  llm_sampler sampler;
  tok_decoder decoder;
  llm_chat chat;            /* the chat family of tokenizer.chat_template */
  uint32_t n_turns;         /* chat turns prompted so far */
  uint32_t n_past;          /* tokens in the KV cache */
  float *logits;            /* after the last forward, or NULL */
  char forward_error[1024]; /* why the last forward failed ("" when it did not): the
                               reason a step without logits gives, every time */
  const int32_t *best;      /* the argmax of that logits row (from the forward list) */
  bool in_reply;            /* the assistant's turn is open */
  bool candidates_ready;    /* the last forward gathered the sampler's candidates
                               for the sampler and window it has now */
  int32_t *tokens;          /* llm_tokenize output */
  char *input;              /* host-written input */
  uint32_t input_cap;
  int32_t *argmax;          /* [n_ctx] argmax per position (logits_all) */
  int32_t *history;         /* [n_ctx] the token at each cached position */
  sp_llm_step step;          /* the last step: token, end of turn, text */
  char error[1024];
  uint32_t lp_top;          /* llm_logprobs: alternatives per step (0..20) */
  bool lp_on;               /* record each step's log-probabilities */
  uint32_t lp_rec[1024];    /* the last step's record (llm_logprobs_ptr) */
} G;

static int set_error(const char *msg) {
  snprintf(G.error, sizeof G.error, "%s", msg);
  return -1;
}

/* ---- options (argv, forwarded by the host) ---- */

static int parse_option(llm_options *o, const char *key, const char *val) {
  char *end = NULL;
  if (!strcmp(key, "--ctx")) o->n_ctx = (uint32_t)strtoul(val, &end, 10);
  else if (!strcmp(key, "--batch")) o->n_batch = (uint32_t)strtoul(val, &end, 10);
  else if (!strcmp(key, "--temp")) o->sampling.temperature = strtof(val, &end);
  else if (!strcmp(key, "--top-k")) o->sampling.top_k = (int32_t)strtol(val, &end, 10);
  else if (!strcmp(key, "--top-p")) o->sampling.top_p = strtof(val, &end);
  else if (!strcmp(key, "--min-p")) o->sampling.min_p = strtof(val, &end);
  else if (!strcmp(key, "--repeat-penalty")) o->sampling.repeat_penalty = strtof(val, &end);
  else if (!strcmp(key, "--repeat-last-n")) o->sampling.repeat_last_n = (int32_t)strtol(val, &end, 10);
  else if (!strcmp(key, "--seed")) o->sampling.seed = strtoull(val, &end, 10);
  else if (!strcmp(key, "--presence-penalty")) o->sampling.presence_penalty = strtof(val, &end);
  else if (!strcmp(key, "--frequency-penalty")) o->sampling.frequency_penalty = strtof(val, &end);
  else if (!strcmp(key, "--system")) { snprintf(o->system, sizeof o->system, "%s", val); return 0; }
  else {
    snprintf(G.error, sizeof G.error, "unknown option %s", key);
    return -1;
  }
  if (!end || *end || end == val) {
    snprintf(G.error, sizeof G.error, "option %s: \"%s\" is not a number", key, val);
    return -1;
  }
  return 0;
}

static int read_options(llm_options *o) {
  memset(o, 0, sizeof *o);
  o->n_ctx = 4096, o->n_batch = 128;
  o->sampling = llm_sampler_defaults();
  __wasi_size_t argc = 0, buf_size = 0;
  if (__wasi_args_sizes_get(&argc, &buf_size) != 0) return set_error("cannot read argv");
  char **argv = calloc(argc + 1, sizeof *argv);
  char *buf = malloc(buf_size + 1);
  if (!argv || !buf || __wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0) return set_error("cannot read argv");
  int rc = 0;
  for (__wasi_size_t i = 1; i < argc && !rc; i++) {
    if (!strcmp(argv[i], "--logits-all")) o->logits_all = true;
    else if (!strcmp(argv[i], "--progress")) o->progress = true;
    else if (!strcmp(argv[i], "--sample-full")) o->sample_full = true;
    else if (!strcmp(argv[i], "--warmup")) o->warmup = true;
    else if (i + 1 < argc) rc = parse_option(o, argv[i], argv[i + 1]), i++;
    else rc = set_error("an option is missing its value");
  }
  free(argv);
  free(buf);
  if (!rc && (o->n_ctx < 16 || o->n_ctx > 1u << 20 || o->n_batch < 1 || o->n_batch > 4096))
    rc = set_error("--ctx must be 16..1048576 and --batch 1..4096");
  return rc;
}

/* ---- loading ---- */

/* Touches every page of the mapped file, so load time is paid (and shown)
 * up front instead of in the first token. */
static void prefault(const uint8_t *data, uint64_t size, bool progress) {
  volatile uint8_t sink = 0;
  uint64_t step = size / 20 + 1, next = step;
  for (uint64_t i = 0; i < size; i += 4096) {
    sink ^= data[i];
    if (progress && i >= next) {
      fprintf(stderr, "\rloading model: %3d%%", (int)(i * 100 / size));
      next += step;
    }
  }
  if (progress) fprintf(stderr, "\rloading model: 100%%\n");
  (void)sink;
}

static int load_model(void) {
  int32_t handle = sp_blob_open("model");
  if (handle < 0) return set_error("no model file was granted to this guest");
  uint64_t size = 0;
  int32_t status = 0;
  const uint8_t *file = sp_blob_load(handle, &size, &status);
  if (!file) {
    snprintf(G.error, sizeof G.error, "cannot load the model into memory: %s", sp_last_error());
    return -1;
  }
  prefault(file, size, G.opt.progress);
  /* The file's bytes never change: declare them immutable, so a discrete
   * GPU may keep the weights resident (counted by the host). */
  if (sp_freeze(file, size) != SP_OK) {
    snprintf(G.error, sizeof G.error, "cannot freeze the model's bytes: %s", sp_last_error());
    return -1;
  }
  if (gguf_parse(file, size, &G.gguf, G.error, sizeof G.error) != GGUF_OK) return -1;
  if (llm_model_load(&G.model, G.gguf, G.error, sizeof G.error)) return -1;
  if (tok_vocab_new(G.gguf, &G.vocab, G.error, sizeof G.error) != TOK_OK) return -1;
  if (tok_n_vocab(G.vocab) != G.model.hp.n_vocab) return set_error("the vocabulary size differs from token_embd");
  return 0;
}

/* Picks the chat family; a file without a template we know chats in raw
 * text, and says so once rather than formatting turns silently wrong. */
static void read_chat_template(void) {
  int64_t key = gguf_find_key(G.gguf, "tokenizer.chat_template");
  size_t len = 0;
  const char *tmpl = key >= 0 ? gguf_get_string(G.gguf, key, &len) : NULL;
  G.chat = llm_chat_detect(tmpl, len);
  if (G.chat.kind == LLM_CHAT_RAW)
    fprintf(stderr, "note: %s; chat turns go to the model as raw text\n",
            tmpl ? "the model's chat template is not one samepage knows (ChatML, Llama 3, Gemma, "
                   "Phi-3, Mistral)"
                 : "the model has no chat template");
  if (!G.opt.system[0]) llm_chat_default_system(tmpl, len, G.opt.system, sizeof G.opt.system);
}

/* Names the KV cache and the position count for the host's tools
 * (`samepage kv export`): per layer k and v as f16 [D, Hkv, n_ctx]. */
static int annotate_kv(void) {
  const llm_hparams *hp = &G.model.hp;
  size_t layer = (size_t)G.opt.n_ctx * hp->n_head_kv * hp->head_dim;
  sp_tensor n_past = sp_tensor_1d(&G.n_past, SP_DTYPE_I32, 1);
  if (sp_annotate("kv.n_past", &n_past) != SP_OK) return set_error(sp_last_error());
  for (uint32_t il = 0; il < hp->n_layer; il++) {
    char name[64];
    sp_tensor k = sp_tensor_4d(G.model.st.k_cache + il * layer, SP_DTYPE_F16, hp->head_dim, hp->n_head_kv, G.opt.n_ctx, 1);
    sp_tensor v = sp_tensor_4d(G.model.st.v_cache + il * layer, SP_DTYPE_F16, hp->head_dim, hp->n_head_kv, G.opt.n_ctx, 1);
    snprintf(name, sizeof name, "blk.%u.k_cache", il);
    if (sp_annotate(name, &k) != SP_OK) return set_error(sp_last_error());
    snprintf(name, sizeof name, "blk.%u.v_cache", il);
    if (sp_annotate(name, &v) != SP_OK) return set_error(sp_last_error());
  }
  return 0;
}

/* Has each forward list gather what the sampler needs (sampler.h, "the
 * candidates path"), or nothing when the path does not apply. Until the
 * next forward, the sampler reads the whole logits row. */
static int gather_candidates(void) {
  int32_t m = G.opt.sample_full ? 0 : llm_sampler_candidates_wanted(&G.sampler, SP_TOPK_MAX);
  G.candidates_ready = false;
  return llm_state_candidates(&G.model, (uint32_t)m, llm_sampler_recent_rows(&G.sampler),
                              (uint32_t)llm_sampler_recent_count(&G.sampler), G.error, sizeof G.error);
}

/* After a forward pass: whether it gathered the candidates, or why it
 * failed (then there are no logits until the next prompt). */
static void forward_done(void) {
  G.candidates_ready = G.logits && G.model.st.top_n > 0;
  snprintf(G.forward_error, sizeof G.forward_error, "%s", G.logits ? "" : G.error);
}

/* --warmup: a forward of a whole batch of token 0 and one decode step,
 * then the cache is empty again. A GPU backend loads its kernels (and its
 * GEMM library's) on their first launch, which otherwise the user's first
 * prompt pays (issue 17: 25 ms cold against 7.6 ms warm for 512 tokens on
 * an H100); llama.cpp's tools warm up the same way. The rows written are
 * past n_past, so nothing reads them before a prompt overwrites them. */
static int warm_up(void) {
  uint32_t n = G.opt.n_batch < G.opt.n_ctx - 1 ? G.opt.n_batch : G.opt.n_ctx - 1;
  int32_t *zeros = calloc(n, sizeof *zeros);
  if (!zeros) return set_error("out of memory");
  bool ok = llm_forward(&G.model, zeros, n, 0, G.error, sizeof G.error) &&
            llm_forward(&G.model, zeros, 1, n, G.error, sizeof G.error);
  free(zeros);
  G.logits = NULL, G.best = NULL, G.candidates_ready = false;
  return ok ? 0 : -1;
}

EXPORT(llm_init) int32_t llm_init(void) {
  if (read_options(&G.opt) || load_model()) return -1;
  read_chat_template();
  if (G.opt.n_ctx > G.model.hp.n_ctx_train && G.model.hp.n_ctx_train >= 16) G.opt.n_ctx = G.model.hp.n_ctx_train;
  if (llm_state_init(&G.model, G.opt.n_batch, G.opt.n_ctx, G.opt.logits_all, G.error, sizeof G.error)) return -1;
  if (llm_sampler_init(&G.sampler, &G.opt.sampling, (int32_t)G.model.hp.n_vocab, G.error, sizeof G.error)) return -1;
  if (gather_candidates()) return -1;
  if (tok_decoder_init(&G.decoder, G.vocab, false) != TOK_OK) return set_error("out of memory");
  G.argmax = calloc(G.opt.n_ctx, sizeof *G.argmax);
  G.history = calloc(G.opt.n_ctx, sizeof *G.history);
  if (!G.argmax || !G.history) return set_error("out of memory");
  if (annotate_kv()) return -1;
  return G.opt.warmup ? warm_up() : 0;
}

/* ---- turns ---- */

EXPORT(llm_input) uint32_t llm_input(uint32_t len) {
  if (len + 1 > G.input_cap) {
    char *grown = realloc(G.input, (size_t)len + 1);
    if (!grown) {
      set_error("out of memory for the input");
      return 0;
    }
    G.input = grown, G.input_cap = len + 1;
  }
  return sp_addr(G.input);
}

/* Runs tokens through the model in batches, appending to the cache. */
static int prefill(const int32_t *tokens, uint32_t n) {
  if (n > G.opt.n_ctx - G.n_past) {
    snprintf(G.error, sizeof G.error, "the context is full (%u of %u tokens used, %u more needed)",
             G.n_past, G.opt.n_ctx, n);
    return -1;
  }
  for (uint32_t done = 0; done < n;) {
    uint32_t chunk = n - done < G.opt.n_batch ? n - done : G.opt.n_batch;
    /* the window first: the list gathers the logits of its tokens */
    for (uint32_t i = 0; i < chunk; i++) llm_sampler_accept(&G.sampler, tokens[done + i]);
    G.logits = llm_forward(&G.model, tokens + done, chunk, G.n_past, G.error, sizeof G.error);
    forward_done();
    if (!G.logits) return -1;
    uint32_t V = G.model.hp.n_vocab;
    for (uint32_t i = 0; G.opt.logits_all && i < chunk; i++)
      G.argmax[G.n_past + i] = llm_argmax(G.logits + (size_t)i * V, (int32_t)V);
    if (G.opt.logits_all) G.logits += (size_t)(chunk - 1) * V;
    G.best = G.model.st.best + (G.opt.logits_all ? chunk - 1 : 0);
    memcpy(G.history + G.n_past, tokens + done, chunk * sizeof *tokens);
    G.n_past += chunk, done += chunk;
  }
  return 0;
}

/* The text of a chat turn: the rest of the previous reply's closing (all
 * of it when the reply was cut short), the system prompt on the first turn
 * of an empty cache, the user message and the opening of the reply. */
static char *chat_text(const char *user) {
  llm_chat_reply prev = G.n_turns == 0 ? LLM_REPLY_NONE : G.in_reply ? LLM_REPLY_CUT : LLM_REPLY_ENDED;
  const char *system = G.n_past == 0 ? G.opt.system : NULL;
  return llm_chat_turn(&G.chat, system, user, prev);
}

static int tokenize(const char *text, size_t len, int32_t **ids, uint32_t *n) {
  size_t cap = len + 2, count = 0;
  *ids = malloc(cap * sizeof **ids);
  if (!*ids) return set_error("out of memory");
  uint32_t at = 0;
  if (G.n_past == 0 && tok_add_bos(G.vocab) && tok_bos(G.vocab) >= 0) (*ids)[at++] = tok_bos(G.vocab);
  if (tok_encode(G.vocab, text, len, true, *ids + at, cap - at, &count) != TOK_OK) {
    free(*ids);
    return set_error("tokenizer: cannot encode the input");
  }
  *n = at + (uint32_t)count;
  return 0;
}

EXPORT(llm_prompt) int32_t llm_prompt(uint32_t len, uint32_t mode) {
  if (!G.input || len >= G.input_cap) return set_error("llm_prompt: call llm_input first");
  G.input[len] = '\0';
  int32_t *ids = NULL;
  uint32_t n = 0;
  if (mode == 2) {
    n = len / 4;
    ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return set_error("out of memory");
    memcpy(ids, G.input, (size_t)n * 4);
    for (uint32_t i = 0; i < n; i++)
      if (ids[i] < 0 || (uint32_t)ids[i] >= G.model.hp.n_vocab) {
        free(ids);
        return set_error("token id out of range");
      }
  } else {
    char *text = mode == 0 && G.chat.kind != LLM_CHAT_RAW ? chat_text(G.input) : strdup(G.input);
    if (!text) return set_error("out of memory");
    int rc = tokenize(text, strlen(text), &ids, &n);
    free(text);
    if (rc) return -1;
  }
  int rc = n ? prefill(ids, n) : 0;
  free(ids);
  if (rc) return -1;
  G.in_reply = mode == 0 && G.chat.kind != LLM_CHAT_RAW;
  G.n_turns += G.in_reply;
  return (int32_t)n;
}

/* Whether the gathered candidates agree with the forward list's own
 * argmax: every index a token, the best one the argmax (they pick alike
 * unless the row holds NaN). A backend that got them wrong costs a read of
 * the whole row, never a wrong token. */
static bool candidates_consistent(const llm_state *st) {
  for (uint32_t i = 0; i < st->top_n; i++)
    if (st->top_ids[i] < 0 || (uint32_t)st->top_ids[i] >= G.model.hp.n_vocab) return false;
  return G.best && st->top_ids[0] == *G.best;
}

/* The next token: the forward list's argmax when the sampler would pick it
 * anyway (greedy), else the sampler over the candidates the list gathered,
 * else over the logits, read back first. -1 on failure (G.error says why). */
static int32_t next_token(void) {
  const llm_state *st = &G.model.st;
  if (G.best && llm_sampler_keeps_argmax(&G.sampler, *G.best)) return *G.best;
  if (G.candidates_ready && candidates_consistent(st))
    return llm_sampler_sample_candidates(&G.sampler, st->top_ids, st->top_values, (int32_t)st->top_n,
                                         st->recent_values);
  if (llm_logits_read(&G.model, G.logits, 1, G.error, sizeof G.error)) return -1;
  return llm_sampler_sample(&G.sampler, G.logits);
}

/* ---- log-probabilities (a server's logprobs / top_logprobs) ----
 * They are the model's: log-softmax of the raw logits, before penalties,
 * temperature and truncation, as OpenAI reports them. */

/* log(sum(exp(logits))) of the current row; reads the logits back first. */
static int log_sum_exp(float *out) {
  uint32_t V = G.model.hp.n_vocab;
  if (llm_logits_read(&G.model, G.logits, 1, G.error, sizeof G.error)) return -1;
  float max = G.logits[0];
  for (uint32_t i = 1; i < V; i++) max = G.logits[i] > max ? G.logits[i] : max;
  double sum = 0;
  for (uint32_t i = 0; i < V; i++) sum += exp((double)(G.logits[i] - max));
  *out = max + (float)log(sum);
  return 0;
}

/* Appends one entry {id, logprob, len, bytes padded to 4} at word *at of
 * the record; the piece is cut to 128 bytes. */
static void record_entry(uint32_t *at, int32_t id, float logprob) {
  const char *bytes = NULL;
  size_t len = 0;
  if (tok_piece(G.vocab, id, false, &bytes, &len) != TOK_OK) len = 0;
  if (len > 128) len = 128;
  uint32_t *w = G.lp_rec + *at;
  memcpy(&w[0], &id, 4), memcpy(&w[1], &logprob, 4), w[2] = (uint32_t)len;
  memset(&w[3], 0, (len + 3) / 4 * 4);
  if (len) memcpy(&w[3], bytes, len);
  *at += 3 + (uint32_t)(len + 3) / 4;
}

/* The record of a step: [0] entries, [1] words used, then the chosen
 * token's entry and its lp_top most likely alternatives, best first. */
static void record_logprobs(int32_t token, float lse) {
  int32_t top[20];
  uint32_t n = 0, V = G.model.hp.n_vocab;
  for (uint32_t i = 0; i < V && G.lp_top; i++) {
    if (n == G.lp_top && G.logits[i] <= G.logits[top[n - 1]]) continue;
    uint32_t j = n < G.lp_top ? n++ : n - 1;
    for (; j > 0 && G.logits[top[j - 1]] < G.logits[i]; j--) top[j] = top[j - 1];
    top[j] = (int32_t)i;
  }
  uint32_t at = 2;
  record_entry(&at, token, G.logits[token] - lse);
  for (uint32_t i = 0; i < n; i++) record_entry(&at, top[i], G.logits[top[i]] - lse);
  G.lp_rec[0] = 1 + n, G.lp_rec[1] = at;
}

/* on: record log-probabilities at each step, with top (0..20) alternatives. */
EXPORT(llm_logprobs) int32_t llm_logprobs(uint32_t on, uint32_t top) {
  if (top > 20) return set_error("llm_logprobs: at most 20 alternatives");
  G.lp_on = on != 0, G.lp_top = top;
  G.lp_rec[0] = G.lp_rec[1] = 0;
  return 0;
}

EXPORT(llm_logprobs_ptr) uint32_t llm_logprobs_ptr(void) { return sp_addr(G.lp_rec); }

EXPORT(llm_step) int32_t llm_step(void) {
  G.step.piece_len = 0;
  G.step.turn_done = 0;
  if (!G.logits) {
    set_error(G.forward_error[0] ? G.forward_error : "llm_step: no prompt yet");
    return STEP_ERROR;
  }
  if (G.n_past >= G.opt.n_ctx) {
    set_error("the context is full");
    return STEP_ERROR;
  }
  float lse = 0;
  if (G.lp_on && log_sum_exp(&lse)) return STEP_ERROR;
  int32_t token = next_token();
  if (token < 0) return STEP_ERROR;
  if (G.lp_on) record_logprobs(token, lse);
  llm_sampler_accept(&G.sampler, token);
  bool end = tok_is_eog(G.vocab, token);
  const char *bytes = NULL;
  size_t n = 0;
  if (!end && tok_decoder_push(&G.decoder, token, &bytes, &n) == TOK_OK && n) {
    if (n > sizeof G.step.piece) n = sizeof G.step.piece;
    memcpy(G.step.piece, bytes, n);
    G.step.piece_len = (uint32_t)n;
  }
  /* Feed the token back, the end-of-turn one too: the cache then holds the
   * whole conversation and the next turn continues after it. */
  G.logits = llm_forward(&G.model, &token, 1, G.n_past, G.error, sizeof G.error);
  forward_done();
  if (!G.logits) return STEP_ERROR;
  G.best = G.model.st.best;
  if (G.opt.logits_all) G.argmax[G.n_past] = llm_argmax(G.logits, (int32_t)G.model.hp.n_vocab);
  G.history[G.n_past] = token;
  G.n_past++;
  if (end) G.in_reply = false;
  G.step.turn_done = end;
  return token;
}

EXPORT(llm_turn_done) int32_t llm_turn_done(void) { return (int32_t)G.step.turn_done; }

EXPORT(llm_next) uint32_t llm_next(void) {
  G.step.token = llm_step();
  return sp_addr(&G.step);
}

EXPORT(llm_tokenize) int32_t llm_tokenize(uint32_t len, uint32_t parse_special) {
  if (!G.input || len >= G.input_cap) return set_error("llm_tokenize: call llm_input first");
  size_t n = 0;
  free(G.tokens);
  G.tokens = malloc(((size_t)len + 1) * sizeof *G.tokens);
  if (!G.tokens) return set_error("out of memory");
  if (tok_encode(G.vocab, G.input, len, parse_special != 0, G.tokens, (size_t)len + 1, &n) != TOK_OK)
    return set_error("tokenizer: cannot encode the input");
  return (int32_t)n;
}

EXPORT(llm_tokens_ptr) uint32_t llm_tokens_ptr(void) { return sp_addr(G.tokens); }

EXPORT(llm_piece_ptr) uint32_t llm_piece_ptr(void) { return sp_addr(G.step.piece); }
EXPORT(llm_piece_len) uint32_t llm_piece_len(void) { return G.step.piece_len; }
EXPORT(llm_error_ptr) uint32_t llm_error_ptr(void) { return sp_addr(G.error); }
EXPORT(llm_n_past) uint32_t llm_n_past(void) { return G.n_past; }
EXPORT(llm_n_vocab) uint32_t llm_n_vocab(void) { return G.model.hp.n_vocab; }
EXPORT(llm_logits_ptr) uint32_t llm_logits_ptr(void) {
  if (G.logits && llm_logits_read(&G.model, G.logits, 1, G.error, sizeof G.error)) return 0;
  return sp_addr(G.logits);
}
EXPORT(llm_argmax_ptr) uint32_t llm_argmax_ptr(void) { return sp_addr(G.argmax); }
EXPORT(llm_history_ptr) uint32_t llm_history_ptr(void) { return sp_addr(G.history); }
EXPORT(llm_n_ctx) uint32_t llm_n_ctx(void) { return G.opt.n_ctx; }

/* Forgets every cached position from n on (an interrupted turn rolled
 * back); the next llm_sync prefills from there. n, or -1 past n_past. */
EXPORT(llm_rewind) int32_t llm_rewind(uint32_t n) {
  if (n > G.n_past) return set_error("llm_rewind: past the cached tokens");
  G.n_past = n;
  G.logits = NULL, G.best = NULL, G.candidates_ready = false, G.forward_error[0] = '\0';
  G.in_reply = false, G.step.turn_done = 0;
  const char *held = NULL;
  size_t n_held = 0;
  tok_decoder_flush(&G.decoder, &held, &n_held); /* a character the turn left unfinished */
  return (int32_t)n;
}

/* ---- a server's turns (whole conversations, per-request sampling) ---- */

/* Refills the sampler's window from the cached tokens: after a rewind or a
 * new sampler, the penalties see exactly what the cache holds. */
static void refill_window(void) {
  llm_sampler_forget(&G.sampler);
  uint32_t last_n = (uint32_t)G.sampler.params.repeat_last_n;
  uint32_t from = G.n_past > last_n ? G.n_past - last_n : 0;
  for (uint32_t i = from; i < G.n_past; i++) llm_sampler_accept(&G.sampler, G.history[i]);
}

/* Splits "role\0content\0..." (len bytes) into messages; the count, or -1. */
static int split_messages(char *in, uint32_t len, llm_chat_msg **out) {
  size_t n = 0, cap = 8;
  llm_chat_msg *m = malloc(cap * sizeof *m);
  for (uint32_t at = 0; m && at < len;) {
    const char *role = in + at;
    at += (uint32_t)strlen(role) + 1;
    if (at >= len) { free(m); return set_error("llm_render: a role without its content"); }
    const char *content = in + at;
    at += (uint32_t)strlen(content) + 1;
    if (n == cap) {
      llm_chat_msg *grown = realloc(m, (cap *= 2) * sizeof *m);
      if (!grown) { free(m); return set_error("out of memory"); }
      m = grown;
    }
    m[n++] = (llm_chat_msg){role, content};
  }
  if (!m) return set_error("out of memory");
  *out = m;
  return (int)n;
}

/* The conversation's text as the template renders it; the model's default
 * system prompt goes first when the messages bring none (as a chat turn). */
static char *render_messages(uint32_t len) {
  llm_chat_msg *m = NULL;
  int n = split_messages(G.input, len, &m);
  if (n < 0) return NULL;
  llm_chat_msg *all = malloc(((size_t)n + 1) * sizeof *all);
  char *text = NULL;
  if (all) {
    bool own = n > 0 && !strcmp(m[0].role, "system");
    size_t k = 0;
    if (!own && G.opt.system[0]) all[k++] = (llm_chat_msg){"system", G.opt.system};
    memcpy(all + k, m, (size_t)n * sizeof *m);
    text = llm_chat_render(&G.chat, all, k + (size_t)n, true);
  }
  if (!text) set_error("out of memory");
  free(all);
  free(m);
  return text;
}

EXPORT(llm_render) int32_t llm_render(uint32_t len, uint32_t mode) {
  if (!G.input || len >= G.input_cap) return set_error("llm_render: call llm_input first");
  G.input[len] = '\0';
  char *text = mode == 0 ? render_messages(len) : strdup(G.input);
  if (!text) return mode == 0 ? -1 : set_error("out of memory");
  size_t tlen = strlen(text), count = 0, at = 0;
  free(G.tokens);
  G.tokens = malloc((tlen + 2) * sizeof *G.tokens);
  if (!G.tokens) { free(text); return set_error("out of memory"); }
  if (tok_add_bos(G.vocab) && tok_bos(G.vocab) >= 0) G.tokens[at++] = tok_bos(G.vocab);
  int rc = tok_encode(G.vocab, text, tlen, true, G.tokens + at, tlen + 2 - at, &count);
  free(text);
  if (rc != TOK_OK) return set_error("tokenizer: cannot encode the input");
  return (int32_t)(at + count);
}

EXPORT(llm_sync) int32_t llm_sync(uint32_t len) {
  if (!G.input || len >= G.input_cap) return set_error("llm_sync: call llm_input first");
  uint32_t n = len / 4, keep = 0;
  int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) return set_error("out of memory");
  memcpy(ids, G.input, (size_t)n * 4);
  for (uint32_t i = 0; i < n; i++)
    if (ids[i] < 0 || (uint32_t)ids[i] >= G.model.hp.n_vocab) { free(ids); return set_error("token id out of range"); }
  if (n == 0 || n > G.opt.n_ctx) { free(ids); return set_error("llm_sync: 1..n_ctx tokens"); }
  while (keep < n && keep < G.n_past && G.history[keep] == ids[keep]) keep++;
  if (keep == n) keep--; /* prefill the last one again: its logits come next */
  /* Positions past `keep` are overwritten by the prefill; attention only
   * reads positions below the current one. */
  G.n_past = keep;
  refill_window();
  int rc = prefill(ids + keep, n - keep);
  free(ids);
  G.in_reply = false, G.step.turn_done = 0;
  return rc ? -1 : (int32_t)(n - keep);
}

static const char *const sampling_keys[] = {"--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty",
                                            "--repeat-last-n", "--seed", "--presence-penalty",
                                            "--frequency-penalty", NULL};

static bool is_sampling_key(const char *key) {
  for (int i = 0; sampling_keys[i]; i++)
    if (!strcmp(key, sampling_keys[i])) return true;
  return false;
}

EXPORT(llm_sampling) int32_t llm_sampling(uint32_t len) {
  if (!G.input || len >= G.input_cap) return set_error("llm_sampling: call llm_input first");
  G.input[len] = '\0';
  llm_options o = G.opt;
  o.sampling = llm_sampler_defaults();
  for (uint32_t at = 0; at < len;) {
    const char *key = G.input + at;
    at += (uint32_t)strlen(key) + 1;
    if (at >= len) return set_error("llm_sampling: an option without its value");
    const char *val = G.input + at;
    at += (uint32_t)strlen(val) + 1;
    if (!is_sampling_key(key)) { snprintf(G.error, sizeof G.error, "llm_sampling: %s is not a sampling option", key); return -1; }
    if (parse_option(&o, key, val)) return -1;
  }
  llm_sampler fresh;
  if (llm_sampler_init(&fresh, &o.sampling, (int32_t)G.model.hp.n_vocab, G.error, sizeof G.error)) return -1;
  llm_sampler_free(&G.sampler);
  G.sampler = fresh;
  refill_window();
  return gather_candidates();
}
