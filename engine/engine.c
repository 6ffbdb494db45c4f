/* engine.c: the engine's lifetime. Creates the Lua state (the standard
 * library as flows expect it, the engine's C modules and the embedded Lua
 * library, which runs in a private environment so nothing a flow does to
 * its globals reaches the engine), runs the main function as the first
 * task until the loop drains, reports how it ended (with the run summary),
 * and shuts down in the order that frees every handle. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <uv.h>

#include "bindings.h"
#include "errors.h"
#include "output.h"
#include "secrets.h"
#include "signals.h"
#include "task.h"

extern char **environ;

static const char engine_key = 'e';
static const char private_env_key = 'p';

engine *engine_from(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &engine_key);
  engine *e = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return e;
}

void engine_require(lua_State *L, const char *name) {
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

/* require for lua/ files: engine_require, so a flow that clears `require`
 * or package.searchers does not break the engine. */
static int private_require(lua_State *L) {
  engine_require(L, luaL_checkstring(L, 1));
  return 1;
}

/* The C modules lua/ files use, each registered by the file that owns it. */
static const struct {
  const char *name;
  void (*reg)(lua_State *L);
} c_modules[] = {
    {"engine.c.task", task_register},   {"engine.c.timer", timer_register},
    {"engine.c.error", error_register}, {"engine.c.http", http_register},
    {"engine.c.exec", exec_register},   {"engine.c.rules", rules_register},
    {"engine.c.options", options_register}, {"engine.c.sqlite", sqlite_register},
    {"engine.c.files", files_register}, {"engine.c.log", log_register},
    {"engine.c.json", json_values_register},
};

static int open_c_module(lua_State *L) {
  void (*reg)(lua_State *) = (void (*)(lua_State *))lua_touserdata(L, lua_upvalueindex(1));
  lua_newtable(L);
  reg(L);
  return 1;
}

static int open_log(lua_State *L) {
  log_open(L, engine_from(L));
  return 1;
}

/* Loader for an embedded lua/<name>.lua. tools/embed.c compiled it with
 * the chunk name @lua/<name>.lua, kept in the bytecode, so tracebacks point
 * at the real file. It runs with the private environment as _ENV. */
static int load_embedded(lua_State *L) {
  const struct embedded_file *f = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, f->source, f->size, NULL, "b") != LUA_OK)
    return lua_error(L);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &private_env_key);
  lua_setupvalue(L, -2, 1);
  lua_call(L, 0, 1);
  return 1;
}

static void preload(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (size_t i = 0; i < sizeof c_modules / sizeof *c_modules; i++) {
    lua_pushlightuserdata(L, (void *)c_modules[i].reg);
    lua_pushcclosure(L, open_c_module, 1);
    lua_setfield(L, -2, c_modules[i].name);
  }
  lua_pushcfunction(L, open_log);
  lua_setfield(L, -2, "engine.log");
  lua_pushcfunction(L, luaopen_cjson);
  lua_setfield(L, -2, "cjson");
  for (const struct embedded_file *f = embedded_lua; f->name; f++) {
    lua_pushfstring(L, "engine.%s", f->name);
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

/* os.exit([code [, close]]) as in stock Lua, for a run: see task_exit. */
static int os_exit(lua_State *L) {
  int code;
  if (lua_isboolean(L, 1))
    code = lua_toboolean(L, 1) ? EXIT_SUCCESS : EXIT_FAILURE;
  else
    code = (int)luaL_optinteger(L, 1, EXIT_SUCCESS);
  return task_exit(L, code, lua_toboolean(L, 2));
}

static void osexit_open(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_OSLIBNAME);
  lua_pushcfunction(L, os_exit);
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

static int setup_state(lua_State *L) {
  engine *e = lua_touserdata(L, 1);
  /* hidden even before any census call, and whatever a flow does with them */
  const char *key = getenv("CENSUS_API_KEY");
  if (key) secrets_add(key, strlen(key));
  secrets_add_environment(environ);
  luaL_openlibs(L);
  srand((unsigned)uv_hrtime()); /* jitter for retry backoff */
  lua_pushlightuserdata(L, e);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &engine_key);
  corolib_open(L);
  osexit_open(L);
  preload(L);
  make_private_env(L);
  static const char *const globals[] = {"flow", "http", "json", "log"};
  for (size_t i = 0; i < sizeof globals / sizeof *globals; i++) {
    lua_pushfstring(L, "engine.%s", globals[i]);
    engine_require(L, lua_tostring(L, -1));
    lua_setglobal(L, globals[i]);
    lua_pop(L, 1);
  }
  lazy_global(L, "census", "engine.census");
  return 0;
}

int engine_init(engine *e, enum log_level level, bool ignore_env) {
  memset(e, 0, sizeof *e);
  e->log_level = level;
  if (uv_loop_init(&e->loop)) return -1;
  task_runner_init(e);
  if (signals_init(e)) return -1;
  e->L = luaL_newstate();
  if (!e->L) return -1;
  /* Threads copy the main thread's extra space: NULL means "not a task". */
  *(task **)lua_getextraspace(e->L) = NULL;
  if (ignore_env) { /* lua -E: package.path and cpath ignore LUA_PATH... */
    lua_pushboolean(e->L, 1);
    lua_setfield(e->L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  lua_pushcfunction(e->L, setup_state);
  lua_pushlightuserdata(e->L, e);
  if (lua_pcall(e->L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "engine: cannot set up Lua: %s\n", lua_tostring(e->L, -1));
    return -1;
  }
  return 0;
}

static void report_failure(engine *e, task *t) {
  lua_State *L = e->L;
  if (task_canceled(t) && e->stop != STOP_NONE) {
    if (e->stop == STOP_SIGNAL)
      fprintf(stderr, "engine: interrupted by %s\n",
              e->interrupt_signal == SIGINT ? "SIGINT" : "SIGTERM");
    return;
  }
  task_push_error(L, t);
  /* An error object already says what failed and where in the flow; a
   * traceback into the engine's own Lua would only repeat it (-v shows it).
   * Any other error value is a bug in the flow: its traceback stays, as
   * lua prints it. */
  bool object = error_is_object(L, -1);
  size_t len;
  error_describe(L, -1);
  const char *msg = lua_tolstring(L, -1, &len);
  const char *trace = object && e->log_level > LOG_DEBUG ? NULL : task_traceback(t);
  fputs("engine: ", stderr);
  log_write_safe(stderr, msg, len, len);
  fprintf(stderr, "\n%s%s", trace ? trace : "", trace && *trace ? "\n" : "");
  lua_pop(L, 2);
}

/* Pushes lua/run.lua's function name; false (after a line) if it cannot. */
static bool push_run_function(engine *e, const char *name) {
  lua_State *L = e->L;
  lua_pushcfunction(L, private_require);
  lua_pushliteral(L, "engine.run");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "engine: %s\n", error_describe(L, -1));
    lua_pop(L, 2);
    return false;
  }
  lua_getfield(L, -1, name);
  lua_remove(L, -2);
  return true;
}

static void push_stop(engine *e) {
  if (e->stop == STOP_SIGNAL)
    lua_pushliteral(e->L, "signal");
  else if (e->stop == STOP_EXIT)
    lua_pushliteral(e->L, "exit");
  else
    lua_pushnil(e->L);
}

/* The flow's tasks ended (lua/run.lua's ending): the summary is made, and
 * flow.on_finish handlers run as a task, bounded by their timeouts; what
 * they leave running is cancelled. Returns the exit code, which a
 * handler's os.exit replaces. */
static int run_ending(engine *e, int rc, task *main_task) {
  lua_State *L = e->L;
  if (!push_run_function(e, "ending")) return rc;
  lua_pushinteger(L, rc);
  push_stop(e);
  if (task_failed(main_task) || task_canceled(main_task)) {
    task_push_error(L, main_task);
    error_describe(L, -1);
    lua_remove(L, -2);
  } else {
    lua_pushnil(L);
  }
  if (lua_pcall(L, 3, 1, 0) != LUA_OK) {
    fprintf(stderr, "engine: summary: %s\n", error_describe(L, -1));
    lua_pop(L, 2);
    return rc;
  }
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    return rc;
  }
  e->finishing = true;
  int exit_code = e->exit_code;
  enum engine_stop stop = e->stop;
  task *handlers = task_spawn(e, L, 0);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  while (!task_finished(handlers)) uv_run(&e->loop, UV_RUN_ONCE);
  task_cancel_all(e);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  if (task_failed(handlers)) report_failure(e, handlers);
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  e->finishing = false;
  if (e->stop == STOP_EXIT && (stop != STOP_EXIT || e->exit_code != exit_code))
    rc = e->exit_code;
  return rc;
}

/* The run's end (lua/run.lua's finish): the journal's record, then the
 * summary and metrics; false when a file could not be written. */
static bool finish_run(engine *e, int rc) {
  lua_State *L = e->L;
  if (!push_run_function(e, "finish")) return false;
  lua_pushinteger(L, rc);
  push_stop(e);
  if (e->summary_path)
    lua_pushstring(L, e->summary_path);
  else
    lua_pushnil(L);
  if (e->metrics_path)
    lua_pushstring(L, e->metrics_path);
  else
    lua_pushnil(L);
  lua_pushboolean(L, !e->no_summary);
  int status = lua_pcall(L, 5, 1, 0);
  bool ok = status == LUA_OK && lua_toboolean(L, -1);
  if (status != LUA_OK) {
    fprintf(stderr, "engine: summary: %s\n", error_describe(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return ok;
}

/* Runs the function on top of e->L (below its nargs arguments) as the main
 * task until the loop drains. Returns the process exit code. */
int engine_run(engine *e, int nargs) {
  lua_State *L = e->L;
  task *main_task = task_spawn(e, L, nargs);
  e->main_task = main_task;
  int handle_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_run(&e->loop, UV_RUN_DEFAULT);

  int rc = 0;
  if (task_live_count(e) > 0) {
    log_msg(e, LOG_ERROR,
            "%ld task(s) can never finish: they wait for each other",
            task_live_count(e));
    task_abandon_all(e);
    rc = 1;
  }
  if (task_failed(main_task) || task_canceled(main_task)) {
    report_failure(e, main_task);
    task_push_error(L, main_task);
    /* error(flow.error("usage", ...)): the flow's own usage error */
    rc = error_is_kind(L, -1, "usage") ? EXIT_USAGE : 1;
    lua_pop(L, 1);
  }
  if (task_report_unobserved(e) > 0) rc = 1;
  if (e->stop == STOP_SIGNAL) rc = 128 + e->interrupt_signal;
  if (e->stop == STOP_EXIT) rc = e->exit_code;
  output_close(e);
  rc = run_ending(e, rc, main_task);
  luaL_unref(L, LUA_REGISTRYINDEX, handle_ref);
  if (!finish_run(e, rc) && rc == 0) rc = 1;
  return rc;
}

static void close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void engine_shutdown(engine *e) {
  output_close(e);
  http_shutdown(e);
  signals_close();
  uv_walk(&e->loop, close_handle, NULL);
  while (uv_loop_close(&e->loop) == UV_EBUSY) uv_run(&e->loop, UV_RUN_DEFAULT);
  if (e->L) lua_close(e->L);
  e->L = NULL;
}
