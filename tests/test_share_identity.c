/*
 * test_share_identity.c: the identities the runtime hands a sharing backend
 * end to end, on the CPU: the CPU backend wrapped to claim shares_frozen and
 * to record every freeze. Two LLM actors granted the same model freeze it
 * under one nonzero identity (read into memory, as on CUDA, and mapped); a
 * restore re-declares the range under that identity, so a warm runtime
 * copies nothing; a restore whose pages cover the model names nothing.
 *
 * Usage: test_share_identity GUEST_DIR MODEL   (exit 77 = no model: skipped)
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "runtime/runtime_impl.h"
#include "test_util.h"

typedef struct freeze_call {
  void *binding;
  uint64_t addr, len, identity;
} freeze_call;

static freeze_call calls[64];
static int n_calls;
static sp_backend_caps (*cpu_caps)(void *ctx);

static sp_backend_caps sharing_caps(void *ctx) {
  sp_backend_caps caps = cpu_caps(ctx);
  caps.shares_frozen = true;
  return caps;
}

static sp_error_t *recording_freeze(void *ctx, void *binding, uint64_t addr, uint64_t len, uint64_t identity) {
  if (n_calls < 64) calls[n_calls++] = (freeze_call){binding, addr, len, identity};
  return NULL;
}

static const freeze_call *last_call(void) {
  static const freeze_call none;
  return n_calls ? &calls[n_calls - 1] : &none;
}

static sp_actor_t *llm_actor(sp_runtime_t *rt, const uint8_t *wasm, size_t len, const char *model) {
  static const char *const argv[] = {"llm", "--ctx", "256"};
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.argv = argv, .argc = 3, .blobs = &grant, .n_blobs = 1};
  sp_actor_t *a = NULL;
  int64_t status = -1;
  sp_error_t *err = sp_actor_new(rt, wasm, len, &opts, &a);
  if (!err) err = sp_actor_call(a, "llm_init", NULL, 0, &status);
  CHECK(!err && status == 0, "llm_init: %s", err ? sp_error_message(err) : "status");
  sp_error_free(err);
  return a;
}

int main(int argc, char **argv) {
  if (argc != 3) return printf("usage: test_share_identity GUEST_DIR MODEL\n"), 2;
  if (access(argv[2], R_OK)) return printf("SKIP: model %s not found\n", argv[2]), 77;
  char path[1024];
  snprintf(path, sizeof path, "%s/llm.wasm", argv[1]);
  size_t wasm_len = 0;
  uint8_t *wasm = read_all(path, &wasm_len);
  if (!wasm) return printf("cannot open %s\n", path), 1;
  sp_runtime_t *rt = NULL;
  sp_error_t *err = sp_runtime_new(NULL, &rt);
  if (err) return printf("runtime: %s\n", sp_error_message(err)), 1;
  static const struct sp_backend_memory_i recording = {.version = SP_BACKEND_MEMORY_VERSION,
                                                       .freeze = recording_freeze};
  cpu_caps = rt->backend->iface.caps;
  rt->backend->iface.caps = sharing_caps;
  rt->backend->memory = &recording; /* the CPU has no memory layer: this one only records freezes */

  rt->no_file_maps = true; /* the knob SP_NO_FILE_MAPS: the model is read into memory, as on CUDA */
  sp_actor_t *a = llm_actor(rt, wasm, wasm_len, argv[2]);
  freeze_call fa = *last_call();
  sp_actor_t *b = llm_actor(rt, wasm, wasm_len, argv[2]);
  freeze_call fb = *last_call();
  CHECK(n_calls == 2 && fa.identity != 0, "the model's freeze is named (%d calls)", n_calls);
  CHECK(fb.identity == fa.identity && fb.len == fa.len, "a second actor granted the file: the same name");
  rt->no_file_maps = false;
  sp_actor_t *c = llm_actor(rt, wasm, wasm_len, argv[2]);
  CHECK(last_call()->identity == fa.identity, "mapped instead of read: the same name");

  char snap[] = "/tmp/sp-share-XXXXXX";
  int fd = mkstemp(snap);
  if (fd >= 0) close(fd);
  err = sp_actor_snapshot(a, snap, NULL, NULL);
  if (!err) err = sp_actor_restore(b, snap, NULL);
  CHECK(!err, "snapshot and restore: %s", err ? sp_error_message(err) : "");
  sp_error_free(err);
  CHECK(last_call()->binding == b->binding && last_call()->identity == fa.identity && last_call()->addr == fb.addr,
        "the restore re-declares the model under its name");

  /* a mapped model: the snapshot stores none of its pages (not even the
   * last, whose tail past the file is anonymous memory), so a restore keeps
   * the model's name and with it the shared device copy */
  err = sp_actor_snapshot(c, snap, NULL, NULL);
  if (!err) err = sp_actor_restore(c, snap, NULL);
  CHECK(!err && last_call()->binding == c->binding && last_call()->identity == fa.identity,
        "a mapped model's restore re-declares it under its name: %s", err ? sp_error_message(err) : "");
  sp_error_free(err);

  /* the same snapshot, self-contained: the model's bytes come from pages */
  sp_snapshot_options self = {.self_contained = true};
  err = sp_actor_snapshot(a, snap, &self, NULL);
  int before = n_calls;
  if (!err) err = sp_actor_restore(b, snap, NULL);
  CHECK(!err && n_calls == before + 1 && last_call()->identity == 0, "pages over the model: no name");
  sp_error_free(err);
  unlink(snap);
  sp_actor_free(a), sp_actor_free(b), sp_actor_free(c);
  sp_runtime_free(rt);
  free(wasm);
  return CHECK_DONE();
}
