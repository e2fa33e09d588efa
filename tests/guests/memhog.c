/* memhog.c: allocates 1 MiB chunks until malloc fails or argv[1] MiB are
 * reached; prints the MiB obtained. Exits 0 when malloc failed cleanly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kept reachable so the compiler cannot elide the allocations. */
static char *volatile chunks[8192];

int main(int argc, char **argv) {
  int want = argc > 1 ? atoi(argv[1]) : 8192;
  int got = 0;
  for (; got < want && got < 8192; got++) {
    char *p = malloc(1 << 20);
    if (!p) break;
    memset(p, 1, 1 << 20);
    chunks[got] = p;
  }
  printf("allocated %d MiB\n", got);
  return got < want ? 0 : 1;
}
