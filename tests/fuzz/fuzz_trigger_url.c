/* fuzz_trigger_url.c: the Census trigger-URL grammar (lua/provider_census.lua)
 * on any bytes. A URL it accepts must name a positive sync id and a token
 * inside the URL, and redacting the URL must leave no token behind. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "lifetime.h"
#include "modules.h"

static const char probe[] =
    "local jobs, rules = ...\n"
    "require('engine.census')\n"
    "local parse = jobs.provider('census').parse_trigger\n"
    "return function(url)\n"
    "  local t = parse(url)\n"
    "  if not t then return end\n"
    "  assert(math.type(t.sync_id) == 'integer' and t.sync_id > 0)\n"
    "  local at = url:find(t.token, 1, true)\n"
    "  assert(at and t.token:sub(1, 13) == 'secret-token:' and #t.token > 13)\n"
    "  assert(not rules.redact(url):find(t.token, 1, true), 'the token survives redaction')\n"
    "end\n";

static engine e;
static int check_ref = LUA_NOREF;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L;
  if (check_ref == LUA_NOREF) {
    if (engine_init(&e, LOG_QUIET, true) != 0) abort();
    L = e.L;
    if (luaL_loadstring(L, probe) != LUA_OK) abort();
    modules_require(L, "engine.jobs");
    modules_require(L, "engine.c.rules");
    lua_call(L, 2, 1);
    check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  L = e.L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "trigger URL check failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  /* Lua frees lazily: collect now, or libFuzzer's leak scan runs each time */
  lua_gc(L, LUA_GCCOLLECT);
  return 0;
}
