/* fuzz_cli.c: the command-line parser (cli.c) on any arguments (the input
 * split at NUL bytes): it returns -1 or an exit code, never crashes, and a
 * flow it accepts is one of the arguments. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAX_ARGS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int null_fd = -1, saved_stderr = -1;
  if (null_fd < 0) { /* --help and usage errors print: not into the fuzzer's log */
    null_fd = open("/dev/null", O_WRONLY);
    dup2(null_fd, 1);
    saved_stderr = dup(2);
  }
  char *buf = malloc(size + 1);
  memcpy(buf, data, size);
  buf[size] = '\0';
  char *argv[MAX_ARGS + 2] = {"engine"};
  int argc = 1;
  for (size_t i = 0; i <= size && argc <= MAX_ARGS;) {
    argv[argc++] = buf + i;
    i += strlen(buf + i) + 1;
  }
  argv[argc] = NULL;
  options o;
  memset(&o, 0, sizeof o);
  o.level = LOG_INFO;
  o.progress = "auto";
  dup2(null_fd, 2);
  int rc = cli_parse(argc, argv, &o);
  dup2(saved_stderr, 2);
  if (rc < -1 || rc > 255) abort();
  if (rc == -1 && o.script && strcmp(o.script, "-") != 0) {
    int found = 0;
    for (int i = 1; i < argc; i++) found |= argv[i] == o.script;
    if (!found) abort();
  }
  free(buf);
  return 0;
}
