/* rules.c: pure decision functions (see rules.h). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rules.h"
#include "text.h"

char *secret_redact(const char *text, char *out, size_t outsz) {
  url_redact(text, out, outsz);
  static const char marker[] = "secret-token:";
  char *p = out;
  while ((p = strstr(p, marker))) {
    char *start = p + sizeof marker - 1, *end = start;
    /* a token may hold '/', '?' or '#' (an invalid trigger URL): only
     * what cannot be in one ends it, so no tail of it is ever shown ('<'
     * keeps a placeholder such as <token> in help text readable) */
    while (*end && !isspace((unsigned char)*end) && !strchr("@<\"'", *end))
      end++;
    if (end == start) {
      p = start;
      continue;
    }
    size_t keep = strlen(end) + 1;
    size_t room = outsz - (size_t)(start - out);
    if (room < 3 + keep) { /* no room to rewrite: cut the text here */
      *start = '\0';
      break;
    }
    memmove(start + 3, end, keep);
    memcpy(start, "***", 3);
    p = start + 3;
  }
  return out;
}

double backoff_delay(int attempt, double base, double factor, double max_delay,
                     double jitter, double u01) {
  if (attempt < 1) attempt = 1;
  double d = base * pow(factor, attempt - 1);
  if (!(d <= max_delay)) d = max_delay;
  return d * (1.0 - jitter + 2.0 * jitter * u01);
}

double retry_after_seconds(const char *value, double now) {
  if (!value) return -1;
  while (isspace((unsigned char)*value)) value++;
  if (isdigit((unsigned char)*value)) {
    char *end;
    double s = strtod(value, &end);
    while (isspace((unsigned char)*end)) end++;
    return (*end == '\0' && s >= 0 && s < 1e9) ? s : -1;
  }
  double when = time_parse_http_date(value);
  if (when < 0) return -1;
  return when > now ? when - now : 0;
}

static bool digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)(*p)[i])) return false;
    v = v * 10 + ((*p)[i] - '0');
  }
  *p += n;
  *out = v;
  return true;
}

static double utc_seconds(int y, int mo, int d, int h, int mi, int s) {
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60)
    return -1;
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                  .tm_hour = h, .tm_min = mi, .tm_sec = s};
  return (double)timegm(&tm);
}

double time_parse_iso8601(const char *s) {
  if (!s) return -1;
  const char *p = s;
  int y, mo, d, h, mi, sec;
  if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
      !digits(&p, 2, &d) || (*p != 'T' && *p != ' ') || !*p++ ||
      !digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
      !digits(&p, 2, &sec))
    return -1;
  double frac = 0, scale = 0.1;
  if (*p == '.') {
    p++;
    if (!isdigit((unsigned char)*p)) return -1;
    while (isdigit((unsigned char)*p)) {
      frac += (*p++ - '0') * scale;
      scale /= 10;
    }
  }
  int offset = 0;
  if (*p == 'Z' || *p == 'z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1, oh, om;
    if (!digits(&p, 2, &oh)) return -1;
    if (*p == ':') p++;
    if (!digits(&p, 2, &om)) return -1;
    offset = sign * (oh * 3600 + om * 60);
  }
  if (*p != '\0') return -1;
  double t = utc_seconds(y, mo, d, h, mi, sec);
  return t < 0 ? -1 : t + frac - offset;
}

/* IMF-fixdate, the form HTTP/1.1 servers must send:
 * "Sun, 06 Nov 1994 08:49:37 GMT". */
double time_parse_http_date(const char *s) {
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (!s || strlen(s) != 29 || s[3] != ',' || s[4] != ' ' ||
      strcmp(s + 25, " GMT") != 0)
    return -1;
  const char *p = s + 5;
  int d, y, h, mi, sec;
  if (!digits(&p, 2, &d) || *p++ != ' ') return -1;
  const char *m = strstr(months, (char[]){p[0], p[1], p[2], 0});
  if (!m || (m - months) % 3) return -1;
  p += 3;
  if (*p++ != ' ' || !digits(&p, 4, &y) || *p++ != ' ' || !digits(&p, 2, &h) ||
      *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' || !digits(&p, 2, &sec))
    return -1;
  return utc_seconds(y, (int)(m - months) / 3 + 1, d, h, mi, sec);
}

static unsigned char fold(unsigned char c) {
  return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Ukkonen's band: only cells within max of the diagonal can hold a
 * distance <= max, so each row looks at 2 * max + 1 of them. */
size_t edit_distance_within(const char *a, size_t alen, const char *b, size_t blen, size_t max) {
  size_t diff = alen > blen ? alen - blen : blen - alen;
  if (diff > max) return max + 1;
  size_t *row = malloc((blen + 1) * sizeof *row);
  if (!row) return max + 1;
  size_t over = max + 1;
  for (size_t j = 0; j <= blen; j++) row[j] = j <= max ? j : over;
  for (size_t i = 1; i <= alen; i++) {
    size_t lo = i > max ? i - max : 1, hi = i + max < blen ? i + max : blen;
    size_t diag = row[lo - 1]; /* row[i-1][lo-1] */
    row[lo - 1] = lo - 1 == 0 && i <= max ? i : over;
    size_t best = row[lo - 1];
    for (size_t j = lo; j <= hi; j++) {
      size_t up = row[j], left = row[j - 1];
      size_t cost = fold((unsigned char)a[i - 1]) == fold((unsigned char)b[j - 1]) ? 0 : 1;
      size_t v = diag + cost;
      if (up + 1 < v) v = up + 1;
      if (left + 1 < v) v = left + 1;
      if (v > over) v = over;
      diag = up;
      row[j] = v;
      if (v < best) best = v;
    }
    if (hi < blen) row[hi + 1] = over;
    if (best > max) {
      free(row);
      return over;
    }
  }
  size_t d = row[blen];
  free(row);
  return d > max ? over : d;
}
