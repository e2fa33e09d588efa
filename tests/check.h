/* check.h: a minimal test harness. CHECK counts failures and keeps going;
 * CHECK_DONE prints a summary and returns the exit status from main. */
#ifndef SP_TEST_CHECK_H
#define SP_TEST_CHECK_H

#include <stdio.h>

static int check_failures, check_total;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    check_total++;                                                        \
    if (!(cond)) {                                                        \
      check_failures++;                                                   \
      printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);              \
      printf(__VA_ARGS__);                                                \
      printf("\n");                                                       \
    }                                                                     \
  } while (0)

#define CHECK_DONE()                                                      \
  (printf("%d/%d checks passed\n", check_total - check_failures, check_total), \
   check_failures ? 1 : 0)

#endif
