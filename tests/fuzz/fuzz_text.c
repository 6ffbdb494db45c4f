/* fuzz_text.c: what text passes before it leaves the process (secrets.c,
 * text.c) on any bytes: a known secret never survives the scrub, printable
 * text has no control bytes but newline and tab. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secrets.h"
#include "text.h"

static void check_printable(void *data, const char *bytes, size_t n) {
  (void)data;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)bytes[i];
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) {
    secrets_add("secret-token:fuzz-known", 23);
    secrets_add("pat-fuzz-known-2", 16);
    ready = 1;
  }
  size_t len;
  char *out = secrets_scrub((const char *)data, size, &len);
  if (!out) return 0;
  if (memmem(out, len, "secret-token:fuzz-known", 23) || memmem(out, len, "pat-fuzz-known-2", 16))
    abort();
  free(out);
  text_printable((const char *)data, size, size % 4096, check_printable, NULL);
  char url[512];
  char *copy = strndup((const char *)data, size);
  url_redact(copy, url, sizeof url);
  free(copy);
  return 0;
}
