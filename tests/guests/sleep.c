/* sleep.c: sleeps argv[1] milliseconds (WASI poll_oneoff: the thread waits,
 * using no CPU), prints "slept", exits 0. The CPU-time limit must let it
 * finish where the same wall-clock limit would stop it. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  long ms = argc > 1 ? atol(argv[1]) : 100;
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
  puts("slept");
  return 0;
}
