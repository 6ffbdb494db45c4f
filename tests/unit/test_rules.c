/* test_rules.c: unit tests for redaction,
 * backoff, Retry-After and timestamp parsing. */
#include <ctype.h>
#include <math.h>

#include "check.h"
#include "rules.h"

static void test_redact(void) {
  char out[256];
  CHECK_STR(secret_redact("https://bearer:secret-token:abc@app.getcensus.com/x", out, sizeof out),
            "https://***@app.getcensus.com/x");
  CHECK_STR(secret_redact("token secret-token:abc123 and \"secret-token:zz\"", out, sizeof out),
            "token secret-token:*** and \"secret-token:***\"");
  CHECK_STR(secret_redact("secret-token:", out, sizeof out), "secret-token:");
  /* a token holding '/' (an invalid trigger URL) shows no tail */
  CHECK_STR(secret_redact("https://bearer:secret-token:ab/TAILSECRET@app.getcensus.com/x", out, sizeof out),
            "https://bearer:secret-token:***@app.getcensus.com/x");
  CHECK_STR(secret_redact("bad secret-token:ab/c?d#e end", out, sizeof out), "bad secret-token:*** end");
  /* redacting twice changes nothing, even when the text fills the buffer */
  CHECK_STR(secret_redact("a secret-token:***", out, sizeof "a secret-token:***"), "a secret-token:***");
  CHECK_STR(secret_redact("x secret-token:abcdefghijkl", out, 20), "x secret-token:***");
  CHECK(strstr(secret_redact("secret-token:abcdefghijklmnop", out, 16), "abc") == NULL);
}


static void test_backoff(void) {
  CHECK(backoff_delay(1, 1, 2, 90, 0, 0.5) == 1);
  CHECK(backoff_delay(2, 1, 2, 90, 0, 0.5) == 2);
  CHECK(backoff_delay(7, 1, 2, 90, 0, 0.5) == 64);
  CHECK(backoff_delay(8, 1, 2, 90, 0, 0.5) == 90);
  CHECK(backoff_delay(2000, 1, 2, 90, 0, 0.5) == 90);
  CHECK(fabs(backoff_delay(3, 1, 2, 90, 0.2, 0.0) - 3.2) < 1e-9);
  CHECK(fabs(backoff_delay(3, 1, 2, 90, 0.2, 0.999999) - 4.8) < 1e-5);
  CHECK(backoff_delay(0, 1, 2, 90, 0, 0.5) == 1);
}

static void test_retry_after_and_time(void) {
  double now = time_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(now == 784111777.0);
  CHECK(retry_after_seconds("120", now) == 120);
  CHECK(retry_after_seconds(" 1.5 ", now) == 1.5);
  CHECK(retry_after_seconds("Sun, 06 Nov 1994 08:50:07 GMT", now) == 30);
  CHECK(retry_after_seconds("Sun, 06 Nov 1994 08:00:00 GMT", now) == 0);
  CHECK(retry_after_seconds("soon", now) == -1);
  CHECK(retry_after_seconds("-3", now) == -1);
  CHECK(retry_after_seconds("12abc", now) == -1);
  CHECK(retry_after_seconds(NULL, now) == -1);
  CHECK(time_parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC") == -1);
  CHECK(time_parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT") == -1);
  CHECK(time_parse_iso8601("1994-11-06T08:49:37Z") == now);
  CHECK(time_parse_iso8601("1994-11-06T08:49:37.250Z") == now + 0.25);
  CHECK(time_parse_iso8601("1994-11-06T10:49:37+02:00") == now);
  CHECK(time_parse_iso8601("1994-11-06T03:49:37-0500") == now);
  CHECK(time_parse_iso8601("1994-11-06 08:49:37") == now);
  CHECK(time_parse_iso8601("1994-11-06T08:49") == -1);
  CHECK(time_parse_iso8601("1994-13-06T08:49:37Z") == -1);
  CHECK(time_parse_iso8601("1994-11-06T08:49:37Zjunk") == -1);
  CHECK(time_parse_iso8601(NULL) == -1);
}

/* The full dynamic-programming distance, to hold the banded one against. */
static size_t full_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b), d[40][40];
  for (size_t i = 0; i <= n; i++) d[i][0] = i;
  for (size_t j = 0; j <= m; j++) d[0][j] = j;
  for (size_t i = 1; i <= n; i++)
    for (size_t j = 1; j <= m; j++) {
      size_t v = d[i - 1][j - 1] + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      d[i][j] = v;
    }
  return d[n][m];
}

static void test_edit_distance(void) {
  CHECK(edit_distance_within("orders", 6, "Orders", 6, 2) == 0);
  CHECK(edit_distance_within("orders", 6, "ordres", 6, 2) == 2);
  CHECK(edit_distance_within("a", 1, "abcdef", 6, 2) == 3); /* lengths alone rule it out */
  CHECK(edit_distance_within("", 0, "", 0, 0) == 0);
  const char *words[] = {"", "a", "ab", "kitten", "sitting", "Saturday", "sunday", "orders sync",
                         "orders_sync", "sync orders", "flaw", "lawn", "abcdefghij", "jihgfedcba"};
  size_t n = sizeof words / sizeof *words;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++)
      for (size_t max = 0; max < 12; max++) {
        size_t full = full_distance(words[i], words[j]);
        size_t got = edit_distance_within(words[i], strlen(words[i]), words[j], strlen(words[j]), max);
        CHECK(got == (full <= max ? full : max + 1));
      }
}

int main(void) {
  test_edit_distance();
  test_redact();
  test_backoff();
  test_retry_after_and_time();
  return check_done();
}
