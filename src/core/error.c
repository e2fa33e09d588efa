/* error.c: heap-allocated, printf-formatted error messages. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sp_error {
  char *message;
  int status;           /* sp_status for the guest, 0 = none */
  sp_error_kind_t kind; /* SP_ERROR_OTHER: derived from the status */
};

static char oom_text[] = "out of memory";
static struct sp_error oom_error = {oom_text, 0, SP_ERROR_LIMIT};

/* Formats `fmt`; when `cause` is set the message becomes "<fmt>: <cause>". */
static sp_error_t *error_from_va(const char *cause, const char *fmt, va_list ap) {
  char body[1024];
  vsnprintf(body, sizeof body, fmt, ap);
  size_t len = strlen(body) + (cause ? strlen(cause) + 2 : 0) + 1;
  sp_error_t *err = malloc(sizeof *err);
  char *text = malloc(len);
  if (!err || !text) {
    free(err);
    free(text);
    return &oom_error;
  }
  if (cause)
    snprintf(text, len, "%s: %s", body, cause);
  else
    memcpy(text, body, len);
  err->message = text;
  err->status = 0;
  err->kind = SP_ERROR_OTHER;
  return err;
}

sp_error_t *sp_error_new(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sp_error_t *err = error_from_va(NULL, fmt, ap);
  va_end(ap);
  return err;
}

sp_error_t *sp_error_wrap(sp_error_t *cause, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sp_error_t *err = error_from_va(sp_error_message(cause), fmt, ap);
  va_end(ap);
  if (err != &oom_error) err->status = sp_error_status(cause), err->kind = cause ? cause->kind : SP_ERROR_OTHER;
  sp_error_free(cause);
  return err;
}

sp_error_t *sp_error_with_status(int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sp_error_t *err = error_from_va(NULL, fmt, ap);
  va_end(ap);
  if (err != &oom_error) err->status = status;
  return err;
}

sp_error_t *sp_error_with_kind(sp_error_kind_t kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sp_error_t *err = error_from_va(NULL, fmt, ap);
  va_end(ap);
  return sp_error_set_kind(err, kind);
}

sp_error_t *sp_error_set_kind(sp_error_t *err, sp_error_kind_t kind) {
  if (err && err != &oom_error) err->kind = kind;
  return err;
}

int sp_error_status(const sp_error_t *err) { return err ? err->status : 0; }

/* A guest status says what kind of failure it was: a limit, or a command
 * the guest got wrong; SP_E_BACKEND is the backend's own failure. */
sp_error_kind_t sp_error_kind(const sp_error_t *err) {
  if (!err) return SP_ERROR_OTHER;
  if (err->kind != SP_ERROR_OTHER) return err->kind;
  if (err->status == SP_E_LIMIT) return SP_ERROR_LIMIT;
  if (err->status < 0 && err->status != SP_E_BACKEND) return SP_ERROR_INVALID;
  return SP_ERROR_OTHER;
}

const char *sp_error_message(const sp_error_t *err) {
  return err ? err->message : "no error";
}

void sp_error_free(sp_error_t *err) {
  if (!err || err == &oom_error) return;
  free(err->message);
  free(err);
}
