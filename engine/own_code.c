/* own_code.c: the engine's own Lua code, recorded by its loader. A chunk's
 * functions all share its source string (the loader keeps one per chunk,
 * and nested functions reuse their parent's), so the chunk is known by the
 * address of that string: a registry table maps it to the chunk, which
 * keeps the string alive and the address unique. (Short strings are
 * interned: a flow file loaded under the very name of an embedded chunk,
 * "@lua/flow.lua", would share it.) Asking is two table reads, cheap
 * enough for a hook that fires every few thousand instructions. */
#include <string.h>

#include <lauxlib.h>

#include "own_code.h"

static const char chunks_key = 'o';

void own_code_add(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  lua_Debug ar;
  lua_pushvalue(L, idx);
  lua_getinfo(L, ">S", &ar);
  /* A chunk without debug information has no source of its own: every
   * such chunk reports the same "=?", which must not become the engine's. */
  if (strcmp(ar.what, "main") != 0 || strcmp(ar.source, "=?") == 0) return;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &chunks_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &chunks_key);
  }
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, ar.source);
  lua_pop(L, 1);
}

bool own_code_is(lua_State *L, const lua_Debug *ar) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &chunks_key) != LUA_TTABLE) {
    lua_pop(L, 1);
    return false;
  }
  bool own = lua_rawgetp(L, -1, ar->source) != LUA_TNIL;
  lua_pop(L, 2);
  return own;
}

bool own_code_at(lua_State *L, int level) {
  lua_Debug ar;
  for (; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "S", &ar);
    if (strcmp(ar.what, "C") != 0) return own_code_is(L, &ar);
  }
  return false;
}
