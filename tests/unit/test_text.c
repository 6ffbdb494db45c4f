/* test_text.c: unit tests for URL redaction and header-line parsing. */
#include "check.h"
#include "text.h"

static void test_redact(void) {
  char out[256];
  CHECK_STR(url_redact("https://bearer:secret-token:abc@app.getcensus.com/api/v1/syncs/1/trigger", out, sizeof out),
            "https://***@app.getcensus.com/api/v1/syncs/1/trigger");
  CHECK_STR(url_redact("http://127.0.0.1:8080/a?b=c", out, sizeof out), "http://127.0.0.1:8080/a?b=c");
  CHECK_STR(url_redact("http://u:p@h/x@y", out, sizeof out), "http://***@h/x@y");
  CHECK_STR(url_redact("http://u:p@q@h/", out, sizeof out), "http://***@h/");
  CHECK_STR(url_redact("no-scheme:x@host", out, sizeof out), "***@host");
  CHECK_STR(url_redact("http://host?q=a@b", out, sizeof out), "http://host?q=a@b");
  CHECK_STR(url_redact("http://u:secret@host/", out, 10), "http://**");
  CHECK(strstr(url_redact("https://a:secret-token:XYZ@h/", out, 12), "XYZ") == NULL);
  CHECK_STR(url_redact("", out, sizeof out), "");
}

static void test_headers(void) {
  const char block[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                       "X-Empty:\r\n  folded\r\nbroken line\r\nRetry-After :  7 \r\n\r\n";
  const char *p = block, *end = block + sizeof block - 1;
  header_line h;
  char name[64], value[64];
  CHECK(header_next(&p, end, &h));
  snprintf(name, sizeof name, "%.*s", (int)h.name_len, h.name);
  snprintf(value, sizeof value, "%.*s", (int)h.value_len, h.value);
  CHECK_STR(name, "Content-Type");
  CHECK_STR(value, "application/json");
  CHECK(header_next(&p, end, &h));
  CHECK(h.name_len == 7 && h.value_len == 0);
  CHECK(header_next(&p, end, &h));
  snprintf(name, sizeof name, "%.*s", (int)h.name_len, h.name);
  snprintf(value, sizeof value, "%.*s", (int)h.value_len, h.value);
  CHECK_STR(name, "Retry-After");
  CHECK_STR(value, "7");
  CHECK(!header_next(&p, end, &h));
  const char *none = "";
  CHECK(!header_next(&none, none, &h));
  const char noeol[] = "A: b";
  p = noeol;
  CHECK(header_next(&p, noeol + 4, &h) && h.value_len == 1);
}

static void test_duplicate_keys(void) {
  char key[32];
  const char *twice = "{\"data\":{\"canceled\":false,\"x\":1,\"canceled\":true}}";
  CHECK(json_duplicate_key(twice, strlen(twice), key, sizeof key));
  CHECK_STR(key, "canceled");
  const char *apart = "{\"a\":{\"k\":1},\"b\":{\"k\":2},\"k\":[{\"k\":1},{\"k\":2}]}";
  CHECK(!json_duplicate_key(apart, strlen(apart), key, sizeof key));
  const char *in_values = "{\"a\":\"a\",\"b\":[\"a\",\"a\"],\"c\":\"\\\"a\"}";
  CHECK(!json_duplicate_key(in_values, strlen(in_values), key, sizeof key));
  const char *top = "{\"a\":1,\"a\":2}";
  CHECK(json_duplicate_key(top, strlen(top), key, sizeof key));
  CHECK(!json_duplicate_key("{\"a\":", 5, key, sizeof key)); /* cut off: the decoder judges */
  CHECK(!json_duplicate_key("", 0, key, sizeof key));
}

static void printable_to(void *data, const char *bytes, size_t n) {
  strncat((char *)data, bytes, n);
}

static void test_printable(void) {
  char out[128] = "";
  text_printable("a\0b\x1b[1m\tc\n", 10, 100, printable_to, out);
  CHECK_STR(out, "a\\x00b\\x1b[1m\tc\n");
  out[0] = '\0';
  text_printable("abcdef", 6, 3, printable_to, out);
  CHECK_STR(out, "abc [... 3 bytes cut]");
}

static void test_split(void) {
  const char *url = "https://u:p@q@h.example:8443/a@b?c#d";
  url_parts u = url_split(url);
  CHECK(u.authority == url + 8);
  CHECK(u.hostport_len == 14 && strncmp(u.hostport, "h.example:8443", 14) == 0);
  u = url_split("http://[::1]:80?x@y");
  CHECK(u.hostport_len == 8 && strncmp(u.hostport, "[::1]:80", 8) == 0);
  u = url_split("host");
  CHECK(u.hostport_len == 4 && u.authority == u.hostport);
}

static void test_json_string(void) {
  char out[256] = "";
  text_json_string("a\"b\\c\n\t\x01\x7f", 9, printable_to, out);
  CHECK_STR(out, "\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\"");
  out[0] = '\0';
  /* valid UTF-8 stays; a stray byte, an overlong form, a surrogate and a cut
   * sequence become \u00XX per byte */
  text_json_string("\xc3\xa9\xe2\x82\xac\xff\xc0\xaf\xed\xa0\x80\xe2\x82", 13, printable_to, out);
  CHECK_STR(out, "\"\xc3\xa9\xe2\x82\xac\\u00ff\\u00c0\\u00af\\u00ed\\u00a0\\u0080\\u00e2\\u0082\"");
  out[0] = '\0';
  text_json_string("", 0, printable_to, out);
  CHECK_STR(out, "\"\"");
}

int main(void) {
  test_split();
  test_json_string();
  test_redact();
  test_headers();
  test_duplicate_keys();
  test_printable();
  return check_done();
}
