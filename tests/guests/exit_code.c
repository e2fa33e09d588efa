/* exit_code.c: exits with the status given as argv[1]; prints its args. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  for (int i = 0; i < argc; i++) printf("arg[%d]=%s\n", i, argv[i]);
  return argc > 1 ? atoi(argv[1]) : 0;
}
