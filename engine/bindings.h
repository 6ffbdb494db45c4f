/* bindings.h: the C modules flows reach through lua/ files. Each file
 * registers its own functions into the table on top of the stack. */
#ifndef BINDINGS_H
#define BINDINGS_H

#include <stdbool.h>

#include <lua.h>

#include "engine.h"

void timer_register(lua_State *L);   /* timer.c: sleep, now, wallclock */
void http_register(lua_State *L);    /* http.c: request */
void http_shutdown(engine *e);
void exec_register(lua_State *L);    /* exec.c: run */
void rules_register(lua_State *L);   /* rules_lua.c: the pure rules */
void sqlite_register(lua_State *L);  /* sqlite.c: open, db:run, db:rows, db:exec */
void files_register(lua_State *L);   /* files.c: mkdirs, lock, write_file, ... */
void json_values_register(lua_State *L); /* json_values.c: integers, strip_nulls */
void log_register(lua_State *L);    /* log.c: <level>(fields, fmt, ...), enabled, set_context */
void corolib_open(lua_State *L);     /* corolib.c: the coroutine library */

/* options.c: one checker for option tables. Raises "<what>: unknown
 * option 'x' (expected a, b, c)" for a key not in fields (NULL-ended);
 * integer keys are the positional part when positional is true. */
void options_check(lua_State *L, int idx, const char *what,
                   const char *const fields[], bool positional);
void options_register(lua_State *L); /* check_options for lua/ files */

#endif
