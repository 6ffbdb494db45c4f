/* own_code.h: which Lua code is the engine's own (the embedded lua/
 * library), as its loader recorded it, so the scheduler and error objects
 * tell it from the flow's code without knowing any file name. */
#ifndef OWN_CODE_H
#define OWN_CODE_H

#include <stdbool.h>

#include <lua.h>

/* The Lua function at idx, a chunk just loaded, and every function it
 * defines, are the engine's own code. */
void own_code_add(lua_State *L, int idx);
/* Whether the function lua_getinfo(L, "S", ar) described is. */
bool own_code_is(lua_State *L, const lua_Debug *ar);
/* Whether the innermost Lua function at or above stack level `level` of L
 * is (C functions are skipped; false when there is none). */
bool own_code_at(lua_State *L, int level);

#endif
