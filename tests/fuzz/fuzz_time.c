/* fuzz_time.c: Retry-After and the two date forms (rules.c) on any bytes:
 * never a crash, never a negative or non-finite delay. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  double now = 1.7e9;
  double wait = retry_after_seconds(s, now);
  if (!(wait < 0) && !isfinite(wait)) abort();
  double a = time_parse_iso8601(s), b = time_parse_http_date(s);
  if (!isfinite(a) || !isfinite(b)) abort();
  double d = backoff_delay((int)(size % 40), 1.0, 2.0, 90.0, 0.2, size ? data[0] / 256.0 : 0);
  if (!(d >= 0 && d <= 90 * 1.2 + 1e-9)) abort();
  free(s);
  return 0;
}
