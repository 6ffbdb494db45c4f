/* text.c: URL redaction, HTTP header-line parsing, printable text and
 * JSON strings (see text.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

url_parts url_split(const char *url) {
  const char *scheme = strstr(url, "://");
  url_parts u = {.authority = scheme ? scheme + 3 : url};
  size_t len = strcspn(u.authority, "/?#");
  u.hostport = u.authority;
  for (const char *c = u.authority; c < u.authority + len; c++)
    if (*c == '@') u.hostport = c + 1; /* the last '@' ends the userinfo */
  u.hostport_len = (size_t)(u.authority + len - u.hostport);
  return u;
}

char *url_redact(const char *url, char *out, size_t outsz) {
  if (outsz == 0) return out;
  url_parts u = url_split(url);
  if (u.hostport == u.authority) { /* no userinfo */
    size_t n = strlen(url);
    if (n >= outsz) n = outsz - 1;
    memcpy(out, url, n);
    out[n] = '\0';
    return out;
  }
  size_t prefix = (size_t)(u.authority - url);
  size_t n = 0;
  for (size_t i = 0; i < prefix && n + 1 < outsz; i++) out[n++] = url[i];
  for (const char *m = "***"; *m && n + 1 < outsz; m++) out[n++] = *m;
  for (const char *c = u.hostport - 1; *c && n + 1 < outsz; c++) out[n++] = *c;
  out[n] = '\0';
  return out;
}

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool header_next(const char **p, const char *end, header_line *out) {
  while (*p < end) {
    const char *line = *p;
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    const char *stop = eol ? eol : end;
    *p = eol ? eol + 1 : end;
    const char *colon = memchr(line, ':', (size_t)(stop - line));
    if (!colon || colon == line || is_space(line[0])) continue;
    if ((size_t)(stop - line) >= 5 && memcmp(line, "HTTP/", 5) == 0) continue;
    const char *name_end = colon;
    while (name_end > line && is_space(name_end[-1])) name_end--;
    const char *v = colon + 1;
    const char *v_end = stop;
    while (v < v_end && is_space(*v)) v++;
    while (v_end > v && is_space(v_end[-1])) v_end--;
    out->name = line;
    out->name_len = (size_t)(name_end - line);
    out->value = v;
    out->value_len = (size_t)(v_end - v);
    return true;
  }
  return false;
}

void text_printable(const char *text, size_t len, size_t max,
                    void (*emit)(void *data, const char *bytes, size_t n),
                    void *data) {
  size_t shown = len < max ? len : max, run = 0;
  for (size_t i = 0; i < shown; i++) {
    unsigned char c = (unsigned char)text[i];
    if ((c >= 0x20 && c != 0x7f) || c == '\n' || c == '\t') continue;
    if (i > run) emit(data, text + run, i - run);
    char esc[5];
    snprintf(esc, sizeof esc, "\\x%02x", c);
    emit(data, esc, 4);
    run = i + 1;
  }
  if (shown > run) emit(data, text + run, shown - run);
  if (len > shown) {
    char tail[48];
    int n = snprintf(tail, sizeof tail, " [... %zu bytes cut]", len - shown);
    emit(data, tail, (size_t)n);
  }
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_length(const unsigned char *s, size_t n) {
  size_t need;
  unsigned int min;
  if (s[0] < 0x80) return 1;
  if (s[0] >= 0xc2 && s[0] <= 0xdf) need = 2, min = 0x80;
  else if (s[0] >= 0xe0 && s[0] <= 0xef) need = 3, min = 0x800;
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) need = 4, min = 0x10000;
  else return 0;
  if (n < need) return 0;
  unsigned int cp = s[0] & (0x3f >> (need - 1));
  for (size_t i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return need;
}

void text_json_string(const char *text, size_t len,
                      void (*emit)(void *data, const char *bytes, size_t n),
                      void *data) {
  const unsigned char *s = (const unsigned char *)text;
  size_t run = 0, i = 0;
  emit(data, "\"", 1);
  while (i < len) {
    size_t k = utf8_length(s + i, len - i);
    if (k > 1 || (k == 1 && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\' && s[i] != 0x7f)) {
      i += k;
      continue;
    }
    if (i > run) emit(data, text + run, i - run);
    char esc[8];
    switch (s[i]) {
    case '"': emit(data, "\\\"", 2); break;
    case '\\': emit(data, "\\\\", 2); break;
    case '\n': emit(data, "\\n", 2); break;
    case '\t': emit(data, "\\t", 2); break;
    default:
      snprintf(esc, sizeof esc, "\\u%04x", s[i]);
      emit(data, esc, 6);
    }
    run = ++i;
  }
  if (len > run) emit(data, text + run, len - run);
  emit(data, "\"", 1);
}

/* A key as written, in the object it belongs to. */
typedef struct {
  size_t object; /* which object (its opening brace's offset) */
  const char *name;
  size_t len;
} json_key;

static int key_order(const void *a, const void *b) {
  const json_key *x = a, *y = b;
  if (x->object != y->object) return x->object < y->object ? -1 : 1;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return memcmp(x->name, y->name, x->len);
}

bool json_duplicate_key(const char *text, size_t len, char *key, size_t keysz) {
  size_t *stack = NULL; /* offset of each open object; SIZE_MAX for arrays */
  size_t depth = 0, stack_cap = 0;
  bool expect_key = false;
  json_key *keys = NULL;
  size_t nkeys = 0, cap = 0;
  bool found = false;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (c == '"') {
      size_t start = ++i;
      while (i < len && text[i] != '"') i += text[i] == '\\' ? 2 : 1;
      if (i >= len) break;
      if (expect_key && depth > 0 && stack[depth - 1] != (size_t)-1) {
        if (nkeys == cap) {
          size_t bigger = cap ? cap * 2 : 64;
          json_key *grown = realloc(keys, bigger * sizeof *keys);
          if (!grown) break;
          keys = grown;
          cap = bigger;
        }
        keys[nkeys++] = (json_key){stack[depth - 1], text + start, i - start};
      }
      expect_key = false;
    } else if (c == '{' || c == '[') {
      if (depth == stack_cap) { /* as deep as the text goes: no cap to pass silently */
        size_t bigger = stack_cap ? stack_cap * 2 : 64;
        size_t *grown = realloc(stack, bigger * sizeof *stack);
        if (!grown) break;
        stack = grown;
        stack_cap = bigger;
      }
      stack[depth++] = c == '{' ? i : (size_t)-1;
      expect_key = c == '{';
    } else if (c == '}' || c == ']') {
      if (depth > 0) depth--;
      expect_key = false;
    } else if (c == ',') {
      expect_key = depth > 0 && stack[depth - 1] != (size_t)-1;
    }
  }
  if (nkeys > 1) { /* sorted, a duplicate sits next to its twin */
    qsort(keys, nkeys, sizeof *keys, key_order);
    for (size_t k = 1; k < nkeys && !found; k++) {
      if (key_order(&keys[k - 1], &keys[k]) == 0) {
        found = true;
        snprintf(key, keysz, "%.*s", (int)keys[k].len, keys[k].name);
      }
    }
  }
  free(keys);
  free(stack);
  return found;
}
