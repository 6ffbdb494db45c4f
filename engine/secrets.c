/* secrets.c: the secret values this process knows (provider tokens from the
 * environment, the values of variables whose names say they hold a
 * secret, key files, `token =` options and parsed trigger URLs), and
 * the one scrub that text passes before it leaves the process: known values
 * become "***", then rules.c's pattern redaction (URL credentials,
 * "secret-token:..."). The log writer, the error printer, the summary, the
 * REPL history and captured child output all use it. The set is
 * process-wide on purpose: a token learned by one flow or REPL line stays
 * hidden in everything the process prints later. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "secrets.h"
#include "text.h"

#define MIN_SECRET 6 /* shorter values would hide ordinary words */

static struct secret {
  char *value;
  size_t len;
} *known;
static int nknown, capacity;
static bool first_byte[256]; /* a known secret starts with it: only there is one looked for */

void secrets_add(const char *value, size_t len) {
  if (!value || len < MIN_SECRET) return;
  for (int i = 0; i < nknown; i++)
    if (known[i].len == len && memcmp(known[i].value, value, len) == 0) return;
  if (nknown == capacity) { /* no cap: a secret left out would be printed */
    int more = capacity ? 2 * capacity : 16;
    struct secret *grown = realloc(known, (size_t)more * sizeof *grown);
    if (!grown) abort(); /* cannot promise to hide it: do not go on */
    known = grown;
    capacity = more;
  }
  char *copy = malloc(len);
  if (!copy) abort();
  memcpy(copy, value, len);
  known[nknown].value = copy;
  known[nknown].len = len;
  nknown++;
  first_byte[(unsigned char)value[0]] = true;
}

void secrets_clear(void) {
  for (int i = 0; i < nknown; i++) free(known[i].value);
  free(known);
  known = NULL;
  nknown = capacity = 0;
  memset(first_byte, 0, sizeof first_byte);
}

/* The known secret starting at text, or -1. */
static int match(const char *text, size_t left) {
  for (int i = 0; i < nknown; i++)
    if (known[i].len <= left && memcmp(text, known[i].value, known[i].len) == 0) return i;
  return -1;
}

/* Whether word[0..n) occurs in text[0..len). */
static bool contains(const char *text, size_t len, const char *word, size_t n) {
  const char *end = text + len;
  for (const char *p = text; p < end && (p = memchr(p, word[0], (size_t)(end - p))); p++)
    if ((size_t)(end - p) >= n && memcmp(p, word, n) == 0) return true;
  return false;
}

bool secrets_clean(const char *text, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (first_byte[(unsigned char)text[i]] && match(text + i, len - i) >= 0) return false;
  static const char marker[] = "secret-token:";
  if (contains(text, len, marker, sizeof marker - 1)) return false;
  /* the pattern redaction's URL credentials, piece by NUL-separated piece
   * (text[len] is a NUL: the last piece ends there) */
  for (size_t start = 0; start <= len;) {
    url_parts u = url_split(text + start);
    if (u.hostport != u.authority) return false;
    start += strlen(text + start) + 1;
  }
  return true;
}

char *secrets_scrub(const char *text, size_t len, size_t *out_len) {
  char *plain = malloc(len + 1);
  if (!plain) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    size_t run = i; /* the bytes no known secret starts with go in whole */
    while (run < len && !first_byte[(unsigned char)text[run]]) run++;
    memcpy(plain + n, text + i, run - i);
    n += run - i;
    i = run;
    if (i == len) break;
    int k = match(text + i, len - i);
    if (k >= 0) {
      memcpy(plain + n, "***", 3); /* never longer: secrets are >= 6 bytes */
      n += 3;
      i += known[k].len;
    } else {
      plain[n++] = text[i++];
    }
  }
  plain[n] = '\0';
  /* The pattern redaction reads C strings: run it on each NUL-separated
   * piece. It may grow a piece ("a@" -> "***@"); if the room still runs
   * out, the text is cut, never overrun. */
  size_t room = 5 * n + 16, used = 0;
  char *out = malloc(room);
  for (size_t start = 0; out && start <= n && room - used >= 2;) {
    size_t piece = strlen(plain + start);
    secret_redact(plain + start, out + used, room - used);
    used += strlen(out + used); /* used <= room - 1 */
    start += piece + 1;
    if (start <= n && room - used >= 2) out[used++] = '\0'; /* the NUL between pieces */
  }
  if (out) out[used] = '\0';
  free(plain);
  if (out && out_len) *out_len = used;
  return out;
}

/* Whether text[0..n) spells upper (ASCII, upper case), ignoring case. */
static bool same_letters(const char *text, const char *upper, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char c = text[i] >= 'a' && text[i] <= 'z' ? (char)(text[i] - 'a' + 'A') : text[i];
    if (c != upper[i]) return false;
  }
  return true;
}

/* Whether an environment variable's name says it holds a secret
 * (SOME_API_KEY, SOME_TOKEN, PGPASSWORD, ...); a name for where
 * one is kept (..._FILE, ..._PATH, ..._DIR) does not. */
static bool secret_name(const char *name, size_t len) {
  static const char *const words[] = {"TOKEN",   "SECRET",     "PASSWORD",    "PASSWD",
                                      "API_KEY", "APIKEY",     "ACCESS_KEY",  "PRIVATE_KEY",
                                      "CREDENTIAL", NULL};
  static const char *const places[] = {"_FILE", "_PATH", "_DIR", NULL};
  for (int i = 0; places[i]; i++) {
    size_t n = strlen(places[i]);
    if (len >= n && same_letters(name + len - n, places[i], n)) return false;
  }
  for (int i = 0; words[i]; i++) {
    size_t n = strlen(words[i]);
    for (size_t at = 0; at + n <= len; at++)
      if (same_letters(name + at, words[i], n)) return true;
  }
  return false;
}

void secrets_add_environment(char **env) {
  for (; env && *env; env++) {
    const char *eq = strchr(*env, '=');
    if (eq && secret_name(*env, (size_t)(eq - *env))) secrets_add(eq + 1, strlen(eq + 1));
  }
}
