/*
 * backend_load.c: creating a backend by name in this process, loading the
 * CUDA or Vulkan library at run time (the host, and each worker process, call this).
 */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "core/error.h"

bool sp_path_beside_exe(const char *file, char *path, size_t cap) {
  ssize_t n = cap > 1 ? readlink("/proc/self/exe", path, cap - 1) : -1;
  if (n <= 0) return false;
  path[n] = '\0';
  char *slash = strrchr(path, '/');
  if (!slash || (size_t)(slash - path) + strlen(file) + 2 > cap) return false;
  strcpy(slash + 1, file);
  return true;
}

/* Opens `file` next to the running executable; NULL when absent. */
static void *open_beside_exe(const char *file) {
  char path[PATH_MAX];
  return sp_path_beside_exe(file, path, sizeof path) ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
}

/* A backend that lives in its own shared library, loaded at run time so
 * that the samepage binary starts on machines without its driver. */
typedef struct device_library {
  const char *name;    /* "cuda", "vulkan": the --backend name, in messages */
  const char *file;    /* SP_BACKEND_*_LIBRARY */
  const char *symbol;  /* SP_BACKEND_*_SYMBOL, its sp_backend_new_fn */
  const char *knob;    /* the path the user set (SP_CUDA_LIB, SP_VULKAN_LIB); NULL or "" if none */
} device_library;

/* Opens `file` from an installed tree (cmake/install.cmake defines both
 * paths for this file only): first relative to the running executable,
 * SP_BACKEND_INSTALL_REL being the way from the install's bindir to its
 * backend dir ("../lib/samepage"), so the installed samepage and
 * samepage-worker find it wherever the tree was installed or moved; then
 * SP_BACKEND_INSTALL_DIR, the backend dir of the configured prefix, for
 * programs elsewhere that link the installed libsamepage.a. NULL when
 * neither holds it. */
static void *open_installed(const char *file) {
  void *lib = NULL;
#ifdef SP_BACKEND_INSTALL_REL
  char rel[PATH_MAX];
  if (snprintf(rel, sizeof rel, "%s/%s", SP_BACKEND_INSTALL_REL, file) < (int)sizeof rel) lib = open_beside_exe(rel);
#endif
#ifdef SP_BACKEND_INSTALL_DIR
  char abs[PATH_MAX];
  if (!lib && snprintf(abs, sizeof abs, "%s/%s", SP_BACKEND_INSTALL_DIR, file) < (int)sizeof abs)
    lib = dlopen(abs, RTLD_NOW | RTLD_LOCAL);
#endif
  (void)file; /* unused where no install paths were configured */
  return lib;
}

/* Registers the backend a constructor made (sp_backend_check): one whose
 * tables this build does not describe is freed, and *out cleared. */
static sp_error_t *registered(sp_backend **out) {
  sp_error_t *err = sp_backend_check(*out);
  if (!err) return NULL;
  sp_backend_free(*out);
  *out = NULL;
  return err;
}

/* Opens a device library: the knob's path when set (and nothing else: a
 * path the user named that fails must not be replaced by another copy),
 * else the file next to the executable (the build tree), else the install
 * tree (open_installed), else the loader's search path. NULL when none. */
static void *open_device_library(const device_library *dl) {
  if (dl->knob && dl->knob[0]) return dlopen(dl->knob, RTLD_NOW | RTLD_LOCAL);
  void *lib = open_beside_exe(dl->file);
  if (!lib) lib = open_installed(dl->file);
  if (!lib) lib = dlopen(dl->file, RTLD_NOW | RTLD_LOCAL);
  return lib;
}

/* Loads a device backend's library (open_device_library) and makes the
 * backend with its constructor. The library stays loaded for the life of
 * the process (unloading a GPU runtime mid-process is not worth the risk).
 * *found tells whether a library was there at all (auto mode stays quiet
 * on machines that simply have none). The backend it makes is registered:
 * tables of other versions are refused. */
static sp_error_t *load_device_library(const device_library *dl, const sp_backend_options *opts, sp_backend **out,
                                       bool *found) {
  void *lib = open_device_library(dl);
  *found = lib != NULL;
  if (!lib)
    return sp_error_new("%s backend: cannot load %s: %s", dl->name, dl->knob && dl->knob[0] ? dl->knob : dl->file,
                        dlerror());
  sp_backend_new_fn make = (sp_backend_new_fn)dlsym(lib, dl->symbol);
  if (!make) return sp_error_new("%s backend: %s is missing from the library", dl->name, dl->symbol);
  sp_error_t *err = make(opts, out); /* it refuses options of another loading contract (opts->version) */
  return err ? err : registered(out);
}

static sp_error_t *load_cuda(const sp_backend_options *opts, sp_backend **out, bool *found) {
  device_library dl = {"cuda", SP_BACKEND_CUDA_LIBRARY, SP_BACKEND_CUDA_SYMBOL, opts->knobs.cuda_lib};
  return load_device_library(&dl, opts, out, found);
}

static sp_error_t *load_vulkan(const sp_backend_options *opts, sp_backend **out) {
  device_library dl = {"vulkan", SP_BACKEND_VULKAN_LIBRARY, SP_BACKEND_VULKAN_SYMBOL, opts->knobs.vulkan_lib};
  bool found = false;
  return load_device_library(&dl, opts, out, &found);
}

static sp_error_t *cpu_new(const sp_backend_options *opts, unsigned threads, sp_backend **out) {
  sp_error_t *err = sp_backend_cpu_new_simd(threads, opts->knobs.cpu_simd, out);
  return err ? err : registered(out);
}

sp_error_t *sp_backend_load(const char *name, const sp_backend_options *opts, unsigned threads, sp_backend **out) {
  sp_backend_options defaults = {.version = SP_BACKEND_OPS_VERSION, .residency = true, .graphs = true};
  sp_knobs_defaults(&defaults.knobs);
  if (!opts) opts = &defaults;
  if (opts->version != SP_BACKEND_OPS_VERSION) return sp_error_new("sp_backend_load: options of another version");
  if (name && !strcmp(name, "cpu")) return cpu_new(opts, threads, out);
  bool found = false;
  if (name && !strcmp(name, "cuda")) return load_cuda(opts, out, &found);
  /* Vulkan only when asked for: "auto" keeps meaning CUDA, else the CPU */
  if (name && !strcmp(name, "vulkan")) return load_vulkan(opts, out);
  if (name && strcmp(name, "auto"))
    return sp_error_new("unknown backend \"%s\" (expected cpu, cuda, vulkan or auto)", name);
  sp_error_t *err = load_cuda(opts, out, &found);
  if (!err) return NULL;
  if (found || opts->knobs.verbose) fprintf(stderr, "samepage: using the cpu backend (%s)\n", sp_error_message(err));
  sp_error_free(err);
  return cpu_new(opts, threads, out);
}
