/* json_values.c: the walks lua/json.lua and the providers' answers need on
 * every decoded document, in C because they run on every poll: integral
 * numbers become Lua integers (lua-cjson reads every number as a float,
 * which would print ids as 1234.0), and JSON null can be taken out. */
#include <lauxlib.h>

#include "bindings.h"

#define WALK_MAX_DEPTH 200 /* as deep as the decoder goes */

/* Walks the table at idx: integral floats become integers and, when null
 * is not 0, values equal to the value at null are removed. */
static void walk(lua_State *L, int idx, int null, int depth) {
  if (depth > WALK_MAX_DEPTH) return;
  luaL_checkstack(L, 4, "json: too deep");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int type = lua_type(L, -1);
    if (type == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Integer i;
      if (lua_numbertointeger(lua_tonumber(L, -1), &i) && (lua_Number)i == lua_tonumber(L, -1)) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, i);
        lua_rawset(L, idx);
      }
    } else if (type == LUA_TTABLE) {
      walk(L, lua_gettop(L), null, depth + 1);
    } else if (null && lua_rawequal(L, -1, null)) {
      lua_pushvalue(L, -2);
      lua_pushnil(L);
      lua_rawset(L, idx); /* clearing a field during traversal is allowed */
    }
    lua_pop(L, 1);
  }
}

/* integers(v) -> v */
static int integers(lua_State *L) {
  lua_settop(L, 1);
  if (lua_istable(L, 1)) walk(L, 1, 0, 0);
  return 1;
}

/* strip_nulls(v, null) -> v: also integers */
static int strip_nulls(lua_State *L) {
  lua_settop(L, 2);
  if (lua_istable(L, 1)) walk(L, 1, 2, 0);
  lua_settop(L, 1);
  return 1;
}

void json_values_register(lua_State *L) {
  static const luaL_Reg fns[] = {{"integers", integers}, {"strip_nulls", strip_nulls}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
