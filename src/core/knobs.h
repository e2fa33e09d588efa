/*
 * knobs.h (private): every environment variable samepage reads, in one
 * table (docs/KNOBS.md documents each; tests/test_knobs.c checks the two
 * against each other).
 *
 * Programs read the environment once, with sp_knobs_from_env, and pass the
 * values down: the CLI and samepage-worker through sp_runtime_options.knobs
 * and sp_backend_options.knobs. The library itself never calls getenv.
 *
 * One rule per kind:
 *  1. flag: unset means its default; set to "" or "0" means off; any
 *     other value means on.
 *  2. integer: unset or "" means its default; otherwise a decimal integer
 *     within the knob's range, else sp_knobs_from_env fails with an error
 *     naming the knob (a typo never silently becomes 0).
 *  3. string: unset or "" means its default (NULL).
 *
 * struct sp_knobs travels by value inside sp_backend_options into the
 * dlopen'd CUDA and Vulkan libraries: its layout is part of SP_BACKEND_OPS_VERSION's
 * contract (bump that when a field is added, removed or moved).
 */
#ifndef SP_KNOBS_H
#define SP_KNOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* (samepage.h's typedef, repeated: this header is also read by the CUDA
 * library's C++ sources, which cannot include samepage_abi.h's C11 asserts) */
typedef struct sp_error sp_error_t;

typedef enum sp_knob_kind { SP_KNOB_FLAG, SP_KNOB_INT, SP_KNOB_STRING } sp_knob_kind;

/* Who a knob is for. A test hook (fault injection, waiting after every
 * command, refusing file maps) exists only in a build configured with
 * -DSP_TEST_HOOKS=ON (scripts/test's builds); elsewhere setting it to
 * anything but its default is an error naming it, and the code behind it
 * is not compiled (fault.cu). */
typedef enum sp_knob_use {
  SP_KNOB_FOR_USERS,   /* a setting */
  SP_KNOB_MEASUREMENT, /* for measuring or diagnosing, not for users */
  SP_KNOB_TEST_HOOK,   /* test builds only */
} sp_knob_use;

/* Whether this build has the test hooks. */
#ifdef SP_TEST_HOOKS
#define SP_TEST_HOOKS_BUILT 1
#else
#define SP_TEST_HOOKS_BUILT 0
#endif

/* The values. Strings are borrowed (from the environment, or from whatever
 * the caller parsed): they must outlive every runtime given the struct. */
struct sp_knobs {
  /* the CLI */
  const char *model;          /* SAMEPAGE_MODEL: the default --model */
  const char *cache;          /* SAMEPAGE_CACHE: the cache directory */
  const char *xdg_cache_home; /* XDG_CACHE_HOME */
  const char *home;           /* HOME */
  /* the runtime */
  const char *isolation;      /* SP_ISOLATION: "none" or "process" */
  bool no_file_maps;          /* SP_NO_FILE_MAPS (test hook) */
  bool verbose;               /* SP_VERBOSE */
  const char *cuda_lib;       /* SP_CUDA_LIB */
  const char *vulkan_lib;     /* SP_VULKAN_LIB */
  const char *worker_exe;     /* SP_WORKER_EXE */
  /* the CPU backend */
  const char *cpu_simd;       /* SP_CPU_SIMD: generic, avx2, avx512, neon, auto */
  /* the CUDA backend */
  int64_t cuda_device;        /* SP_CUDA_DEVICE */
  bool cuda_no_graphs;        /* SP_CUDA_NO_GRAPHS */
  bool cuda_no_repack;        /* SP_CUDA_NO_REPACK */
  bool cuda_repack_q8;        /* SP_CUDA_REPACK_Q8 (default on) */
  bool cuda_no_cublas;        /* SP_CUDA_NO_CUBLAS */
  bool cuda_no_flash;         /* SP_CUDA_NO_FLASH */
  bool cuda_no_fusion;        /* SP_CUDA_NO_FUSION */
  bool cuda_no_pdl;           /* SP_CUDA_NO_PDL */
  bool cuda_no_staging;       /* SP_CUDA_NO_STAGING (measurement) */
  bool cuda_no_device_local;  /* SP_CUDA_NO_DEVICE_LOCAL */
  bool cuda_no_vmm;           /* SP_CUDA_NO_VMM */
  int64_t cuda_timing;        /* SP_CUDA_TIMING (measurement): 0, 1 or 2 */
  int64_t cuda_mmv_wpr;       /* SP_CUDA_MMV_WPR (measurement): 0 = by shape, 1, 2 or 4 */
  int64_t cuda_resident_max_mb; /* SP_CUDA_RESIDENT_MAX_MB (test hook): -1 = no cap */
  int64_t cuda_inject_fault;  /* SP_CUDA_INJECT_FAULT (test hook): 0 = never, N = the Nth list */
  bool cuda_sync_each;        /* SP_CUDA_SYNC_EACH (test hook) */
  bool cuda_batch;            /* SP_CUDA_BATCH: the backend offers cross-actor batching */
  /* the Vulkan backend */
  int64_t vulkan_device;      /* SP_VULKAN_DEVICE */
};

/* One row of the table. */
typedef struct sp_knob_info {
  const char *name;    /* the environment variable */
  sp_knob_kind kind;
  const char *def;     /* the default, as docs/KNOBS.md writes it */
  const char *meaning; /* one line */
  const char *reader;  /* who uses the value */
  sp_knob_use use;
  size_t offset;       /* of the value in struct sp_knobs */
  int64_t min, max;    /* integers: the accepted range */
} sp_knob_info;

/* The table; *count gets its length. */
const sp_knob_info *sp_knobs_table(size_t *count);

/* Every knob at its default (no environment). */
void sp_knobs_defaults(struct sp_knobs *out);

/* Parses every knob through lookup(name, ctx) (NULL: unset), by the rules
 * above. On error *out holds the defaults for the bad knob and the parsed
 * values for the others; the error (the caller frees it) names the knob. */
sp_error_t *sp_knobs_parse(struct sp_knobs *out, const char *(*lookup)(const char *name, void *ctx), void *ctx);

/* sp_knobs_parse over the process environment: the one getenv in samepage. */
sp_error_t *sp_knobs_from_env(struct sp_knobs *out);

/* Parses one value for the knob `info` into out (the rules above). */
sp_error_t *sp_knob_set(struct sp_knobs *out, const sp_knob_info *info, const char *value);

/* Writes "NAME=value\n" for every knob not at its default into buf (cap
 * bytes, NUL-terminated); the length it needs (excluding the NUL), so a
 * result >= cap means it was cut. sp_knobs_parse_text reads it back. */
size_t sp_knobs_format(const struct sp_knobs *k, char *buf, size_t cap);

/* Parses text written by sp_knobs_format (lines "NAME=value"); the
 * strings in *out point into text, which must outlive them. Unknown names
 * are an error. */
sp_error_t *sp_knobs_parse_text(struct sp_knobs *out, char *text);

#ifdef __cplusplus
}
#endif

#endif
