/*
 * backend_load.c: creating a backend by name in this process, loading the
 * CUDA library at run time (the host, and each worker process, call this).
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

/* Opens the CUDA library from an installed tree (cmake/install.cmake
 * defines both paths for this file only): first relative to the running
 * executable, SP_BACKEND_INSTALL_REL being the way from the install's bindir
 * to its backend dir ("../lib/samepage"), so the installed samepage and
 * samepage-worker find it wherever the tree was installed or moved; then
 * SP_BACKEND_INSTALL_DIR, the backend dir of the configured prefix, for
 * programs elsewhere that link the installed libsamepage.a. NULL when
 * neither holds it. */
static void *open_installed(void) {
  void *lib = NULL;
#ifdef SP_BACKEND_INSTALL_REL
  lib = open_beside_exe(SP_BACKEND_INSTALL_REL "/" SP_BACKEND_CUDA_LIBRARY);
#endif
#ifdef SP_BACKEND_INSTALL_DIR
  if (!lib) lib = dlopen(SP_BACKEND_INSTALL_DIR "/" SP_BACKEND_CUDA_LIBRARY, RTLD_NOW | RTLD_LOCAL);
#endif
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

/* Loads the CUDA backend library: opts->knobs.cuda_lib ($SP_CUDA_LIB), else libsamepage_cuda.so
 * next to the executable (the build tree), else in the install tree
 * (open_installed), else the loader's search path. The library stays
 * loaded for the life of the process (unloading CUDA's runtime mid-process
 * is not worth the risk). *found tells whether a library was there at all
 * (auto mode stays quiet on machines that simply have none). The backend
 * it makes is registered: tables of other versions are refused. */
static sp_error_t *load_cuda(const sp_backend_options *opts, sp_backend **out, bool *found) {
  const char *env = opts->knobs.cuda_lib;
  void *lib = env && env[0] ? dlopen(env, RTLD_NOW | RTLD_LOCAL) : open_beside_exe(SP_BACKEND_CUDA_LIBRARY);
  if (!lib && !(env && env[0])) lib = open_installed();
  if (!lib && !(env && env[0])) lib = dlopen(SP_BACKEND_CUDA_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  *found = lib != NULL;
  if (!lib)
    return sp_error_new("cuda backend: cannot load %s: %s", env && env[0] ? env : SP_BACKEND_CUDA_LIBRARY, dlerror());
  sp_backend_new_fn make = (sp_backend_new_fn)dlsym(lib, SP_BACKEND_CUDA_SYMBOL);
  if (!make) return sp_error_new("cuda backend: %s is missing from the library", SP_BACKEND_CUDA_SYMBOL);
  sp_error_t *err = make(opts, out); /* it refuses options of another loading contract (opts->version) */
  return err ? err : registered(out);
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
  if (name && strcmp(name, "auto")) return sp_error_new("unknown backend \"%s\" (expected cpu, cuda or auto)", name);
  sp_error_t *err = load_cuda(opts, out, &found);
  if (!err) return NULL;
  if (found || opts->knobs.verbose) fprintf(stderr, "samepage: using the cpu backend (%s)\n", sp_error_message(err));
  sp_error_free(err);
  return cpu_new(opts, threads, out);
}
