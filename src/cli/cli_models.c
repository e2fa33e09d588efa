/*
 * cli_models.c: the models samepage knows by a short name (`--model
 * gemma3-270m`), fetched into the model cache by scripts/fetch-model.sh
 * NAME, and where that cache is.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/knobs.h"

/* Short name -> file name in the cache; the first is the default model. */
static const struct {
  const char *name, *file;
} known_models[] = {
    {"smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"},
    {"gemma3-270m", "gemma-3-270m-Q4_K_M.gguf"},
};

/* path = the model cache's `file` (SAMEPAGE_CACHE, else XDG, else HOME). */
static void cache_path(const char *file, char *path, size_t cap) {
  const struct sp_knobs *k = sp_cli_knobs();
  const char *cache = k->cache, *xdg = k->xdg_cache_home, *home = k->home;
  if (cache && *cache) snprintf(path, cap, "%s/models/%s", cache, file);
  else if (xdg && *xdg) snprintf(path, cap, "%s/samepage/models/%s", xdg, file);
  else snprintf(path, cap, "%s/.cache/samepage/models/%s", home ? home : ".", file);
}

const char *sp_cli_default_model(void) {
  static char path[4096];
  if (sp_cli_knobs()->model) return sp_cli_knobs()->model;
  cache_path(known_models[0].file, path, sizeof path);
  return path;
}

const char *sp_cli_model_path(const char *given, const char **short_name) {
  static char path[4096];
  *short_name = NULL;
  if (!access(given, F_OK)) return given; /* a file of that name wins */
  for (size_t i = 0; i < sizeof known_models / sizeof known_models[0]; i++) {
    if (strcmp(given, known_models[i].name)) continue;
    *short_name = known_models[i].name;
    cache_path(known_models[i].file, path, sizeof path);
    return path;
  }
  return given;
}
