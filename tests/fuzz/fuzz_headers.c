/* fuzz_headers.c: HTTP header-line parsing and the JSON duplicate-key scan
 * (text.c) on any bytes: every line it returns lies inside the input,
 * names are not empty, nothing crashes. */
#include <stdint.h>
#include <stdlib.h>

#include "text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  header_line line;
  while (header_next(&p, end, &line)) {
    const char *start = (const char *)data;
    if (line.name < start || line.name + line.name_len > end || line.name_len == 0) abort();
    if (line.value < start || line.value + line.value_len > end) abort();
    if (p > end) abort();
  }
  char key[64];
  json_duplicate_key((const char *)data, size, key, sizeof key); /* any bytes: no crash */
  return 0;
}
