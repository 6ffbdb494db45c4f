/* lua_probe.h: what the harnesses that fuzz the engine's Lua code share.
 * An engine is made once; the probe, a Lua chunk given the modules named,
 * returns the check function; each input goes through it, and a Lua error
 * aborts with `what` and the message. After each input the garbage is
 * collected: libFuzzer runs a leak scan after any input that mallocs more
 * than it frees, which Lua's lazy collector makes every input do (about
 * 100 times slower). */
#ifndef ENGINE_FUZZ_LUA_PROBE_H
#define ENGINE_FUZZ_LUA_PROBE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "lifetime.h"
#include "modules.h"

static int lua_probe_run(const char *what, const char *probe, const char *const modules[],
                         const uint8_t *data, size_t size) {
  static engine e;
  static int check_ref = LUA_NOREF;
  lua_State *L;
  if (check_ref == LUA_NOREF) {
    if (engine_init(&e, LOG_QUIET, true) != 0) abort();
    L = e.L;
    if (luaL_loadstring(L, probe) != LUA_OK) abort();
    int n = 0;
    for (; modules[n]; n++) modules_require(L, modules[n]);
    if (lua_pcall(L, n, 1, 0) != LUA_OK) {
      fprintf(stderr, "%s probe: %s\n", what, lua_tostring(L, -1));
      abort();
    }
    check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  L = e.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s check failed: %s\n", what, lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

#endif
