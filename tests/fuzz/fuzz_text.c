/* fuzz_text.c: what text passes before it leaves the process (secrets.c,
 * text.c) on any bytes: a known secret never survives the scrub, text the
 * quick check finds clean is what the scrub gives back, printable
 * text has no control bytes but newline and tab, a JSON string (the JSON
 * log format) is quoted, escaped and valid UTF-8. */
#include <stdint.h>
#include <stdio.h>
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

static void write_to(void *data, const char *bytes, size_t n) { fwrite(bytes, 1, n, data); }

/* Every byte of a JSON string is printable ASCII or part of a well-formed
 * UTF-8 sequence; every backslash starts a known escape. */
static void check_json(const char *s, size_t n) {
  for (size_t i = 1; i + 1 < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || (c == '"')) abort();
    if (c == '\\') {
      i++;
      if (!strchr("\"\\nt", s[i]) && s[i] != 'u') abort();
      continue;
    }
    if (c >= 0x80) {
      size_t need = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
      if (c < 0xc2 || c > 0xf4) abort();
      for (size_t k = 1; k <= need; k++)
        if (i + k + 1 >= n || ((unsigned char)s[i + k] & 0xc0) != 0x80) abort();
      i += need;
    }
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
  /* text found clean is exactly what the scrub gives back */
  char *z = malloc(size + 1);
  if (z) {
    memcpy(z, data, size);
    z[size] = '\0';
    if (secrets_clean(z, size) && (len != size || memcmp(out, z, size) != 0)) abort();
    free(z);
  }
  free(out);
  text_printable((const char *)data, size, size % 4096, check_printable, NULL);
  /* a JSON string: quoted, no raw control byte, valid UTF-8 throughout */
  size_t json_len = 0;
  char *json = NULL;
  FILE *mem = open_memstream(&json, &json_len);
  if (mem) {
    text_json_string((const char *)data, size, write_to, mem);
    fclose(mem);
    if (json_len < 2 || json[0] != '"' || json[json_len - 1] != '"') abort();
    check_json(json, json_len);
    free(json);
  }
  char url[512];
  char *copy = strndup((const char *)data, size);
  url_redact(copy, url, sizeof url);
  free(copy);
  return 0;
}
