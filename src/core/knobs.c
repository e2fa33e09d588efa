/*
 * knobs.c: the table of environment variables (knobs.h), their one parsing
 * rule per kind, and the text form in which the host hands them to a
 * worker process.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/knobs.h"

#define AT(field) offsetof(struct sp_knobs, field)

/* Rows: name, kind, default, meaning, reader, use, offset, min, max. */
static const sp_knob_info table[] = {
    {"SAMEPAGE_MODEL", SP_KNOB_STRING, "unset", "the GGUF model used when a command has no --model", "the CLI",
     SP_KNOB_FOR_USERS, AT(model), 0, 0},
    {"SAMEPAGE_CACHE", SP_KNOB_STRING, "$XDG_CACHE_HOME/samepage, else $HOME/.cache/samepage",
     "the cache directory, where the default model is looked for", "the CLI", SP_KNOB_FOR_USERS, AT(cache), 0, 0},
    {"XDG_CACHE_HOME", SP_KNOB_STRING, "$HOME/.cache", "the user's cache directory (XDG)", "the CLI", SP_KNOB_FOR_USERS, AT(xdg_cache_home), 0, 0},
    {"HOME", SP_KNOB_STRING, "unset", "the user's home directory", "the CLI", SP_KNOB_FOR_USERS, AT(home), 0, 0},
    {"SP_ISOLATION", SP_KNOB_STRING, "none",
     "none or process: the isolation used when sp_runtime_options.isolation is NULL (--isolation)", "runtime",
     SP_KNOB_FOR_USERS, AT(isolation), 0, 0},
    {"SP_NO_FILE_MAPS", SP_KNOB_FLAG, "off",
     "blob_map refuses file mappings on every backend, as on CUDA (exercises the read path)", "runtime (abi_blob.c)",
     SP_KNOB_TEST_HOOK, AT(no_file_maps), 0, 0},
    {"SP_VERBOSE", SP_KNOB_FLAG, "off", "say why the auto backend fell back to the CPU even when no CUDA library "
     "was found", "runtime (backend_load.c)", SP_KNOB_FOR_USERS, AT(verbose), 0, 0},
    {"SP_CUDA_LIB", SP_KNOB_STRING, "beside the executable, else the install tree, else the loader's path",
     "the CUDA backend library to load", "runtime (backend_load.c)", SP_KNOB_FOR_USERS, AT(cuda_lib), 0, 0},
    {"SP_VULKAN_LIB", SP_KNOB_STRING, "beside the executable, else the install tree, else the loader's path",
     "the Vulkan backend library to load (--backend vulkan)", "runtime (backend_load.c)", SP_KNOB_FOR_USERS,
     AT(vulkan_lib), 0, 0},
    {"SP_WORKER_EXE", SP_KNOB_STRING, "beside the executable, else the build tree, else the install tree",
     "the samepage-worker executable for process isolation", "runtime (worker_proxy.c)", SP_KNOB_FOR_USERS, AT(worker_exe), 0,
     0},
    {"SP_CPU_SIMD", SP_KNOB_STRING, "auto", "generic, avx2, avx512 or neon: caps the CPU kernel table",
     "CPU backend (kernels_select.c)", SP_KNOB_FOR_USERS, AT(cpu_simd), 0, 0},
    {"SP_CUDA_DEVICE", SP_KNOB_INT, "0", "the CUDA device index", "CUDA backend", SP_KNOB_FOR_USERS, AT(cuda_device), 0, 1023},
    {"SP_CUDA_NO_GRAPHS", SP_KNOB_FLAG, "off", "never replay repeated command lists as CUDA graphs",
     "runtime -> sp_backend_options.graphs", SP_KNOB_FOR_USERS, AT(cuda_no_graphs), 0, 0},
    {"SP_CUDA_NO_REPACK", SP_KNOB_FLAG, "off", "keep quantized weights in their GGUF layout (no repacked copy)",
     "CUDA backend (repack.cu)", SP_KNOB_FOR_USERS, AT(cuda_no_repack), 0, 0},
    {"SP_CUDA_REPACK_Q8", SP_KNOB_FLAG, "on", "repack Q8_0 weights too (0: their original layout, half the memory)",
     "CUDA backend (repack.cu)", SP_KNOB_FOR_USERS, AT(cuda_repack_q8), 0, 0},
    {"SP_CUDA_NO_CUBLAS", SP_KNOB_FLAG, "off", "never load cuBLAS: prefill products use samepage's own kernels",
     "CUDA backend (gemm.cu)", SP_KNOB_FOR_USERS, AT(cuda_no_cublas), 0, 0},
    {"SP_CUDA_NO_FLASH", SP_KNOB_FLAG, "off", "attention with the one-block kernels only: no tensor-core prefill, no split decode",
     "CUDA backend (attention_prefill.cu, attention.cu)", SP_KNOB_FOR_USERS, AT(cuda_no_flash), 0, 0},
    {"SP_CUDA_NO_FUSION", SP_KNOB_FLAG, "off", "run every command alone (no fused launches)",
     "CUDA backend (cuda_backend.cu)", SP_KNOB_FOR_USERS, AT(cuda_no_fusion), 0, 0},
    {"SP_CUDA_NO_PDL", SP_KNOB_FLAG, "off", "launch kernels without programmatic dependent launch",
     "CUDA backend (cuda_backend.cu)", SP_KNOB_FOR_USERS, AT(cuda_no_pdl), 0, 0},
    {"SP_CUDA_NO_STAGING", SP_KNOB_FLAG, "off", "kernels read index tensors from guest memory directly, unstaged",
     "CUDA backend (cuda_submit.cu)", SP_KNOB_MEASUREMENT, AT(cuda_no_staging), 0, 0},
    {"SP_CUDA_NO_DEVICE_LOCAL", SP_KNOB_FLAG, "off", "no device mirrors of device-local ranges",
     "CUDA backend (cuda_backend.cu)", SP_KNOB_FOR_USERS, AT(cuda_no_device_local), 0, 0},
    {"SP_CUDA_NO_VMM", SP_KNOB_FLAG, "off", "workers do not share resident copies across processes",
     "CUDA backend (resident_device.cu)", SP_KNOB_FOR_USERS, AT(cuda_no_vmm), 0, 0},
    {"SP_CUDA_BATCH", SP_KNOB_FLAG, "off", "cross-actor batching on CUDA (off: each actor's graph on its own stream, faster on an H100)",
     "CUDA backend (cuda_batch.cu)", SP_KNOB_FOR_USERS, AT(cuda_batch), 0, 0},
    {"SP_CUDA_TIMING", SP_KNOB_INT, "0", "1: GPU time per list; 2: per command (graphs off)",
     "CUDA backend (cuda_timing.cu)", SP_KNOB_MEASUREMENT, AT(cuda_timing), 0, 2},
    {"SP_CUDA_MMV_WPR", SP_KNOB_INT, "0", "warps per weight row in matrix-vector kernels: 1, 2 or 4 (0: by shape)",
     "CUDA backend (matmul.cu)", SP_KNOB_MEASUREMENT, AT(cuda_mmv_wpr), 0, 4},
    {"SP_CUDA_RESIDENT_MAX_MB", SP_KNOB_INT, "-1", "act as if no resident copy over N MiB fits (-1: no cap)",
     "CUDA backend (resident_device.cu)", SP_KNOB_MEASUREMENT, AT(cuda_resident_max_mb), -1, INT64_MAX >> 20},
    {"SP_CUDA_INJECT_FAULT", SP_KNOB_INT, "0", "the Nth command list faults the GPU (0: never)",
     "CUDA backend (fault.cu)", SP_KNOB_TEST_HOOK, AT(cuda_inject_fault), 0, INT64_MAX},
    {"SP_CUDA_SYNC_EACH", SP_KNOB_FLAG, "off", "synchronize after every command (a fault names its command)",
     "CUDA backend (fault.cu)", SP_KNOB_TEST_HOOK, AT(cuda_sync_each), 0, 0},
    {"SP_VULKAN_DEVICE", SP_KNOB_INT, "0", "the Vulkan physical device index (vkEnumeratePhysicalDevices order)",
     "Vulkan backend", SP_KNOB_FOR_USERS, AT(vulkan_device), 0, 1023},
};

const sp_knob_info *sp_knobs_table(size_t *count) {
  *count = sizeof table / sizeof table[0];
  return table;
}

void sp_knobs_defaults(struct sp_knobs *out) {
  memset(out, 0, sizeof *out);
  out->cuda_repack_q8 = true;
  out->cuda_resident_max_mb = -1;
}

static bool *flag_of(struct sp_knobs *k, const sp_knob_info *i) { return (bool *)((char *)k + i->offset); }
static int64_t *int_of(struct sp_knobs *k, const sp_knob_info *i) { return (int64_t *)((char *)k + i->offset); }
static const char **str_of(struct sp_knobs *k, const sp_knob_info *i) {
  return (const char **)((char *)k + i->offset);
}

/* A decimal integer in [min, max], else an error naming the knob. */
static sp_error_t *parse_int(const sp_knob_info *info, const char *value, int64_t *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(value, &end, 10);
  if (errno || end == value || *end)
    return sp_error_with_kind(SP_ERROR_INVALID, "%s=\"%s\": not a decimal integer", info->name, value);
  if (v < info->min || v > info->max)
    return sp_error_with_kind(SP_ERROR_INVALID, "%s=%lld: out of range [%" PRId64 ", %" PRId64 "]", info->name, v,
                              info->min, info->max);
  *out = v;
  return NULL;
}

/* A test hook set to anything but its default, in a build without them. */
static sp_error_t *hook_missing(const sp_knob_info *info, const char *value) {
  struct sp_knobs probe;
  sp_knobs_defaults(&probe);
  sp_error_t *err = NULL;
  bool changed = false;
  switch (info->kind) {
  case SP_KNOB_FLAG: changed = (value[0] && strcmp(value, "0")) != *flag_of(&probe, info); break;
  case SP_KNOB_INT: {
    int64_t def = *int_of(&probe, info);
    if (value[0] && !(err = parse_int(info, value, int_of(&probe, info)))) changed = *int_of(&probe, info) != def;
    break;
  }
  case SP_KNOB_STRING: changed = value[0] != '\0'; break;
  }
  if (err || !changed) return err;
  return sp_error_with_kind(SP_ERROR_INVALID,
                            "%s=%s: a test hook, compiled only into test builds (configure with -DSP_TEST_HOOKS=ON, "
                            "as scripts/test does); unset it",
                            info->name, value);
}

sp_error_t *sp_knob_set(struct sp_knobs *out, const sp_knob_info *info, const char *value) {
  if (!value) return NULL; /* unset: the default stays */
  if (info->use == SP_KNOB_TEST_HOOK && !SP_TEST_HOOKS_BUILT) return hook_missing(info, value);
  switch (info->kind) {
  case SP_KNOB_FLAG: *flag_of(out, info) = value[0] && strcmp(value, "0"); return NULL;
  case SP_KNOB_INT: return value[0] ? parse_int(info, value, int_of(out, info)) : NULL;
  case SP_KNOB_STRING: *str_of(out, info) = value[0] ? value : NULL; return NULL;
  }
  return NULL;
}

sp_error_t *sp_knobs_parse(struct sp_knobs *out, const char *(*lookup)(const char *name, void *ctx), void *ctx) {
  sp_knobs_defaults(out);
  sp_error_t *first = NULL;
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    sp_error_t *err = sp_knob_set(out, &table[i], lookup(table[i].name, ctx));
    if (err && !first) first = err;
    else sp_error_free(err);
  }
  return first;
}

static const char *from_env(const char *name, void *ctx) {
  (void)ctx;
  return getenv(name);
}

sp_error_t *sp_knobs_from_env(struct sp_knobs *out) { return sp_knobs_parse(out, from_env, NULL); }

/* ---- the text form (worker processes) ---- */

/* Appends to buf at *len, counting what did not fit. */
static void put(char *buf, size_t cap, size_t *len, const char *name, const char *value) {
  int n = snprintf(*len < cap ? buf + *len : NULL, *len < cap ? cap - *len : 0, "%s=%s\n", name, value);
  if (n > 0) *len += (size_t)n;
}

size_t sp_knobs_format(const struct sp_knobs *k, char *buf, size_t cap) {
  struct sp_knobs def, copy = *k;
  sp_knobs_defaults(&def);
  size_t len = 0;
  if (cap) buf[0] = '\0';
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    const sp_knob_info *t = &table[i];
    char num[32];
    if (t->kind == SP_KNOB_FLAG && *flag_of(&copy, t) != *flag_of(&def, t))
      put(buf, cap, &len, t->name, *flag_of(&copy, t) ? "1" : "0");
    else if (t->kind == SP_KNOB_INT && *int_of(&copy, t) != *int_of(&def, t)) {
      snprintf(num, sizeof num, "%" PRId64, *int_of(&copy, t));
      put(buf, cap, &len, t->name, num);
    } else if (t->kind == SP_KNOB_STRING && *str_of(&copy, t) && !strchr(*str_of(&copy, t), '\n'))
      put(buf, cap, &len, t->name, *str_of(&copy, t));
  }
  return len;
}

static const sp_knob_info *find(const char *name) {
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (!strcmp(table[i].name, name)) return &table[i];
  return NULL;
}

sp_error_t *sp_knobs_parse_text(struct sp_knobs *out, char *text) {
  sp_knobs_defaults(out);
  for (char *line = text, *next; line && *line; line = next) {
    next = strchr(line, '\n');
    if (next) *next++ = '\0';
    char *eq = strchr(line, '=');
    if (!eq) return sp_error_with_kind(SP_ERROR_INVALID, "knobs: \"%s\" is not NAME=value", line);
    *eq = '\0';
    const sp_knob_info *info = find(line);
    if (!info) return sp_error_with_kind(SP_ERROR_INVALID, "knobs: unknown knob %s", line);
    sp_error_t *err = sp_knob_set(out, info, eq + 1);
    if (err) return err;
  }
  return NULL;
}
