/*
 * clock.h: the one monotonic clock the runtime, the backends and the CLI
 * time things with.
 */
#ifndef SP_CLOCK_H
#define SP_CLOCK_H

#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC (an arbitrary origin: take differences). */
static inline double sp_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

#endif
