/* modules.c: everything Lua code in the engine can reach, set up in one
 * place, above the bindings: the C modules (each registered by the file
 * that owns it), lua-cjson, the embedded lua/ library and its loader (which
 * records the engine's own code, own_code.h), the private environment that
 * library runs in (nothing a flow does to its globals reaches the engine),
 * os.exit for a run, and the globals a flow starts with. Each provider
 * (lua/provider_<name>.lua) is the module engine.<name> and the global
 * <name>, loaded on first use: adding one edits nothing here. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>

#include "bindings.h"
#include "corolib.h"
#include "errors.h"
#include "log.h"
#include "modules.h"
#include "own_code.h"
#include "task.h"

static const char private_env_key = 'p';

/* lua/provider_<name>.lua: a provider, loaded as engine.<name>. */
#define PROVIDER_PREFIX "provider_"

void modules_require(lua_State *L, const char *name) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TNIL) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  if (lua_getfield(L, -1, name) != LUA_TFUNCTION)
    luaL_error(L, "engine: no module '%s'", name);
  lua_remove(L, -2);
  lua_pushstring(L, name);
  lua_call(L, 1, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name); /* package.loaded[name] */
  lua_remove(L, -2);
}

/* require for lua/ files: modules_require, so a flow that clears `require`
 * or package.searchers does not break the engine. */
static int private_require(lua_State *L) {
  modules_require(L, luaL_checkstring(L, 1));
  return 1;
}

/* engine.c.providers: the names of the providers built in, sorted. */
static void open_providers(lua_State *L) {
  for (const struct embedded_file *f = embedded_lua; f->name; f++)
    if (strncmp(f->name, PROVIDER_PREFIX, strlen(PROVIDER_PREFIX)) == 0) {
      lua_pushstring(L, f->name + strlen(PROVIDER_PREFIX));
      lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    }
}

/* The C modules lua/ files use. Those that need the engine get it. */
static const struct c_module {
  const char *name;
  void (*open)(lua_State *L);
  void (*open_for)(lua_State *L, engine *e);
} c_modules[] = {
    {"engine.c.task", NULL, task_register},   {"engine.c.timer", NULL, timer_register},
    {"engine.c.error", error_register, NULL}, {"engine.c.http", NULL, http_register},
    {"engine.c.exec", exec_register, NULL},   {"engine.c.rules", rules_register, NULL},
    {"engine.c.options", options_register, NULL}, {"engine.c.sqlite", NULL, sqlite_register},
    {"engine.c.mutex", mutex_register, NULL},     {"engine.c.postgres", NULL, postgres_register},
    {"engine.c.httpd", NULL, httpd_register},
    {"engine.c.files", files_register, NULL}, {"engine.c.log", NULL, log_register},
    {"engine.c.json", json_values_register, NULL},
    {"engine.c.providers", open_providers, NULL},
};

/* Upvalues: the module's entry, the engine. */
static int open_c_module(lua_State *L) {
  const struct c_module *m = lua_touserdata(L, lua_upvalueindex(1));
  lua_newtable(L);
  if (m->open)
    m->open(L);
  else
    m->open_for(L, lua_touserdata(L, lua_upvalueindex(2)));
  return 1;
}

static int open_log(lua_State *L) {
  log_open(L, lua_touserdata(L, lua_upvalueindex(1)));
  return 1;
}

/* Loader for an embedded lua/<name>.lua. tools/embed.c compiled it with
 * the chunk name @lua/<name>.lua, kept in the bytecode, so tracebacks point
 * at the real file. It is the engine's own code, and runs with the private
 * environment as _ENV. */
static int load_embedded(lua_State *L) {
  const struct embedded_file *f = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, f->source, f->size, NULL, "b") != LUA_OK)
    return lua_error(L);
  own_code_add(L, -1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &private_env_key);
  lua_setupvalue(L, -2, 1);
  lua_call(L, 0, 1);
  return 1;
}

static void preload(lua_State *L, engine *e) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (size_t i = 0; i < sizeof c_modules / sizeof *c_modules; i++) {
    lua_pushlightuserdata(L, (void *)&c_modules[i]);
    lua_pushlightuserdata(L, e);
    lua_pushcclosure(L, open_c_module, 2);
    lua_setfield(L, -2, c_modules[i].name);
  }
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, open_log, 1);
  lua_setfield(L, -2, "engine.log");
  lua_pushcfunction(L, luaopen_cjson);
  lua_setfield(L, -2, "cjson");
  for (const struct embedded_file *f = embedded_lua; f->name; f++) {
    const char *name = f->name;
    if (strncmp(name, PROVIDER_PREFIX, strlen(PROVIDER_PREFIX)) == 0) name += strlen(PROVIDER_PREFIX);
    lua_pushfstring(L, "engine.%s", name);
    lua_pushlightuserdata(L, (void *)f);
    lua_pushcclosure(L, load_embedded, 1);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
}

/* The private environment: a copy of the globals as they are now, each
 * library table copied too, with require replaced by private_require. */
static void make_private_env(lua_State *L) {
  lua_newtable(L);
  lua_pushglobaltable(L);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_istable(L, -1) && !lua_rawequal(L, -1, -3)) { /* a library */
      lua_newtable(L);
      lua_pushnil(L);
      while (lua_next(L, -3)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, -4);
      }
      lua_replace(L, -2);
    }
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, -5);
  }
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, -2, "_G");
  lua_pushcfunction(L, private_require);
  lua_setfield(L, -2, "require");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &private_env_key);
}

/* os.exit([code [, close]]) as in stock Lua, for a run: see task_exit.
 * Upvalue: the engine. */
static int os_exit(lua_State *L) {
  int code;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    code = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  return task_exit(L, lua_touserdata(L, lua_upvalueindex(1)), code, lua_toboolean(L, 2));
}

static void osexit_open(lua_State *L, engine *e) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_OSLIBNAME);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, os_exit, 1);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 2);
}

/* A global module loaded on first use: its table starts empty, with a
 * metatable whose first read (or pairs) loads the module into it and goes
 * away; require of the module gives the same table. Flows and REPL lines
 * that never touch it do not pay for loading it at start-up. */
static void lazy_fill(lua_State *L, int proxy) {
  proxy = lua_absindex(L, proxy);
  if (!lua_getmetatable(L, proxy)) return; /* already filled */
  lua_getfield(L, -1, "loader");
  lua_getfield(L, -2, "name");
  lua_call(L, 1, 1);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, proxy);
  }
  lua_pop(L, 2); /* module, metatable */
  lua_pushnil(L);
  lua_setmetatable(L, proxy);
}

static int lazy_index(lua_State *L) {
  lazy_fill(L, 1);
  lua_rawget(L, 1);
  return 1;
}

static int raw_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_next(L, 1)) return 2;
  lua_pushnil(L);
  return 1;
}

static int lazy_pairs(lua_State *L) {
  lazy_fill(L, 1);
  lua_pushcfunction(L, raw_next); /* not the flow's `next`, which it may change */
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* preload[name] once the global is lazy: the filled global table. */
static int lazy_preload(lua_State *L) {
  lazy_fill(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(1));
  return 1;
}

static void lazy_global(lua_State *L, const char *global, const char *module) {
  lua_newtable(L); /* the global */
  lua_createtable(L, 0, 4);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_getfield(L, -1, module);
  lua_setfield(L, -3, "loader");
  lua_pushstring(L, module);
  lua_setfield(L, -3, "name");
  lua_pushvalue(L, -3);
  lua_pushcclosure(L, lazy_preload, 1);
  lua_setfield(L, -2, module);
  lua_pop(L, 1);
  lua_pushcfunction(L, lazy_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, lazy_pairs);
  lua_setfield(L, -2, "__pairs");
  lua_setmetatable(L, -2);
  lua_setglobal(L, global);
}

void modules_open(lua_State *L, engine *e) {
  luaL_openlibs(L);
  corolib_open(L);
  osexit_open(L, e);
  preload(L, e);
  make_private_env(L);
  static const char *const globals[] = {"flow", "http", "json", "log"};
  for (size_t i = 0; i < sizeof globals / sizeof *globals; i++) {
    lua_pushfstring(L, "engine.%s", globals[i]);
    modules_require(L, lua_tostring(L, -1));
    lua_setglobal(L, globals[i]);
    lua_pop(L, 1);
  }
  for (const struct embedded_file *f = embedded_lua; f->name; f++) {
    if (strncmp(f->name, PROVIDER_PREFIX, strlen(PROVIDER_PREFIX)) != 0) continue;
    const char *global = f->name + strlen(PROVIDER_PREFIX);
    lua_pushfstring(L, "engine.%s", global);
    lazy_global(L, global, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}
