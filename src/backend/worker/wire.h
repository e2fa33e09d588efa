/*
 * wire.h (private): the messages between a worker proxy (the host) and a
 * worker process (process isolation, worker.h).
 *
 * One stream socket per worker. Every request gets exactly one reply, in
 * order, so the host may send a submit and read its reply later (after the
 * wait that follows it): one round trip per list. File descriptors (the
 * region's memfd, granted files) travel as SCM_RIGHTS with a message.
 *
 * The handshake is versioned. The host's first request is HELLO, with its
 * SP_WIRE_VERSION in d; the worker answers every HELLO with its own in d,
 * and refuses (an error reply naming both, after which it ends) a host of
 * another version. The host refuses a worker that answers with another
 * version (0: a worker from before versioned handshakes) before it reads
 * anything else of the reply: the worker executable and the host come from
 * different builds. So that any two builds can at least compare versions,
 * HELLO's number and layout, and sp_wire_msg's, never change.
 */
#ifndef SP_WIRE_H
#define SP_WIRE_H

#include <stdbool.h>
#include <stdint.h>

/* The protocol's version: bump it with any change to a message, an op, a
 * payload's layout (sp_cmd, sp_backend_caps, sp_residency_stats,
 * sp_derived_desc, sp_wire_file_range) or the order of requests. */
#define SP_WIRE_VERSION 2 /* 2: HELLO carries the host's knobs */

typedef enum sp_wire_op {
  SP_WIRE_HELLO = 1,     /* payload: backend name, then (from version 2) a NUL and the host's
                            knobs as text (knobs.h, sp_knobs_format); a residency, b graphs, c threads, d SP_WIRE_VERSION.
                            Reply: caps + name; a device memory known, d the worker's SP_WIRE_VERSION */
  SP_WIRE_ADOPT,         /* fd: the memfd; a committed, b reserved, c the host's base (a hint). Reply: a base, b device base */
  SP_WIRE_GROW,          /* a committed */
  SP_WIRE_SUBMIT,        /* n commands in the payload; none and c = 1: the same list as the last one */
  SP_WIRE_WAIT,          /* reply: n derived layouts made meanwhile (sp_derived_desc) in the payload, their fds */
  SP_WIRE_FREEZE,        /* a addr, b len, c identity; fd: a copy of those bytes another worker made.
                            Reply fd: the copy made here, exported (vmm.h) */
  SP_WIRE_FLUSH,         /* a addr, b len */
  SP_WIRE_DEVICE_LOCAL,  /* a addr, b len */
  SP_WIRE_SYNC,          /* a addr, b len */
  SP_WIRE_LOCAL_ZERO,    /* a addr, b len. Reply: a done */
  SP_WIRE_FILE_RANGES,   /* n ranges (sp_wire_file_range) in the payload, a done; fds: the files */
  SP_WIRE_PUSH,          /* a addr; payload: the host's bytes there (written pages of a file range) */
  SP_WIRE_RESIDENCY,     /* reply payload: sp_residency_stats */
  SP_WIRE_DEVICE_MEMORY, /* reply: a used, b total, c known */
  SP_WIRE_DERIVED,       /* n derived layouts (sp_derived_desc) another worker made, in the payload; fds: theirs */
  SP_WIRE_OP_END
} sp_wire_op;

/* Reply codes, in sp_wire_msg.op of a reply. */
enum { SP_WIRE_OK = 0, SP_WIRE_ERROR = 1, SP_WIRE_LOST = 2 /* error, and the worker is ending */ };

typedef struct sp_wire_msg {
  uint32_t op;      /* request: sp_wire_op; reply: SP_WIRE_OK/ERROR/LOST */
  uint32_t n;       /* count of commands or file ranges */
  uint64_t a, b, c; /* arguments, or reply values */
  uint64_t d;       /* HELLO: the protocol version; ADOPT and GROW: the view's host budget (backend.h) */
  uint64_t payload; /* bytes that follow (a reply's error message, without NUL) */
} sp_wire_msg;

/* A file range in SP_WIRE_FILE_RANGES: fd_index into the message's fds. */
typedef struct sp_wire_file_range {
  uint64_t addr, len, file_offset;
  int32_t fd_index; /* -1: no file (a range about to be mapped) */
  uint32_t pad;
} sp_wire_file_range;

#define SP_WIRE_MAX_FDS 64
#define SP_WIRE_MAX_PAYLOAD ((uint64_t)256 << 20)

/* Sends a message, its payload and fds. false (errno set) if the peer is gone. */
bool sp_wire_send(int sock, const sp_wire_msg *m, const void *payload, const int *fds, int nfds);

/* Receives a message; *payload is malloc'd (NULL when none), fds received
 * go to fds (at most SP_WIRE_MAX_FDS; extra ones are closed). false (errno
 * set, 0 for a clean end) if the peer is gone or the message is malformed.
 * It first tries without sleeping for up to spin_us microseconds (0: block
 * at once): a blocked receiver costs a wake-up, tens of microseconds on a
 * busy machine, per message, against a decode step of a millisecond. */
bool sp_wire_recv(int sock, unsigned spin_us, sp_wire_msg *m, void **payload, int *fds, int *nfds);

#endif
