/* fuzz_trigger_url.c: the trigger-URL grammar (rules.c) on any bytes. A URL
 * it accepts must name a positive sync id and a token inside the URL, and
 * redacting it must leave no token behind. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *url = malloc(size + 1);
  memcpy(url, data, size);
  url[size] = '\0';
  trigger_url t;
  if (trigger_url_parse(url, &t)) {
    if (t.sync_id <= 0 || t.token < url || t.token + t.token_len > url + strlen(url)) abort();
    char out[4096];
    if (strlen(url) < sizeof out) {
      secret_redact(url, out, sizeof out);
      if (strstr(out, "secret-token:") && !strstr(out, "secret-token:***") &&
          strstr(out, "secret-token:") == strstr(url, "secret-token:"))
        abort();
    }
  }
  free(url);
  return 0;
}
