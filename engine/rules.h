/* rules.h: pure decision functions with no Lua or libuv dependency, unit
 * tested on their own: secret redaction, retry backoff, Retry-After and
 * timestamps. */
#ifndef ENGINE_RULES_H
#define ENGINE_RULES_H

#include <stdbool.h>
#include <stddef.h>

/* Copies text into out with URL credentials and every "secret-token:..."
 * replaced by "***". Always NUL-terminates. */
char *secret_redact(const char *text, char *out, size_t outsz);

/* Delay before retry number `attempt` (1-based): base * factor^(attempt-1)
 * capped at max_delay, then scaled by a factor in [1-jitter, 1+jitter]
 * chosen by u01 in [0, 1). */
double backoff_delay(int attempt, double base, double factor, double max_delay,
                     double jitter, double u01);

/* Seconds to wait for a Retry-After value (delta-seconds or HTTP date),
 * or -1 when it is neither. `now` is the current Unix time. */
double retry_after_seconds(const char *value, double now);

/* Unix time of an ISO-8601 timestamp ("2024-05-01T12:00:00.123Z", offsets
 * allowed, UTC when none) or of an HTTP date; -1 when malformed. */
double time_parse_iso8601(const char *s);
double time_parse_http_date(const char *s);

/* The edit distance between a and b (bytes, ASCII case folded) when it is
 * at most max, else max + 1; O(len * max) time, for close-match hints. */
size_t edit_distance_within(const char *a, size_t alen, const char *b, size_t blen, size_t max);

#endif
