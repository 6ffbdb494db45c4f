/* text.h: pure string helpers with no Lua or libuv dependency, unit-tested
 * on their own: URL redaction, HTTP header-line parsing, printable text. */
#ifndef ENGINE_TEXT_H
#define ENGINE_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* Where a URL's authority starts (after "scheme://", or the URL itself
 * without one), and its host[:port]: after the last '@' of any userinfo,
 * up to the path, query or fragment. Pointers into the URL. */
typedef struct {
  const char *authority;
  const char *hostport;
  size_t hostport_len;
} url_parts;
url_parts url_split(const char *url);

/* Copies url into out (always NUL-terminated, truncated to outsz), with any
 * userinfo ("user:secret@") replaced by "***@". Returns out. */
char *url_redact(const char *url, char *out, size_t outsz);

/* One "Name: value" header line, trimmed; name not NUL-terminated. */
typedef struct {
  const char *name;
  size_t name_len;
  const char *value;
  size_t value_len;
} header_line;

/* Parses the next header line from [*p, end), advancing *p past it. Returns
 * false at the end; status lines and malformed lines are skipped. */
bool header_next(const char **p, const char *end, header_line *out);

/* Writes text[0..len) to emit(data, bytes, n) with every control byte but
 * newline and tab (a NUL from a hostile answer, an escape sequence) shown
 * as \xHH, and at most max input bytes; a longer text ends with
 * " [... N bytes cut]". */
void text_printable(const char *text, size_t len, size_t max,
                    void (*emit)(void *data, const char *bytes, size_t n),
                    void *data);

/* Emits text as a quoted JSON string: quotes, backslashes and control
 * bytes escaped, and a byte that is not part of valid UTF-8 as \u00XX (so
 * any input makes a line every JSON parser reads). */
void text_json_string(const char *text, size_t len,
                      void (*emit)(void *data, const char *bytes, size_t n),
                      void *data);

/* Whether the JSON text has an object with the same key twice (decoders
 * keep one of them silently). On true, the key (raw, as written, cut to
 * keysz) is in key. Text that is not JSON may answer either way: this only
 * looks at keys, the decoder judges the rest. Keys compare as written:
 * "a" and "\u0061" count as different. */
bool json_duplicate_key(const char *text, size_t len, char *key, size_t keysz);

#endif
