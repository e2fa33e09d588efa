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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "backend/worker/wire.h"
#include "backend/worker/worker.h"

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
  prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the host */
  signal(SIGINT, SIG_IGN);          /* a terminal's Ctrl-C is the host's to handle */
  signal(SIGPIPE, SIG_IGN);
  return sp_worker_serve((int)sock);
}
