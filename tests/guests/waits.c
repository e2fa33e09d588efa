/* waits.c: a guest that waits in WASI host calls, for the wall-clock limit
 * (test_timeout_cli.sh). argv[1] picks the wait:
 *   stdin        reads stdin to its end, prints "read N bytes"
 *   abs MS       clock_nanosleep on CLOCK_MONOTONIC until now + MS (absolute)
 *   clocks MS    one poll_oneoff on two relative clocks, MS and 2*MS: prints
 *                the userdata of the events (only the first is due)
 *   poll MS      one poll_oneoff on a relative clock of MS and stdin being
 *                readable: prints the userdata of the events (Wasmtime's
 *                own poll_oneoff answers this one)
 * then "done" and exit 0. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

static int read_stdin(void) {
  char buf[4096];
  long total = 0;
  ssize_t n;
  while ((n = read(0, buf, sizeof buf)) > 0) total += n;
  printf("read %ld bytes\n", total);
  return 0;
}

static int sleep_abs(long ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  int early = now.tv_sec < until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec < until.tv_nsec);
  printf("abs rc=%d early=%d\n", rc, early);
  return rc || early;
}

static void clock_sub(__wasi_subscription_t *s, uint64_t userdata, uint64_t ns) {
  memset(s, 0, sizeof *s);
  s->userdata = userdata;
  s->u.tag = __WASI_EVENTTYPE_CLOCK;
  s->u.u.clock.id = __WASI_CLOCKID_MONOTONIC;
  s->u.u.clock.timeout = ns;
}

static int poll(long ms, int with_stdin) {
  __wasi_subscription_t subs[2];
  __wasi_event_t events[2];
  clock_sub(&subs[0], 11, (uint64_t)ms * 1000000u);
  if (with_stdin) {
    memset(&subs[1], 0, sizeof subs[1]);
    subs[1].userdata = 22;
    subs[1].u.tag = __WASI_EVENTTYPE_FD_READ;
    subs[1].u.u.fd_read.file_descriptor = 0;
  } else {
    clock_sub(&subs[1], 22, (uint64_t)ms * 2000000u);
  }
  __wasi_size_t n = 0;
  __wasi_errno_t err = __wasi_poll_oneoff(subs, events, 2, &n);
  printf("poll errno=%d events=%u:", err, (unsigned)n);
  for (__wasi_size_t i = 0; i < n; i++)
    printf(" %llu/%d/%d", (unsigned long long)events[i].userdata, events[i].type, events[i].error);
  printf("\n");
  return err != 0;
}

int main(int argc, char **argv) {
  const char *what = argc > 1 ? argv[1] : "stdin";
  long ms = argc > 2 ? atol(argv[2]) : 100;
  int rc = 2;
  if (!strcmp(what, "stdin")) rc = read_stdin();
  else if (!strcmp(what, "abs")) rc = sleep_abs(ms);
  else if (!strcmp(what, "clocks")) rc = poll(ms, 0);
  else if (!strcmp(what, "poll")) rc = poll(ms, 1);
  puts("done");
  return rc;
}
