/* engine.c: the engine's lifetime. Creates the Lua state with the engine
 * modules preloaded (flow, census, http, json, log, cjson), runs the main
 * function as the first task until the loop drains, reports how it ended
 * (with the run summary), and shuts down in the order that frees every
 * handle. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua-cjson.h>
#include <lualib.h>
#include <uv.h>

#include "engine.h"

static const char engine_key = 'e';

engine *engine_from(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &engine_key);
  engine *e = lua_touserdata(L, -1);
  lua_pop(L, 1);
  return e;
}

static int core_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  engine *e = engine_from(L);
  task *parent = task_current(L);
  task *t = task_spawn(e, L, lua_gettop(L) - 1);
  t->report = parent && repl_is_foreground(e, parent);
  return 1;
}

static int core_repl_quitting(lua_State *L) {
  lua_pushboolean(L, repl_quitting(engine_from(L)));
  return 1;
}

static int core_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

static int core_current(lua_State *L) {
  task *t = task_current(L);
  if (!t) return 0;
  lua_pushinteger(L, t->id);
  lua_pushboolean(L, t->ever_canceled);
  return 2;
}

static void count_active(uv_handle_t *h, void *arg) {
  engine *e = ((void **)arg)[0];
  if (uv_is_active(h) && h != (uv_handle_t *)&e->runner)
    ++*(long *)((void **)arg)[1];
}

/* core.stats(): live tasks and active libuv handles, for leak checks. */
static int core_stats(lua_State *L) {
  engine *e = engine_from(L);
  long handles = 0;
  void *arg[2] = {e, &handles};
  uv_walk(&e->loop, count_active, arg);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, task_live_count(e));
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, handles);
  lua_setfield(L, -2, "handles");
  return 1;
}

static int open_core(lua_State *L) {
  static const luaL_Reg fns[] = {{"spawn", core_spawn},
                                 {"join", task_join},
                                 {"sleep", timer_sleep},
                                 {"now", core_now},
                                 {"current", core_current},
                                 {"stats", core_stats},
                                 {"http_request", http_request},
                                 {"exec", exec_run},
                                 {"await_nested", task_await_nested},
                                 {"adopt", task_adopt},
                                 {"error", error_new_lua},
                                 {"is_error", error_is_lua},
                                 {"repl_start", repl_start},
                                 {"repl_quitting", core_repl_quitting},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  rules_open(L);
  return 1;
}

static int open_log(lua_State *L) {
  log_open(L, engine_from(L));
  return 1;
}

/* Loader for an embedded lua/<name>.lua. lua/embed.c compiled it with the
 * chunk name @lua/<name>.lua, kept in the bytecode, so tracebacks point at
 * the real file. */
static int load_embedded(lua_State *L) {
  const struct embedded_file *f = lua_touserdata(L, lua_upvalueindex(1));
  if (luaL_loadbufferx(L, f->source, f->size, f->name, "b") != LUA_OK)
    return lua_error(L);
  lua_call(L, 0, 1);
  return 1;
}

static void preload(lua_State *L, const char *name, lua_CFunction open) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, open);
  lua_setfield(L, -2, name);
  lua_pop(L, 1);
}

static void preload_embedded(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const struct embedded_file *f = embedded_lua; f->name; f++) {
    lua_pushfstring(L, "engine.%s", f->name);
    lua_pushlightuserdata(L, (void *)f);
    lua_pushcclosure(L, load_embedded, 1);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
}

static int setup_state(lua_State *L) {
  engine *e = lua_touserdata(L, 1);
  luaL_openlibs(L);
  srand((unsigned)uv_hrtime()); /* jitter for retry backoff */
  lua_pushlightuserdata(L, e);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &engine_key);
  error_open(L);
  task_open(L);
  preload(L, "engine.core", open_core);
  preload(L, "engine.log", open_log);
  preload(L, "cjson", luaopen_cjson);
  preload_embedded(L);
  static const char *const globals[] = {"flow", "http", "json", "log", "census"};
  for (size_t i = 0; i < sizeof globals / sizeof *globals; i++) {
    lua_getglobal(L, "require");
    lua_pushfstring(L, "engine.%s", globals[i]);
    lua_call(L, 1, 1);
    lua_setglobal(L, globals[i]);
  }
  return 0;
}

int engine_init(engine *e, enum log_level level) {
  memset(e, 0, sizeof *e);
  e->log_level = level;
  if (uv_loop_init(&e->loop)) return -1;
  task_runner_init(e);
  if (signals_init(e)) return -1;
  e->L = luaL_newstate();
  if (!e->L) return -1;
  /* Threads copy the main thread's extra space: NULL means "not a task". */
  *(task **)lua_getextraspace(e->L) = NULL;
  lua_pushcfunction(e->L, setup_state);
  lua_pushlightuserdata(e->L, e);
  if (lua_pcall(e->L, 1, 0, 0) != LUA_OK) {
    fprintf(stderr, "engine: cannot set up Lua: %s\n", lua_tostring(e->L, -1));
    return -1;
  }
  return 0;
}

static void report_failure(engine *e, task *t) {
  lua_State *T = t->thread;
  if (t->canceled && e->interrupt_signal) {
    fprintf(stderr, "engine: interrupted by %s\n",
            e->interrupt_signal == SIGINT ? "SIGINT" : "SIGTERM");
    return;
  }
  const char *msg = luaL_tolstring(T, -1, NULL);
  const char *trace = lua_tostring(T, -3);
  fprintf(stderr, "engine: %s\n%s%s", msg, trace ? trace : "",
          trace && *trace ? "\n" : "");
  lua_pop(T, 1);
}

/* The summary of steps and syncs, when the run had any (or a JSON summary
 * was asked for); false when the JSON file could not be written. */
static bool finish_report(engine *e, int rc) {
  lua_State *L = e->L;
  if (e->repl) return true;
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  bool loaded = lua_getfield(L, -1, "engine.report") == LUA_TTABLE;
  lua_pop(L, 2);
  if (!loaded && !e->summary_path) return true;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "engine.report");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    fprintf(stderr, "engine: summary: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return false;
  }
  lua_getfield(L, -1, "finish_run");
  lua_pushinteger(L, rc);
  lua_pushboolean(L, e->interrupt_signal != 0);
  if (e->summary_path)
    lua_pushstring(L, e->summary_path);
  else
    lua_pushnil(L);
  bool ok = lua_pcall(L, 3, 1, 0) == LUA_OK && lua_toboolean(L, -1);
  if (!ok && lua_type(L, -1) == LUA_TSTRING)
    fprintf(stderr, "engine: summary: %s\n", lua_tostring(L, -1));
  lua_pop(L, 2);
  return ok;
}

/* Runs the function on top of e->L (below its nargs arguments) as the main
 * task until the loop drains. Returns the process exit code. */
int engine_run(engine *e, int nargs) {
  lua_State *L = e->L;
  task *main_task = task_spawn(e, L, nargs);
  e->main_task = main_task;
  main_task->observed = true;
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
  if (main_task->state == TASK_FAILED) {
    report_failure(e, main_task);
    rc = 1;
  }
  if (task_report_unobserved(e) > 0) rc = 1;
  if (e->interrupt_signal) rc = 128 + e->interrupt_signal;
  luaL_unref(L, LUA_REGISTRYINDEX, handle_ref);
  progress_stop(e);
  if (!finish_report(e, rc) && rc == 0) rc = 1;
  return rc;
}

static void close_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

void engine_shutdown(engine *e) {
  progress_stop(e);
  repl_free(e);
  http_shutdown(e);
  signals_close();
  uv_walk(&e->loop, close_handle, NULL);
  while (uv_loop_close(&e->loop) == UV_EBUSY) uv_run(&e->loop, UV_RUN_DEFAULT);
  if (e->L) lua_close(e->L);
  e->L = NULL;
}
