/*
 * test_knobs.c: the knob table (src/core/knobs.h) against docs/KNOBS.md, both
 * ways, and the one parsing rule per kind.
 *
 * usage: test_knobs DOCS/KNOBS.md
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "core/knobs.h"

/* ---- docs/KNOBS.md against the table ---- */

static const char *kind_name(sp_knob_kind k) {
  return k == SP_KNOB_FLAG ? "flag" : k == SP_KNOB_INT ? "int" : "string";
}

static const char *use_name(sp_knob_use u) {
  return u == SP_KNOB_FOR_USERS ? "no" : u == SP_KNOB_MEASUREMENT ? "measurement" : "test builds only";
}

/* The table's row for name, or NULL. */
static const sp_knob_info *find(const char *name) {
  size_t n;
  const sp_knob_info *t = sp_knobs_table(&n);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(t[i].name, name)) return &t[i];
  return NULL;
}

/* Cell `col` (0-based) of a "| a | b | ..." row, trimmed, into out. */
static void cell(const char *row, int col, char *out, size_t cap) {
  const char *p = row;
  for (int c = 0; c < col && p; c++) p = strchr(p + 1, '|');
  out[0] = '\0';
  if (!p) return;
  const char *end = strchr(p + 1, '|');
  while (*++p == ' ') {}
  size_t len = end ? (size_t)(end - p) : strlen(p);
  while (len && p[len - 1] == ' ') len--;
  snprintf(out, cap, "%.*s", (int)len, p);
}

static void check_docs(const char *path) {
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "open %s", path);
  if (!f) return;
  size_t n;
  const sp_knob_info *t = sp_knobs_table(&n);
  bool *seen = calloc(n, sizeof *seen);
  char line[1024];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "| `", 3)) continue; /* a knob's row starts with its name in backticks */
    char name[128], kind[32], def[256], use[64];
    const char *end = strchr(line + 3, '`');
    snprintf(name, sizeof name, "%.*s", end ? (int)(end - line - 3) : 0, line + 3);
    const sp_knob_info *k = find(name);
    CHECK(k != NULL, "docs/KNOBS.md documents %s, which the table lacks", name);
    if (!k) continue;
    seen[k - t] = true;
    cell(line, 1, kind, sizeof kind), cell(line, 2, def, sizeof def), cell(line, 4, use, sizeof use);
    CHECK(!strcmp(use, use_name(k->use)), "%s: docs say use \"%s\", the table \"%s\"", name, use, use_name(k->use));
    CHECK(!strcmp(kind, kind_name(k->kind)), "%s: docs say kind %s, the table %s", name, kind, kind_name(k->kind));
    CHECK(!strcmp(def, k->def), "%s: docs say default \"%s\", the table \"%s\"", name, def, k->def);
  }
  fclose(f);
  for (size_t i = 0; i < n; i++) CHECK(seen[i], "%s is in the table but not in docs/KNOBS.md", t[i].name);
  free(seen);
}

/* The table's flag defaults agree with sp_knobs_defaults. */
static void check_defaults(void) {
  size_t n;
  const sp_knob_info *t = sp_knobs_table(&n);
  struct sp_knobs d;
  sp_knobs_defaults(&d);
  for (size_t i = 0; i < n; i++) {
    if (t[i].kind != SP_KNOB_FLAG) continue;
    bool on = *(const bool *)((const char *)&d + t[i].offset);
    CHECK(!strcmp(t[i].def, on ? "on" : "off"), "%s: default %s, sp_knobs_defaults %s", t[i].name, t[i].def,
          on ? "on" : "off");
  }
}

/* ---- parsing ---- */

/* A fake environment: NULL-terminated name, value pairs. */
static const char *lookup(const char *name, void *ctx) {
  for (const char **p = ctx; *p; p += 2)
    if (!strcmp(p[0], name)) return p[1];
  return NULL;
}

static sp_error_t *parse(struct sp_knobs *k, const char *name, const char *value) {
  const char *env[] = {name, value, NULL};
  return sp_knobs_parse(k, lookup, env);
}

static void check_flag(const char *name, size_t offset, const char *value, bool want) {
  struct sp_knobs k;
  sp_error_t *err = parse(&k, name, value);
  bool got = *(const bool *)((const char *)&k + offset);
  CHECK(!err && got == want, "%s=%s%s%s: %s, want %s", name, value ? "\"" : "", value ? value : "(unset)",
        value ? "\"" : "", got ? "on" : "off", want ? "on" : "off");
  sp_error_free(err);
}

static void check_flags(void) {
  size_t at = offsetof(struct sp_knobs, cuda_no_fusion);
  check_flag("SP_CUDA_NO_FUSION", at, NULL, false);
  check_flag("SP_CUDA_NO_FUSION", at, "", false);
  check_flag("SP_CUDA_NO_FUSION", at, "0", false);
  check_flag("SP_CUDA_NO_FUSION", at, "1", true);
  check_flag("SP_CUDA_NO_FUSION", at, "yes", true);
  at = offsetof(struct sp_knobs, no_file_maps); /* once on when set at all: "0" is off now */
  check_flag("SP_NO_FILE_MAPS", at, "0", false);
  if (SP_TEST_HOOKS_BUILT) check_flag("SP_NO_FILE_MAPS", at, "1", true);
  at = offsetof(struct sp_knobs, cuda_repack_q8); /* a flag whose default is on */
  check_flag("SP_CUDA_REPACK_Q8", at, NULL, true);
  check_flag("SP_CUDA_REPACK_Q8", at, "", false);
  check_flag("SP_CUDA_REPACK_Q8", at, "0", false);
  check_flag("SP_CUDA_REPACK_Q8", at, "1", true);
}

static void check_int(const char *name, const char *value, int64_t want) {
  struct sp_knobs k;
  sp_error_t *err = parse(&k, name, value);
  const sp_knob_info *info = find(name);
  int64_t got = info ? *(const int64_t *)((const char *)&k + info->offset) : -99;
  CHECK(!err && got == want, "%s=\"%s\": %lld, want %lld (%s)", name, value ? value : "(unset)", (long long)got,
        (long long)want, err ? sp_error_message(err) : "no error");
  sp_error_free(err);
}

static void check_bad_int(const char *name, const char *value) {
  struct sp_knobs k;
  sp_error_t *err = parse(&k, name, value);
  CHECK(err && strstr(sp_error_message(err), name) && sp_error_kind(err) == SP_ERROR_INVALID,
        "%s=\"%s\" is refused, naming the knob: %s", name, value, err ? sp_error_message(err) : "accepted");
  sp_error_free(err);
}

static void check_ints(void) {
  check_int("SP_CUDA_DEVICE", NULL, 0);
  check_int("SP_CUDA_DEVICE", "", 0);
  check_int("SP_CUDA_DEVICE", "1", 1);
  check_int("SP_CUDA_RESIDENT_MAX_MB", NULL, -1);
  check_int("SP_CUDA_RESIDENT_MAX_MB", "0", 0);
  check_int("SP_CUDA_TIMING", "2", 2);
  check_bad_int("SP_CUDA_DEVICE", "abc");
  check_bad_int("SP_CUDA_DEVICE", "1x");
  check_bad_int("SP_CUDA_DEVICE", "-1");
  check_bad_int("SP_CUDA_TIMING", "3");
  check_bad_int("SP_CUDA_INJECT_FAULT", "99999999999999999999999");
}

/* Test hooks work in a test build; elsewhere any value but the default is
 * refused, naming the knob, and the default is still accepted. */
static void check_test_hooks(void) {
  size_t n;
  const sp_knob_info *t = sp_knobs_table(&n);
  int hooks = 0;
  for (size_t i = 0; i < n; i++) {
    if (t[i].use != SP_KNOB_TEST_HOOK) continue;
    hooks++;
    struct sp_knobs k;
    sp_error_t *err = parse(&k, t[i].name, "1");
    if (SP_TEST_HOOKS_BUILT)
      CHECK(!err, "%s=1 is accepted in a test build: %s", t[i].name, sp_error_message(err));
    else
      CHECK(err && strstr(sp_error_message(err), t[i].name) && strstr(sp_error_message(err), "test builds") &&
                sp_error_kind(err) == SP_ERROR_INVALID,
            "%s=1 is refused without the test hooks: %s", t[i].name, err ? sp_error_message(err) : "accepted");
    sp_error_free(err);
    err = parse(&k, t[i].name, "0");
    CHECK(!err, "%s=0 (its default) is accepted in every build: %s", t[i].name, sp_error_message(err));
    sp_error_free(err);
  }
  CHECK(hooks == 3, "three test hooks (fault injection, sync-each, no file maps), found %d", hooks);
  printf("test hooks %s in this build\n", SP_TEST_HOOKS_BUILT ? "compiled" : "not compiled");
}

static void check_strings(void) {
  struct sp_knobs k;
  sp_error_t *err = parse(&k, "SP_CPU_SIMD", "");
  CHECK(!err && k.cpu_simd == NULL, "SP_CPU_SIMD=\"\": the default");
  sp_error_free(err);
  err = parse(&k, "SP_CPU_SIMD", "avx2");
  CHECK(!err && k.cpu_simd && !strcmp(k.cpu_simd, "avx2"), "SP_CPU_SIMD=avx2");
  sp_error_free(err);
}

/* The text form a worker receives reads back to the same values. */
static void check_text(void) {
  const char *env[] = {"SP_CUDA_NO_FUSION", "1", "SP_CUDA_REPACK_Q8", "0", "SP_CUDA_MMV_WPR", "2",
                       "SP_CUDA_LIB", "/x/libsamepage_cuda.so", NULL};
  struct sp_knobs k, back;
  sp_error_t *err = sp_knobs_parse(&k, lookup, env);
  char text[1024];
  size_t len = sp_knobs_format(&k, text, sizeof text);
  if (!err) err = sp_knobs_parse_text(&back, text);
  CHECK(!err && len < sizeof text && back.cuda_no_fusion && !back.cuda_repack_q8 && back.cuda_mmv_wpr == 2 &&
            back.cuda_lib && !strcmp(back.cuda_lib, "/x/libsamepage_cuda.so") && !back.cuda_no_flash &&
            back.cuda_resident_max_mb == -1,
        "knobs survive their text form: %s", err ? sp_error_message(err) : text);
  sp_error_free(err);
  char bad[] = "SP_NO_SUCH_KNOB=1\n";
  err = sp_knobs_parse_text(&back, bad);
  CHECK(err && strstr(sp_error_message(err), "SP_NO_SUCH_KNOB"), "an unknown knob in the text is refused");
  sp_error_free(err);
  char empty[] = "";
  err = sp_knobs_parse_text(&back, empty);
  CHECK(!err && back.cuda_repack_q8 && !back.cuda_no_fusion, "no text: every default");
  sp_error_free(err);
}

int main(int argc, char **argv) {
  if (argc != 2) return printf("usage: test_knobs DOCS/KNOBS.md\n"), 2;
  check_docs(argv[1]);
  check_defaults();
  check_flags();
  check_ints();
  check_test_hooks();
  check_strings();
  check_text();
  return CHECK_DONE();
}
