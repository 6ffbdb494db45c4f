/* check.h: the smallest assertion kit for the C unit tests: CHECK records a
 * failure with its location, check_done() prints the summary and returns the
 * exit code. */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures, check_count;

#define CHECK(cond)                                                        \
  do {                                                                     \
    check_count++;                                                         \
    if (!(cond)) {                                                         \
      check_failures++;                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                      \
  } while (0)

#define CHECK_STR(got, want)                                               \
  do {                                                                     \
    check_count++;                                                         \
    if (strcmp((got), (want)) != 0) {                                      \
      check_failures++;                                                    \
      fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, \
              (got), (want));                                              \
    }                                                                      \
  } while (0)

static int check_done(void) {
  printf("%d passed, %d failed\n", check_count - check_failures, check_failures);
  return check_failures ? 1 : 0;
}

#endif
