/* errors.h: error objects (kind, message, context fields; one-line
 * tostring) and the safe description of any error value. */
#ifndef ERRORS_H
#define ERRORS_H

#include <stdbool.h>

#include <lua.h>

void error_push(lua_State *L, const char *kind, const char *fmt, ...);
void error_locate(lua_State *L, int idx);
bool error_is_kind(lua_State *L, int idx, const char *kind);
bool error_is_object(lua_State *L, int idx);
/* Pushes a string for the error value at idx, as lua.c prints it; never
 * raises (a __tostring that fails or returns a non-string is ignored). */
const char *error_describe(lua_State *L, int idx);
void error_register(lua_State *L); /* error, is_error, describe */

#endif
