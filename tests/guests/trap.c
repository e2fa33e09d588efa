/* trap.c: traps two calls deep, so the backtrace has named frames. */
#include <stdio.h>

__attribute__((noinline)) static void deepest_function(volatile int *p) {
  if (*p == 1) __builtin_trap();
}

__attribute__((noinline)) void middle_function(void) {
  volatile int one = 1;
  deepest_function(&one);
}

int main(void) {
  printf("about to trap\n");
  fflush(stdout);
  middle_function();
  return 0;
}
