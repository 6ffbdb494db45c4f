/* secrets.c: the secret values this process knows (Census tokens from the
 * environment, key files, `token =` options and parsed trigger URLs), and
 * the one scrub that text passes before it leaves the process: known values
 * become "***", then rules.c's pattern redaction (URL credentials,
 * "secret-token:..."). The log writer, the error printer, the summary, the
 * REPL history and captured child output all use it. The set is
 * process-wide on purpose: a token learned by one flow or REPL line stays
 * hidden in everything the process prints later. */
#include <stdlib.h>
#include <string.h>

#include "rules.h"
#include "secrets.h"

#define MAX_SECRETS 64
#define MIN_SECRET 6 /* shorter values would hide ordinary words */

static struct {
  char *value;
  size_t len;
} known[MAX_SECRETS];
static int nknown;

void secrets_add(const char *value, size_t len) {
  if (!value || len < MIN_SECRET) return;
  for (int i = 0; i < nknown; i++)
    if (known[i].len == len && memcmp(known[i].value, value, len) == 0) return;
  if (nknown == MAX_SECRETS) return; /* the pattern redaction still applies */
  char *copy = malloc(len);
  if (!copy) return;
  memcpy(copy, value, len);
  known[nknown].value = copy;
  known[nknown].len = len;
  nknown++;
}

void secrets_clear(void) {
  for (int i = 0; i < nknown; i++) free(known[i].value);
  nknown = 0;
}

/* The known secret starting at text, or -1. */
static int match(const char *text, size_t left) {
  for (int i = 0; i < nknown; i++)
    if (known[i].len <= left && memcmp(text, known[i].value, known[i].len) == 0) return i;
  return -1;
}

char *secrets_scrub(const char *text, size_t len, size_t *out_len) {
  char *plain = malloc(len + 1);
  if (!plain) return NULL;
  size_t n = 0;
  for (size_t i = 0; i < len;) {
    int k = nknown ? match(text + i, len - i) : -1;
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
