/*
 * engine.c: calls into the LLM guest (engine.h). Every value the guest
 * returns that decides an address is range-checked against its memory
 * before the host touches it.
 */
#include "server/engine.h"

#include "cli/cli.h"
#include "core/error.h"
#include "samepage_llm.h"

#include <stdlib.h>
#include <string.h>

static sp_error_t *call(sp_actor_t *a, const char *fn, int64_t x, int64_t y, int nargs, int64_t *out) {
  int64_t args[2] = {x, y};
  return sp_actor_call(a, fn, args, (size_t)nargs, out);
}

/* The guest's own message after a failed call, into e as a status. */
static int guest_fail(sp_actor_t *a, srv_error *e, int status, const char *what) {
  int64_t addr = 0;
  uint8_t *base;
  size_t size;
  sp_error_t *err = call(a, "llm_error_ptr", 0, 0, 0, &addr);
  addr = (uint32_t)addr;
  sp_actor_memory(a, &base, &size);
  if (err || addr <= 0 || (uint64_t)addr >= size) {
    sp_error_free(err);
    return srv_fail(e, status, status == 400 ? "invalid_request_error" : "server_error", NULL, "", "%s failed",
                    what);
  }
  size_t room = size - (size_t)addr;
  return srv_fail(e, status, status == 400 ? "invalid_request_error" : "server_error", NULL, "", "%s: %.*s", what,
                  (int)(room < 400 ? room : 400), (const char *)base + addr);
}

static int runtime_fail(sp_error_t *err, srv_error *e, const char *what) {
  srv_fail(e, 500, "server_error", NULL, "", "%s: %s", what, sp_error_message(err));
  sp_error_free(err);
  return e->status;
}

static sp_error_t *new_actor(srv *s, bool warm_up, sp_actor_t **out) {
  const char *warm[] = {"--warmup"};
  return sp_cli_llm_new(s->rt, s->cfg.model, s->cfg.ctx, 0, warm, warm_up ? 1 : 0, out);
}

static sp_error_t *loaded_actor(srv *s, bool warm_up, sp_actor_t **out) {
  int64_t status = 0;
  sp_error_t *err = new_actor(s, warm_up, out);
  if (!err) err = call(*out, "llm_init", 0, 0, 0, &status);
  if (!err && status < 0) err = sp_error_new("the LLM guest could not load %s", s->cfg.model);
  if (err && *out) sp_actor_free(*out), *out = NULL;
  return err;
}

sp_error_t *srv_engine_actor(srv *s, sp_actor_t **out) { return loaded_actor(s, false, out); }

sp_error_t *srv_engine_warm_up(srv *s) {
  sp_actor_t *a = NULL;
  sp_error_t *err = sp_cli_llm_warmup_wanted(s->rt) ? loaded_actor(s, true, &a) : NULL;
  sp_actor_free(a);
  return err;
}

sp_error_t *srv_engine_restore(srv *s, const char *path, sp_actor_t **out) {
  sp_error_t *err = new_actor(s, false, out);
  if (!err) err = sp_actor_restore(*out, path, NULL);
  if (err && *out) sp_actor_free(*out), *out = NULL;
  return err;
}

/* Copies len bytes into the guest's input buffer. */
static int put_input(sp_actor_t *a, const void *bytes, size_t len, srv_error *e) {
  int64_t addr = 0;
  if (len > (1u << 30)) return srv_fail(e, 413, "invalid_request_error", NULL, "", "the input is too large");
  sp_error_t *err = call(a, "llm_input", (int64_t)len, 0, 1, &addr);
  if (err) return runtime_fail(err, e, "llm_input");
  addr = (uint32_t)addr;
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  if (addr <= 0 || (uint64_t)addr + len > size) return guest_fail(a, e, 500, "llm_input");
  if (len) memcpy(base + addr, bytes, len);
  return 0;
}

int srv_engine_render(sp_actor_t *a, const char *input, size_t len, int mode, int32_t **ids, uint32_t *n,
                      srv_error *e) {
  int64_t count = 0, ptr = 0;
  if (put_input(a, input, len, e)) return e->status;
  sp_error_t *err = call(a, "llm_render", (int64_t)len, mode, 2, &count);
  if (err) return runtime_fail(err, e, "llm_render");
  if ((int32_t)count < 0) return guest_fail(a, e, 400, "rendering the prompt");
  if ((err = call(a, "llm_tokens_ptr", 0, 0, 0, &ptr))) return runtime_fail(err, e, "llm_tokens_ptr");
  ptr = (uint32_t)ptr, count = (int32_t)count;
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  if (ptr <= 0 || (uint64_t)ptr + (uint64_t)count * 4 > size)
    return srv_fail(e, 500, "server_error", NULL, "", "the guest returned tokens outside its memory");
  *ids = malloc(((size_t)count + 1) * sizeof **ids);
  if (!*ids) return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  memcpy(*ids, base + ptr, (size_t)count * 4);
  *n = (uint32_t)count;
  return 0;
}

int srv_engine_sampling(sp_actor_t *a, const char *opts, size_t len, srv_error *e) {
  int64_t rc = 0;
  if (put_input(a, opts, len, e)) return e->status;
  sp_error_t *err = call(a, "llm_sampling", (int64_t)len, 0, 1, &rc);
  if (err) return runtime_fail(err, e, "llm_sampling");
  return (int32_t)rc < 0 ? guest_fail(a, e, 400, "sampling settings") : 0;
}

int srv_engine_sync(sp_actor_t *a, const int32_t *ids, uint32_t n, uint32_t *prefilled, srv_error *e) {
  int64_t got = 0;
  if (put_input(a, ids, (size_t)n * 4, e)) return e->status;
  sp_error_t *err = call(a, "llm_sync", (int64_t)n * 4, 0, 1, &got);
  if (err) return runtime_fail(err, e, "prefill");
  if ((int32_t)got < 0) return guest_fail(a, e, 500, "prefill");
  *prefilled = (uint32_t)got;
  return 0;
}

/* One call a token: llm_next's record (include/samepage_llm.h), read in
 * place once it is checked to lie inside the guest's memory. */
int srv_engine_step(sp_actor_t *a, int32_t *token, bool *done, const char **piece, size_t *piece_len, srv_error *e) {
  int64_t addr = 0;
  sp_error_t *err = call(a, "llm_next", 0, 0, 0, &addr);
  if (err) return runtime_fail(err, e, "decode");
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  const sp_llm_step *step = sp_llm_step_at(base, size, addr);
  if (!step) return srv_fail(e, 500, "server_error", NULL, "", "the guest's step record is corrupt");
  if (step->token < 0) return guest_fail(a, e, 500, "decode");
  *token = step->token, *done = step->turn_done != 0;
  *piece = (const char *)step->piece, *piece_len = step->piece_len;
  return 0;
}

int srv_engine_logprobs_on(sp_actor_t *a, bool on, int top, srv_error *e) {
  int64_t rc = 0;
  sp_error_t *err = call(a, "llm_logprobs", on ? 1 : 0, top, 2, &rc);
  if (err) return runtime_fail(err, e, "llm_logprobs");
  return (int32_t)rc < 0 ? guest_fail(a, e, 400, "logprobs") : 0;
}

/* The record's words are copied out of guest memory once, then parsed. */
int srv_engine_logprobs(sp_actor_t *a, srv_logprob *out, int *n, srv_error *e) {
  int64_t ptr = 0;
  sp_error_t *err = call(a, "llm_logprobs_ptr", 0, 0, 0, &ptr);
  if (err) return runtime_fail(err, e, "llm_logprobs_ptr");
  ptr = (uint32_t)ptr;
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  uint32_t rec[1024];
  if (ptr <= 0 || (uint64_t)ptr + sizeof rec > size)
    return srv_fail(e, 500, "server_error", NULL, "", "the guest's logprobs are outside its memory");
  memcpy(rec, base + ptr, sizeof rec);
  uint32_t entries = rec[0], words = rec[1], at = 2;
  if (entries > 21 || words > 1024) return srv_fail(e, 500, "server_error", NULL, "", "bad logprobs record");
  for (*n = 0; *n < (int)entries; (*n)++) {
    if (at + 3 > words) return srv_fail(e, 500, "server_error", NULL, "", "bad logprobs record");
    srv_logprob *lp = &out[*n];
    uint32_t len = rec[at + 2];
    if (len > sizeof lp->bytes || at + 3 + (len + 3) / 4 > words)
      return srv_fail(e, 500, "server_error", NULL, "", "bad logprobs record");
    memcpy(&lp->id, &rec[at], 4), memcpy(&lp->logprob, &rec[at + 1], 4);
    lp->len = (uint8_t)len;
    memcpy(lp->bytes, &rec[at + 3], len);
    at += 3 + (len + 3) / 4;
  }
  return 0;
}

int srv_engine_rewind(sp_actor_t *a, uint32_t keep) {
  int64_t rc = 0;
  sp_error_t *err = call(a, "llm_rewind", keep, 0, 1, &rc);
  if (err) { sp_error_free(err); return -1; }
  return (int32_t)rc == (int32_t)keep ? 0 : -1;
}

int srv_engine_history(sp_actor_t *a, uint32_t *n_ctx, int32_t **ids, uint32_t *n, srv_error *e) {
  int64_t ctx = 0, past = 0, ptr = 0, vocab = 0;
  sp_error_t *err = call(a, "llm_n_ctx", 0, 0, 0, &ctx);
  if (!err) err = call(a, "llm_n_past", 0, 0, 0, &past);
  if (!err) err = call(a, "llm_history_ptr", 0, 0, 0, &ptr);
  if (!err) err = call(a, "llm_n_vocab", 0, 0, 0, &vocab);
  if (err) {
    srv_fail(e, 400, "invalid_request_error", NULL, "", "the snapshot's guest fails: %s", sp_error_message(err));
    sp_error_free(err);
    return e->status;
  }
  ctx = (uint32_t)ctx, past = (uint32_t)past, ptr = (uint32_t)ptr, vocab = (uint32_t)vocab;
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  if (past > ctx || ptr <= 0 || (uint64_t)ptr + (uint64_t)past * 4 > size)
    return srv_fail(e, 400, "invalid_request_error", NULL, "", "the snapshot's conversation is damaged");
  *ids = malloc(((size_t)past + 1) * sizeof **ids);
  if (!*ids) return srv_fail(e, 500, "server_error", NULL, "", "out of memory");
  memcpy(*ids, base + ptr, (size_t)past * 4);
  for (int64_t i = 0; i < past; i++)
    if ((*ids)[i] < 0 || (*ids)[i] >= vocab) {
      free(*ids), *ids = NULL;
      return srv_fail(e, 400, "invalid_request_error", NULL, "", "the snapshot holds a token out of range");
    }
  *n_ctx = (uint32_t)ctx, *n = (uint32_t)past;
  return 0;
}
