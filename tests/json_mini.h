/* json_mini.h: a minimal JSON reader for the test fixtures (header-only,
 * test code). Parses into a tree of jval; jget looks up object keys. */
#ifndef SP_TEST_JSON_MINI_H
#define SP_TEST_JSON_MINI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
  jtype t;
  double num;          /* J_NUM, J_BOOL */
  char *s;             /* J_STR (decoded, NUL-terminated) */
  size_t len;
  struct jval *items;  /* J_ARR, J_OBJ values */
  char **keys;         /* J_OBJ */
  size_t n;
} jval;

typedef struct jparser {
  const char *p, *end;
  bool bad;
} jparser;

static void jws(jparser *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')) j->p++;
}

static void put_utf8(char *o, size_t *k, uint32_t cp) {
  if (cp < 0x80) o[(*k)++] = (char)cp;
  else if (cp < 0x800) o[(*k)++] = (char)(0xc0 | cp >> 6), o[(*k)++] = (char)(0x80 | (cp & 63));
  else if (cp < 0x10000)
    o[(*k)++] = (char)(0xe0 | cp >> 12), o[(*k)++] = (char)(0x80 | (cp >> 6 & 63)),
    o[(*k)++] = (char)(0x80 | (cp & 63));
  else
    o[(*k)++] = (char)(0xf0 | cp >> 18), o[(*k)++] = (char)(0x80 | (cp >> 12 & 63)),
    o[(*k)++] = (char)(0x80 | (cp >> 6 & 63)), o[(*k)++] = (char)(0x80 | (cp & 63));
}

static uint32_t jhex4(jparser *j) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    char c = j->p < j->end ? *j->p++ : 0;
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) j->bad = true;
    v = v << 4 | (uint32_t)(d & 15);
  }
  return v;
}

/* Reads a string (the opening quote already consumed). */
static char *jstring(jparser *j, size_t *len) {
  char *o = malloc((size_t)(j->end - j->p) + 1);
  size_t k = 0;
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if (c != '\\') {
      o[k++] = c;
      continue;
    }
    c = j->p < j->end ? *j->p++ : 0;
    const char *map = strchr("\"\"\\\\//b\bf\fn\nr\rt\t", c);
    if (c == 'u') {
      uint32_t cp = jhex4(j);
      if (cp >= 0xd800 && cp < 0xdc00 && j->p + 6 <= j->end && j->p[0] == '\\' && j->p[1] == 'u') {
        j->p += 2;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (jhex4(j) - 0xdc00);
      }
      put_utf8(o, &k, cp);
    } else if (map && c && ((map - "\"\"\\\\//b\bf\fn\nr\rt\t") % 2) == 0) {
      o[k++] = map[1];
    } else {
      j->bad = true;
    }
  }
  if (j->p >= j->end) j->bad = true;
  else j->p++;
  o[k] = 0;
  *len = k;
  return o;
}

static void jvalue(jparser *j, jval *v, int depth);

static void jlist(jparser *j, jval *v, char close, bool obj, int depth) {
  size_t cap = 8;
  v->items = malloc(cap * sizeof *v->items);
  v->keys = obj ? malloc(cap * sizeof *v->keys) : NULL;
  jws(j);
  if (j->p < j->end && *j->p == close) {
    j->p++;
    return;
  }
  while (!j->bad) {
    if (v->n == cap) {
      cap *= 2;
      v->items = realloc(v->items, cap * sizeof *v->items);
      if (obj) v->keys = realloc(v->keys, cap * sizeof *v->keys);
    }
    jws(j);
    if (obj) {
      size_t kl;
      if (j->p >= j->end || *j->p++ != '"') return (void)(j->bad = true);
      v->keys[v->n] = jstring(j, &kl);
      jws(j);
      if (j->p >= j->end || *j->p++ != ':') return (void)(j->bad = true);
    }
    jvalue(j, &v->items[v->n++], depth + 1);
    jws(j);
    char c = j->p < j->end ? *j->p++ : 0;
    if (c == close) return;
    if (c != ',') j->bad = true;
  }
}

static void jvalue(jparser *j, jval *v, int depth) {
  memset(v, 0, sizeof *v);
  jws(j);
  if (j->p >= j->end || depth > 64) return (void)(j->bad = true);
  char c = *j->p;
  if (c == '{' || c == '[') {
    j->p++;
    v->t = c == '{' ? J_OBJ : J_ARR;
    jlist(j, v, c == '{' ? '}' : ']', c == '{', depth);
  } else if (c == '"') {
    j->p++;
    v->t = J_STR;
    v->s = jstring(j, &v->len);
  } else if (!strncmp(j->p, "true", 4) || !strncmp(j->p, "false", 5)) {
    v->t = J_BOOL;
    v->num = c == 't';
    j->p += c == 't' ? 4 : 5;
  } else if (!strncmp(j->p, "null", 4)) {
    j->p += 4;
  } else {
    char *e;
    v->t = J_NUM;
    v->num = strtod(j->p, &e);
    if (e == j->p) j->bad = true;
    j->p = e;
  }
}

static void jfree(jval *v) {
  for (size_t i = 0; i < v->n; i++) {
    jfree(&v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items), free(v->keys), free(v->s);
}

static const jval *jget(const jval *o, const char *key) {
  if (!o || o->t != J_OBJ) return NULL;
  for (size_t i = 0; i < o->n; i++)
    if (!strcmp(o->keys[i], key)) return &o->items[i];
  return NULL;
}

/* Decodes a hex string into a malloc'd buffer. */
#endif
