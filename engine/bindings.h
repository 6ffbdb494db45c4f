/* bindings.h: the C modules flows reach through lua/ files, each
 * registered by the file that owns it into the table on top of the stack
 * (modules.c knows them all). A module that needs the engine gets it here
 * and hands it to its functions as an upvalue. */
#ifndef BINDINGS_H
#define BINDINGS_H

#include <lua.h>

#include "engine.h"

void timer_register(lua_State *L, engine *e); /* timer.c: sleep, now, every */
void http_register(lua_State *L, engine *e); /* http.c: request */
void exec_register(lua_State *L);    /* exec.c: run */
void rules_register(lua_State *L);   /* rules_lua.c: the pure rules */
void sqlite_register(lua_State *L, engine *e); /* sqlite.c: open, db:run, db:rows, db:exec */
void files_register(lua_State *L);   /* files.c: mkdirs, lock, write_file, ... */
void json_values_register(lua_State *L); /* json_values.c: integers, strip_nulls */
void options_register(lua_State *L); /* options.c: check_options for lua/ files */
void mutex_register(lua_State *L);   /* mutex.c: a lock tasks take in turn */
void postgres_register(lua_State *L, engine *e); /* postgres.c: connect, conn:query */
void httpd_register(lua_State *L, engine *e); /* httpd.c: start, server:respond (engine ui) */

#endif
