/* options.h: one checker for option tables (see options.c). */
#ifndef OPTIONS_H
#define OPTIONS_H

#include <stdbool.h>

#include <lua.h>

/* Raises "<what>: unknown option 'x' (expected a, b, c)" for a key of the
 * table at idx not in fields (NULL-ended); integer keys are the positional
 * part when positional is true. */
void options_check(lua_State *L, int idx, const char *what,
                   const char *const fields[], bool positional);

#endif
