/* errors.c: error objects. Operational failures are tables with kind,
 * message and context fields; tostring gives one line, prefixed with the
 * flow location that caused it (the first frame outside the engine's own
 * Lua code). */
#include <stdarg.h>
#include <string.h>

#include <lauxlib.h>

#include "errors.h"
#include "own_code.h"

#define ERROR_MT "engine.error"

static int error_tostring(lua_State *L) {
  lua_settop(L, 1);
  lua_getfield(L, 1, "where");
  if (lua_getfield(L, 1, "message") != LUA_TSTRING) {
    lua_getfield(L, 1, "kind");
    lua_pushfstring(L, "%s error", luaL_optstring(L, -1, "unknown"));
  }
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return 1;
}

static void error_metatable(lua_State *L) {
  if (luaL_newmetatable(L, ERROR_MT)) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "error");
    lua_setfield(L, -2, "__name");
  }
}

static bool is_error_object(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return false;
  error_metatable(L);
  bool same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same;
}

/* Sets where = "file:line: " of the innermost frame of user code, when the
 * object has no location yet. */
void error_locate(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (!is_error_object(L, idx)) return;
  if (lua_getfield(L, idx, "where") != LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  lua_pop(L, 1);
  lua_Debug ar;
  for (int level = 0; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sl", &ar);
    if (ar.currentline <= 0 || own_code_is(L, &ar)) continue;
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    lua_setfield(L, idx, "where");
    return;
  }
}

void error_push(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "message");
  error_metatable(L);
  lua_setmetatable(L, -2);
}

bool error_is_object(lua_State *L, int idx) { return is_error_object(L, idx); }

bool error_is_kind(lua_State *L, int idx, const char *kind) {
  if (!is_error_object(L, idx)) return false;
  lua_getfield(L, idx, "kind");
  const char *k = lua_tostring(L, -1);
  bool same = k && strcmp(k, kind) == 0;
  lua_pop(L, 1);
  return same;
}

static int tostring_meta(lua_State *L) {
  return luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING;
}

const char *error_describe(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int type = lua_type(L, idx);
  if (type == LUA_TSTRING || type == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  }
  int top = lua_gettop(L);
  lua_pushcfunction(L, tostring_meta);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TSTRING)
    return lua_tostring(L, -1);
  lua_settop(L, top);
  return lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, idx));
}

/* describe(v): the one line `lua` would print for the error value v. */
static int describe(lua_State *L) {
  luaL_checkany(L, 1);
  error_describe(L, 1);
  return 1;
}

/* error(kind, message[, fields]): a new error object (not raised). */
static int new_error(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  const char *message = luaL_checkstring(L, 2);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  lua_newtable(L);
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, message);
  lua_setfield(L, -2, "message");
  error_metatable(L);
  lua_setmetatable(L, -2);
  error_locate(L, -1);
  return 1;
}

/* is_error(v[, kind]) */
static int is_error(lua_State *L) {
  if (lua_isnoneornil(L, 2))
    lua_pushboolean(L, is_error_object(L, 1));
  else
    lua_pushboolean(L, error_is_kind(L, 1, luaL_checkstring(L, 2)));
  return 1;
}

void error_register(lua_State *L) {
  static const luaL_Reg fns[] = {{"error", new_error},
                                 {"is_error", is_error},
                                 {"describe", describe},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
