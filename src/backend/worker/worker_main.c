/*
 * worker_main.c: samepage-worker, the process that runs one actor's
 * backend binding under process isolation (backend/worker/worker.h). The
 * host starts it with the socket to itself as descriptor 3. The first
 * request on it is the handshake, which checks that host and worker speak
 * one protocol version (backend/worker/wire.h); `samepage-worker --version`
 * prints the version this one speaks.
 *
 * The worker reads no environment variable: the host's settings (knobs.h)
 * come with the handshake, and the backend it creates is told it serves
 * one actor (sp_backend_options.worker_process).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/worker/wire.h"
#include "backend/worker/worker.h"

/* Never outlive the host. PR_SET_PDEATHSIG would fire when the *thread*
 * that spawned this worker ends (in a server, the connection thread that
 * started a conversation, long before the host), so a thread watches for
 * the host process itself to go: this process is then handed to another
 * parent. A host that dies while the worker waits on the socket is also
 * seen there (end of file). */
static pid_t host_pid;

static void *watch_host(void *unused) {
  (void)unused;
  for (;;) {
    if (getppid() != host_pid) _exit(0);
    usleep(200 * 1000);
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--version")) {
    printf("samepage-worker: protocol version %u\n", SP_WIRE_VERSION);
    return 0;
  }
  char *end = NULL;
  long sock = argc == 2 ? strtol(argv[1], &end, 10) : -1;
  if (sock < 0 || !end || *end) {
    fprintf(stderr, "samepage-worker: started by samepage for process isolation, not by hand (protocol version %u)\n",
            SP_WIRE_VERSION);
    return 2;
  }
  host_pid = getppid();
  pthread_t watcher;
  if (pthread_create(&watcher, NULL, watch_host, NULL) == 0) pthread_detach(watcher);
  signal(SIGINT, SIG_IGN);          /* a terminal's Ctrl-C is the host's to handle */
  signal(SIGPIPE, SIG_IGN);
  return sp_worker_serve((int)sock);
}
