/* secrets.h: known secret values and the scrub applied to text leaving the
 * process (see secrets.c). */
#ifndef SECRETS_H
#define SECRETS_H

#include <stdbool.h>
#include <stddef.h>

void secrets_add(const char *value, size_t len);
void secrets_clear(void);
/* The values of the variables in env (as environ) whose names say they
 * hold a secret. */
void secrets_add_environment(char **env);
/* A malloc'd copy of text[0..len) (NUL bytes allowed) with every known
 * secret and every secret-looking pattern replaced by "***"; its length in
 * *out_len (when not NULL), NUL-terminated. NULL without memory. */
char *secrets_scrub(const char *text, size_t len, size_t *out_len);
/* Whether secrets_scrub would give text back unchanged (text[len] must be
 * a NUL, as a Lua string's is): the usual case, with no copy made. */
bool secrets_clean(const char *text, size_t len);

#endif
