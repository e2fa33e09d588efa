/*
 * cli_kv.c: `samepage kv export S.snap OUT.safetensors` and
 * `samepage kv import S.snap IN.safetensors OUT.snap [--model F]`.
 *
 * The host does not know the guest's KV layout: it finds it through the
 * tensors the guest annotated ("kv.n_past", "blk.N.k_cache",
 * "blk.N.v_cache", each f16 [head_dim, kv_heads, n_ctx]). The export holds
 * one tensor per layer for K and V, "layer.N.k" / "layer.N.v", f16 of shape
 * [positions, kv_heads, head_dim], with metadata: the model's and the
 * guest module's hashes and the number of positions. Import writes such a
 * file back into a conversation: it restores S.snap, replaces the cache and
 * the position count, and saves OUT.snap.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_kv.h"
#include "core/error.h"
#include "core/file_open.h"
#include "samepage.h"
#include "snapshot/snapshot.h"

extern const uint8_t sp_embedded_llm[], sp_embedded_llm_end[];

#define MAX_LAYERS 1024

typedef struct kv_layout {
  uint32_t n_past, n_layers;
  sp_tensor k[MAX_LAYERS], v[MAX_LAYERS];
} kv_layout;

/* Whether t is a packed f16 [D, H, C] tensor (the snapshot reader has
 * checked it lies in memory; tools copy it as one block). */
static bool packed_f16_dhc(const sp_tensor *t) {
  uint64_t row = (uint64_t)t->ne[0] * 2, plane = row * t->ne[1];
  return t->dtype == SP_DTYPE_F16 && t->ne[3] == 1 && t->nb[0] == row && t->nb[1] == plane;
}

/* Checks layer l's caches: both packed f16 [D, H, C], V shaped as K, every
 * layer shaped as layer 0 (the export's header gives one shape), holding
 * n_past positions. Messages name the annotation and the field. */
static sp_error_t *check_layer(const kv_layout *kv, uint32_t l) {
  for (int kind = 0; kind < 2; kind++) {
    const sp_tensor *t = &(kind ? kv->v : kv->k)[l], *k0 = &kv->k[0];
    char name[64];
    snprintf(name, sizeof name, "blk.%u.%c_cache", l, kind ? 'v' : 'k');
    if (!packed_f16_dhc(t))
      return sp_error_new("layer %u: %s is not a packed f16 [D, H, C] tensor (dtype %u, ne = [%u, %u, %u, %u], "
                          "nb = [%u, %u, %u])", l, name, t->dtype, t->ne[0], t->ne[1], t->ne[2], t->ne[3], t->nb[0],
                          t->nb[1], t->nb[2]);
    if (t->ne[0] != k0->ne[0] || t->ne[1] != k0->ne[1] || t->ne[2] != k0->ne[2])
      return sp_error_new("layer %u: %s has shape [%u, %u, %u], blk.0.k_cache [%u, %u, %u]: every cache must have one "
                          "shape", l, name, t->ne[0], t->ne[1], t->ne[2], k0->ne[0], k0->ne[1], k0->ne[2]);
    if (kv->n_past > t->ne[2])
      return sp_error_new("layer %u: %s holds %u positions, fewer than kv.n_past = %u", l, name, t->ne[2], kv->n_past);
  }
  return NULL;
}

/* The caches the snapshot names. The snapshot reader has checked every
 * annotation against the snapshot's memory (snapshot_read.c); this checks
 * the layout the KV tools rely on. */
static sp_error_t *read_layout(const sp_snapshot_file *f, kv_layout *kv) {
  sp_tensor np;
  if (!sp_snapshot_file_annotation(f, "kv.n_past", &np))
    return sp_error_new("the snapshot names no KV cache (no kv.n_past annotation): was it made by the LLM guest?");
  if (np.dtype != SP_DTYPE_I32) return sp_error_new("annotation kv.n_past: dtype %u is not i32", np.dtype);
  sp_error_t *err = sp_snapshot_file_read(f, np.offset, 4, (uint8_t *)&kv->n_past);
  for (kv->n_layers = 0; !err && kv->n_layers < MAX_LAYERS; kv->n_layers++) {
    char name[64];
    snprintf(name, sizeof name, "blk.%u.k_cache", kv->n_layers);
    if (!sp_snapshot_file_annotation(f, name, &kv->k[kv->n_layers])) break;
    snprintf(name, sizeof name, "blk.%u.v_cache", kv->n_layers);
    if (!sp_snapshot_file_annotation(f, name, &kv->v[kv->n_layers]))
      return sp_error_new("annotation %s is missing", name);
    err = check_layer(kv, kv->n_layers);
  }
  if (!err && kv->n_layers == 0) err = sp_error_new("the snapshot names no blk.0.k_cache");
  return err;
}

/* ---- export ---- */

static size_t json_header(const kv_layout *kv, uint64_t model_hash, char *out, size_t cap) {
  const sp_tensor *k0 = &kv->k[0];
  uint64_t bytes = (uint64_t)kv->n_past * k0->ne[0] * k0->ne[1] * 2, at = 0;
  size_t n = (size_t)snprintf(out, cap, "{\"__metadata__\":{\"format\":\"samepage-kv-1\",\"model_hash\":\"%016" PRIx64
                              "\",\"positions\":\"%u\",\"layout\":\"[position, kv_head, head_dim]\"}", model_hash, kv->n_past);
  for (uint32_t l = 0; l < kv->n_layers && n < cap; l++)
    for (int kind = 0; kind < 2 && n < cap; kind++, at += bytes)
      n += (size_t)snprintf(out + n, cap - n, ",\"layer.%u.%c\":{\"dtype\":\"F16\",\"shape\":[%u,%u,%u],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}",
                            l, kind ? 'v' : 'k', kv->n_past, k0->ne[1], k0->ne[0], at, at + bytes);
  if (n + 1 >= cap) return 0;
  out[n++] = '}';
  while (n % 8) out[n++] = ' '; /* the data starts 8-byte aligned */
  return n;
}

sp_error_t *sp_kv_export_file(const char *snap, const char *out_path, uint32_t *n_layers, uint32_t *n_past) {
  sp_snapshot_file *f = NULL;
  kv_layout *kv = calloc(1, sizeof *kv);
  sp_error_t *err = kv ? sp_snapshot_file_open(snap, &f) : sp_error_new("out of memory");
  if (!err) err = read_layout(f, kv);
  size_t header_cap = 256 + (size_t)(kv ? kv->n_layers : 0) * 160, n = 0;
  char *header = err ? NULL : malloc(header_cap);
  if (!err) n = header ? json_header(kv, sp_snapshot_file_blob_hash(f, "model"), header, header_cap) : 0;
  if (!err && !n) err = sp_error_new("out of memory");
  uint64_t bytes = err ? 0 : (uint64_t)kv->n_past * kv->k[0].ne[0] * kv->k[0].ne[1] * 2;
  uint8_t *buf = err ? NULL : malloc(bytes ? bytes : 1);
  if (!err && !buf) err = sp_error_new("out of memory for %" PRIu64 " bytes", bytes);
  int fd = -1;
  if (!err) err = sp_create_regular(out_path, &fd); /* never a FIFO or a device */
  FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!err && !out) err = sp_error_new("%s: cannot write it", out_path);
  if (!out && fd >= 0) close(fd);
  uint64_t header_len = n;
  if (!err) fwrite(&header_len, 8, 1, out), fwrite(header, 1, n, out);
  for (uint32_t l = 0; !err && l < kv->n_layers; l++)
    for (int kind = 0; kind < 2 && !err; kind++) {
      err = sp_snapshot_file_read(f, (kind ? kv->v : kv->k)[l].offset, bytes, buf);
      if (!err && fwrite(buf, 1, bytes, out) != bytes) err = sp_error_new("%s: write failed", out_path);
    }
  if (out && fclose(out) && !err) err = sp_error_new("%s: write failed", out_path);
  if (!err) *n_layers = kv->n_layers, *n_past = kv->n_past;
  free(buf);
  free(header);
  free(kv);
  sp_snapshot_file_close(f);
  return err;
}

static int kv_export(const char *snap, const char *out_path) {
  uint32_t n_layers = 0, n_past = 0;
  sp_error_t *err = sp_kv_export_file(snap, out_path, &n_layers, &n_past);
  if (err) {
    fprintf(stderr, "samepage kv export: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  fprintf(stderr, "exported %u layers x (k, v), %u positions, to %s\n", n_layers, n_past, out_path);
  return 0;
}

/* ---- import ---- */

/* Finds "name":{... "shape":[a,b,c] ... "data_offsets":[x,y]} in the header. */
static bool find_tensor(const char *json, const char *name, uint32_t shape[3], uint64_t off[2]) {
  char key[80];
  snprintf(key, sizeof key, "\"%s\"", name);
  const char *at = strstr(json, key), *end = at ? strchr(at, '}') : NULL;
  if (!at || !end) return false;
  const char *s = strstr(at, "\"shape\""), *d = strstr(at, "\"data_offsets\"");
  unsigned long long o0, o1;
  return s && d && s < end && d < end && strstr(at, "\"F16\"") && strstr(at, "\"F16\"") < end &&
         sscanf(s, "\"shape\":[%u,%u,%u]", &shape[0], &shape[1], &shape[2]) == 3 &&
         sscanf(d, "\"data_offsets\":[%llu,%llu]", &o0, &o1) == 2 && (off[0] = o0, off[1] = o1, true);
}

static sp_error_t *write_layer(sp_actor_t *a, const kv_layout *kv, const uint8_t *data, uint64_t data_len,
                               const char *json, uint32_t l, int kind, uint32_t *n_pos) {
  char name[64];
  uint32_t shape[3];
  uint64_t off[2];
  snprintf(name, sizeof name, "layer.%u.%c", l, kind ? 'v' : 'k');
  const sp_tensor *t = &(kind ? kv->v : kv->k)[l];
  if (!find_tensor(json, name, shape, off)) return sp_error_new("tensor %s is missing or not f16", name);
  if (shape[1] != t->ne[1] || shape[2] != t->ne[0] || shape[0] > t->ne[2])
    return sp_error_new("tensor %s has shape [%u,%u,%u], this cache holds [<=%u,%u,%u]", name, shape[0], shape[1], shape[2],
                        t->ne[2], t->ne[1], t->ne[0]);
  uint64_t bytes = (uint64_t)shape[0] * shape[1] * shape[2] * 2;
  if (off[1] < off[0] || off[1] - off[0] != bytes || off[1] > data_len) return sp_error_new("tensor %s: bad data_offsets", name);
  if (l == 0 && kind == 0) *n_pos = shape[0];
  if (shape[0] != *n_pos) return sp_error_new("tensor %s holds %u positions, layer 0 holds %u", name, shape[0], *n_pos);
  uint8_t *base;
  size_t size;
  sp_actor_memory(a, &base, &size);
  /* read_layout proved the cache packed and inside the snapshot's memory,
   * which the restored actor's equals; checked again where it is written. */
  if (t->offset > size || bytes > size - t->offset)
    return sp_error_new("tensor %s: [0x%x, +%" PRIu64 ") lies outside the restored memory (%zu bytes)", name, t->offset,
                        bytes, size);
  memcpy(base + t->offset, data + off[0], bytes);
  return NULL;
}

/* Writes every layer of the file into the restored actor's cache; stores
 * the number of positions it holds in *n_pos. */
static sp_error_t *import_into(sp_actor_t *a, const kv_layout *kv, const uint8_t *file, size_t len, uint64_t model_hash,
                               uint32_t *n_pos) {
  uint64_t header_len;
  if (len < 8) return sp_error_new("not a safetensors file (too short)");
  memcpy(&header_len, file, 8);
  if (header_len > len - 8 || header_len > (64u << 20)) return sp_error_new("not a safetensors file (bad header length)");
  char *json = malloc(header_len + 1);
  if (!json) return sp_error_new("out of memory");
  memcpy(json, file + 8, header_len), json[header_len] = '\0';
  char want[40];
  snprintf(want, sizeof want, "\"model_hash\":\"%016" PRIx64 "\"", model_hash);
  sp_error_t *err = strstr(json, want) ? NULL : sp_error_new("the KV cache was made with another model (model_hash differs)");
  for (uint32_t l = 0; !err && l < kv->n_layers; l++)
    for (int kind = 0; kind < 2 && !err; kind++)
      err = write_layer(a, kv, file + 8 + header_len, len - 8 - header_len, json, l, kind, n_pos);
  free(json);
  return err;
}

sp_error_t *sp_kv_import_actor(sp_actor_t *a, const char *snap, const uint8_t *file, size_t len,
                               uint32_t *old_n_past, uint32_t *n_pos) {
  kv_layout *kv = calloc(1, sizeof *kv);
  sp_snapshot_file *f = NULL;
  sp_error_t *err = kv ? sp_snapshot_file_open(snap, &f) : sp_error_new("out of memory");
  if (!err) err = read_layout(f, kv);
  uint64_t model_hash = f ? sp_snapshot_file_blob_hash(f, "model") : 0;
  sp_tensor np = {0};
  if (f) sp_snapshot_file_annotation(f, "kv.n_past", &np);
  sp_snapshot_file_close(f);
  *n_pos = 0;
  if (!err) *old_n_past = kv->n_past, err = import_into(a, kv, file, len, model_hash, n_pos);
  if (!err) {
    uint8_t *base;
    size_t size;
    sp_actor_memory(a, &base, &size);
    if ((uint64_t)np.offset + 4 > size) err = sp_error_new("kv.n_past lies outside the restored memory");
    if (!err) memcpy(base + np.offset, n_pos, 4);
  }
  free(kv);
  return err;
}

static int kv_import(const char *snap, const char *in_path, const char *out_snap, const char *model) {
  size_t len = 0;
  uint8_t *file = NULL;
  sp_error_t *err = sp_read_regular(in_path, SP_OPEN_NONEMPTY, &file, &len);
  sp_runtime_t *rt = NULL;
  sp_actor_t *a = NULL;
  sp_runtime_options ropts = {.knobs = sp_cli_knobs()};
  if (!err) err = sp_runtime_new(&ropts, &rt);
  sp_blob_grant grant = {"model", model};
  sp_actor_options opts = {.blobs = &grant, .n_blobs = 1};
  if (!err) err = sp_actor_new(rt, sp_embedded_llm, (size_t)(sp_embedded_llm_end - sp_embedded_llm), &opts, &a);
  if (!err) err = sp_actor_restore(a, snap, NULL);
  uint32_t old_n_past = 0, n_pos = 0;
  if (!err) err = sp_kv_import_actor(a, snap, file, len, &old_n_past, &n_pos);
  if (!err) err = sp_actor_snapshot(a, out_snap, NULL, NULL);
  if (!err) fprintf(stderr, "imported %u positions into %s\n", n_pos, out_snap);
  free(file);
  sp_actor_free(a);
  sp_runtime_free(rt);
  if (err) {
    fprintf(stderr, "samepage kv import: %s\n", sp_error_message(err));
    sp_error_free(err);
    return SP_EXIT_RUNTIME;
  }
  return 0;
}

/* ---- the command line ---- */

static void kv_export_usage(FILE *out) {
  fprintf(out,
          "usage: samepage kv export S.snap OUT.safetensors\n"
          "  writes the KV cache of the conversation saved in S.snap (samepage run --save)\n"
          "  as safetensors: layer.N.k / layer.N.v, f16 [position, kv_head, head_dim]\n"
          "  -h, --help             this message\n"
          "  --                     what follows is a path, even if it starts with -\n");
}

static void kv_import_usage(FILE *out) {
  fprintf(out,
          "usage: samepage kv import S.snap IN.safetensors OUT.snap [--model F.gguf]\n"
          "  writes the KV cache in IN.safetensors (made by kv export) into the\n"
          "  conversation saved in S.snap, and saves the result as OUT.snap\n"
          "  --model F.gguf         the model S.snap was made with (default: SmolLM2-135M-Instruct\n"
          "                         Q4_1, fetched by scripts/fetch-model.sh; or $SAMEPAGE_MODEL)\n"
          "  -h, --help             this message\n"
          "  --                     what follows is a path, even if it starts with -\n");
}

static void kv_usage(FILE *out) {
  fprintf(out,
          "usage: samepage kv export S.snap OUT.safetensors\n"
          "       samepage kv import S.snap IN.safetensors OUT.snap [--model F.gguf]\n"
          "  export                 a saved conversation's KV cache as safetensors\n"
          "  import                 write such a KV cache into a saved conversation\n"
          "  samepage kv export --help, samepage kv import --help: their options\n");
}

/* Parses `kv export|import` (argv[0]): exactly n_pos positional paths into
 * pos, and, with model non-NULL, --model. Returns 0, -1 after --help, or an
 * exit code to stop with. */
static int parse_kv_args(int argc, char **argv, int n_pos, const char **pos, const char **model,
                         sp_cli_usage_fn *usage) {
  char cmd[32];
  snprintf(cmd, sizeof cmd, "kv %s", argv[0]);
  int got = 0;
  bool options = true;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (options && arg[0] == '-' && arg[1]) {
      if (sp_cli_is_help(arg)) { usage(stdout); return -1; }
      if (!strcmp(arg, "--")) { options = false; continue; }
      if (!model || strcmp(arg, "--model")) return sp_cli_unknown_option(cmd, arg, usage);
      if (!(*model = sp_cli_option_value(cmd, argc, argv, &i, usage))) return SP_EXIT_USAGE;
      continue;
    }
    if (got == n_pos) return sp_cli_unexpected_argument(cmd, arg, usage);
    pos[got++] = arg;
  }
  if (got < n_pos) {
    fprintf(stderr, "samepage %s: needs %d paths, %d given\n", cmd, n_pos, got);
    usage(stderr);
    return SP_EXIT_USAGE;
  }
  return 0;
}

int sp_cli_kv(int argc, char **argv) {
  const char *sub = argc > 1 ? argv[1] : "", *pos[3] = {0}, *model = NULL;
  int rc;
  if (!strcmp(sub, "export")) {
    rc = parse_kv_args(argc - 1, argv + 1, 2, pos, NULL, kv_export_usage);
    return rc ? (rc < 0 ? 0 : rc) : kv_export(pos[0], pos[1]);
  }
  if (!strcmp(sub, "import")) {
    rc = parse_kv_args(argc - 1, argv + 1, 3, pos, &model, kv_import_usage);
    return rc ? (rc < 0 ? 0 : rc) : kv_import(pos[0], pos[1], pos[2], model ? model : sp_cli_default_model());
  }
  if (sp_cli_is_help(sub) || !strcmp(sub, "help")) {
    kv_usage(stdout);
    return 0;
  }
  if (!sub[0]) fprintf(stderr, "samepage kv: missing export or import\n");
  else if (sub[0] == '-') fprintf(stderr, "samepage kv: unknown option %s\n", sub);
  else fprintf(stderr, "samepage kv: unknown command \"%s\" (export or import)\n", sub);
  kv_usage(stderr);
  return SP_EXIT_USAGE;
}
