/* options.c: the one checker for option tables, for C bindings and (as
 * check_options) for lua/ files. The message lists the accepted names from
 * the same array the check uses, so the two cannot drift apart. */
#include <string.h>

#include <lauxlib.h>

#include "bindings.h"
#include "options.h"

static int unknown_option(lua_State *L, const char *what, int key,
                          const char *const fields[]) {
  if (lua_type(L, key) == LUA_TSTRING)
    lua_pushvalue(L, key);
  else
    lua_pushfstring(L, "(a %s key)", luaL_typename(L, key));
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 0; fields[i]; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addstring(&b, fields[i]);
  }
  luaL_pushresult(&b);
  return luaL_error(L, "%s: unknown option '%s' (expected %s)", what,
                    lua_tostring(L, -2), lua_tostring(L, -1));
}

void options_check(lua_State *L, int idx, const char *what,
                   const char *const fields[], bool positional) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (positional && lua_isinteger(L, -1)) continue;
    const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    bool known = false;
    for (int i = 0; k && fields[i] && !known; i++) known = strcmp(k, fields[i]) == 0;
    if (!known) unknown_option(L, what, lua_gettop(L), fields);
  }
}

/* check_options(what, opts, {"name", ...}): opts or an empty table; raises
 * at level 3 (the caller of the function that checks) when opts is not a
 * table or holds an unknown key. */
static int check_options(lua_State *L) {
  const char *what = luaL_checkstring(L, 1);
  luaL_checktype(L, 3, LUA_TTABLE);
  if (lua_isnil(L, 2)) {
    lua_newtable(L);
    return 1;
  }
  if (!lua_istable(L, 2))
    return luaL_error(L, "%s: expected an options table, got a %s", what,
                      luaL_typename(L, 2));
  size_t n = lua_rawlen(L, 3);
  const char **fields = lua_newuserdatauv(L, (n + 1) * sizeof *fields, 0);
  for (size_t i = 0; i < n; i++) {
    if (lua_rawgeti(L, 3, (lua_Integer)i + 1) != LUA_TSTRING)
      return luaL_error(L, "check_options: option %d of %s is not a name", (int)i + 1, what);
    fields[i] = lua_tostring(L, -1); /* table 3 keeps it alive */
    lua_pop(L, 1);
  }
  fields[n] = NULL;
  options_check(L, 2, what, fields, false);
  lua_settop(L, 2);
  return 1;
}

void options_register(lua_State *L) {
  lua_pushcfunction(L, check_options);
  lua_setfield(L, -2, "check_options");
}
