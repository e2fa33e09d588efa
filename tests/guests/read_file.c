/* read_file.c: prints the file named by argv[1]; exit 3 if it cannot be opened. */
#include <stdio.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  FILE *f = fopen(argv[1], "r");
  if (!f) {
    perror(argv[1]);
    return 3;
  }
  char buf[256];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
  fclose(f);
  return 0;
}
