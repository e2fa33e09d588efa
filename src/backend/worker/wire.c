/* wire.c: framing of worker messages over a stream socket (wire.h). */
#include "backend/worker/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* recvmsg, first without sleeping for spin_us microseconds. */
static ssize_t recvmsg_spin(int sock, unsigned spin_us, struct msghdr *msg) {
  if (spin_us) {
    double until = now_us() + spin_us;
    do {
      ssize_t got = recvmsg(sock, msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
      if (got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) return got;
    } while (now_us() < until);
  }
  ssize_t got;
  do got = recvmsg(sock, msg, MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  return got;
}

static bool write_all(int sock, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len) {
    ssize_t n = send(sock, p, len, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n, len -= (size_t)n;
  }
  return true;
}

static bool read_all(int sock, void *buf, size_t len) {
  uint8_t *p = buf;
  while (len) {
    ssize_t n = recv(sock, p, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = 0;
      return false;
    }
    p += n, len -= (size_t)n;
  }
  return true;
}

bool sp_wire_send(int sock, const sp_wire_msg *m, const void *payload, const int *fds, int nfds) {
  if (nfds < 0 || nfds > SP_WIRE_MAX_FDS) {
    errno = EINVAL;
    return false;
  }
  struct iovec iov = {(void *)m, sizeof *m};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * SP_WIRE_MAX_FDS)];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (nfds) {
    memset(&control, 0, sizeof control);
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET, c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * (size_t)nfds);
  }
  ssize_t sent;
  do sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  if (sent <= 0) return false;
  /* The fds went with the first byte; the rest of the header is plain data. */
  if ((size_t)sent < sizeof *m && !write_all(sock, (const uint8_t *)m + sent, sizeof *m - (size_t)sent)) return false;
  return !m->payload || write_all(sock, payload, m->payload);
}

/* Takes the fds of one received control block. */
static void take_fds(struct msghdr *msg, int *fds, int *nfds) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      if (fds && *nfds < SP_WIRE_MAX_FDS) fds[(*nfds)++] = fd;
      else close(fd);
    }
  }
}

bool sp_wire_recv(int sock, unsigned spin_us, sp_wire_msg *m, void **payload, int *fds, int *nfds) {
  *payload = NULL;
  if (nfds) *nfds = 0;
  struct iovec iov = {m, sizeof *m};
  union {
    struct cmsghdr align;
    char buf[CMSG_SPACE(sizeof(int) * SP_WIRE_MAX_FDS)];
  } control;
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  ssize_t got = recvmsg_spin(sock, spin_us, &msg);
  if (got <= 0) {
    if (got == 0) errno = 0;
    return false;
  }
  take_fds(&msg, fds, nfds);
  if ((size_t)got < sizeof *m && !read_all(sock, (uint8_t *)m + got, sizeof *m - (size_t)got)) return false;
  if (!m->payload) return true;
  if (m->payload > SP_WIRE_MAX_PAYLOAD || !(*payload = malloc(m->payload))) {
    errno = EMSGSIZE;
    return false;
  }
  if (read_all(sock, *payload, m->payload)) return true;
  free(*payload);
  *payload = NULL;
  return false;
}
