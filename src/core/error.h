/*
 * error.h: the owned error object returned by fallible samepage functions.
 *
 * Following Wasmtime's C API, a fallible call returns `sp_error_t *`: NULL on
 * success, otherwise an error the caller owns and frees with sp_error_free.
 */
#ifndef SP_ERROR_INTERNAL_H
#define SP_ERROR_INTERNAL_H

#include "samepage.h"

/* Creates an error with a printf-style message. Never returns NULL: on
 * allocation failure it returns a static "out of memory" error that
 * sp_error_free recognises. */
sp_error_t *sp_error_new(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Creates an error that also carries an sp_status for the guest (e.g. an
 * index found out of range while a command ran: SP_E_BOUNDS). */
sp_error_t *sp_error_with_status(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Creates an error of a given kind (samepage.h). */
sp_error_t *sp_error_with_kind(sp_error_kind_t kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets err's kind; returns err (NULL stays NULL). sp_error_wrap keeps the
 * cause's kind. */
sp_error_t *sp_error_set_kind(sp_error_t *err, sp_error_kind_t kind);

/* The status an error carries, or 0 when it carries none. */
int sp_error_status(const sp_error_t *err);

/* Creates an error whose message is `prefix: <cause's message>` and frees
 * `cause`. */
sp_error_t *sp_error_wrap(sp_error_t *cause, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
