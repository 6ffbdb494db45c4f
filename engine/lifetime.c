/* lifetime.c: the engine's lifetime. Creates the loop and the Lua state
 * (modules.c sets up what Lua code can reach), runs the main function as
 * the first task until the loop drains, reports how it ended (with the run
 * summary of lua/run.lua), and shuts down in the order that frees every
 * handle: bindings' cleanups, then every handle, then Lua. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <uv.h>

#include "errors.h"
#include "lifetime.h"
#include "log.h"
#include "loop_watch.h"
#include "modules.h"
#include "output.h"
#include "secrets.h"
#include "signals.h"
#include "task.h"
#include "watchdog.h"

extern char **environ;

static int setup_state(lua_State *L) {
  engine *e = lua_touserdata(L, 1);
  /* The secrets the environment holds (API keys, tokens) are hidden from
   * the start, whatever a flow later does with them. */
  secrets_add_environment(environ);
  srand((unsigned)uv_hrtime()); /* jitter for retry backoff */
  modules_open(L, e);
  return 0;
}

#define STOP_BUDGET_DEFAULT 20 /* ENGINE_STOP_TIMEOUT: under systemd's and Kubernetes' stop timeouts */

/* The stop budget is spent (cancels or flow.on_finish handlers still
 * run): the engine exits now, as a scheduler's SIGKILL would soon, but
 * saying so and with the stop's exit status. */
static void stop_budget_spent(uv_timer_t *timer) {
  engine *e = timer->data;
  char line[200];
  int n = snprintf(line, sizeof line, "the stop took longer than ENGINE_STOP_TIMEOUT (%g s): exiting now; "
                   "cleanups still running were cut short", e->stop_budget);
  log_final(e, line, (size_t)n, NULL);
  fflush(stdout);
  fflush(stderr);
  _exit(e->stop == STOP_SIGNAL ? 128 + e->interrupt_signal : e->exit_code);
}

static void arm_stop_timer(engine *e) {
  uv_timer_start(&e->stop_timer, stop_budget_spent, (uint64_t)(e->stop_budget * 1000.0 + 0.5), 0);
}

int engine_init(engine *e, enum log_level level, bool ignore_env) {
  memset(e, 0, sizeof *e);
  e->log_level = level;
  if (uv_loop_init(&e->loop) || loop_watch_init(e)) return -1;
  e->stop_budget = STOP_BUDGET_DEFAULT;
  uv_timer_init(&e->loop, &e->stop_timer);
  uv_unref((uv_handle_t *)&e->stop_timer); /* it never keeps the loop alive */
  e->stop_timer.data = e;
  e->stopping = arm_stop_timer;
  task_runner_init(e);
  if (signals_init(e)) return -1;
  watchdog_start(e); /* without it, only the WARN about a held loop is missing */
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
    if (e->stop == STOP_SIGNAL) {
      const char *line = engine_interrupted_by(e->interrupt_signal);
      log_final(e, line, strlen(line), NULL);
    }
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
  log_final(e, msg, len, trace);
  lua_pop(L, 2);
}

static int require_run(lua_State *L) {
  modules_require(L, "engine.run");
  return 1;
}

/* Pushes lua/run.lua's function name; false (after a line) if it cannot. */
static bool push_run_function(engine *e, const char *name) {
  lua_State *L = e->L;
  lua_pushcfunction(L, require_run);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    log_final_value(e, L, -1);
    lua_pop(L, 1);
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
    log_final_value(e, L, -1);
    lua_pop(L, 1);
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

int engine_call_task(engine *e, int nargs, int *nresults) {
  lua_State *L = e->L;
  task *t = task_spawn(e, L, nargs);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  while (!task_finished(t)) uv_run(&e->loop, UV_RUN_ONCE);
  int status = LUA_OK;
  *nresults = 0;
  if (task_failed(t) || task_canceled(t)) {
    task_push_error(L, t);
    status = LUA_ERRRUN;
  } else {
    *nresults = task_push_outcome(L, t);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
  return status;
}

/* The run's end (lua/run.lua's finish): the journal's record, then the
 * summary and metrics; false when a file could not be written. It runs as
 * a task, like every use of the journal's store (whose waits yield). */
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
  e->finishing = true;
  task *t = task_spawn(e, L, 5);
  int ref = luaL_ref(L, LUA_REGISTRYINDEX);
  while (!task_finished(t)) uv_run(&e->loop, UV_RUN_ONCE);
  uv_run(&e->loop, UV_RUN_DEFAULT); /* what it left (a commit's task) ends */
  e->finishing = false;
  bool ok = false;
  if (task_failed(t)) {
    task_push_error(L, t);
    log_final_value(e, L, -1);
    lua_pop(L, 1);
  } else if (!task_canceled(t)) {
    int n = task_push_outcome(L, t);
    ok = n > 0 && lua_toboolean(L, -n);
    lua_pop(L, n);
  }
  luaL_unref(L, LUA_REGISTRYINDEX, ref);
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
  engine_run_cleanups(e);
  watchdog_stop();
  signals_close();
  uv_walk(&e->loop, close_handle, NULL);
  while (uv_loop_close(&e->loop) == UV_EBUSY) uv_run(&e->loop, UV_RUN_DEFAULT);
  if (e->L) lua_close(e->L);
  e->L = NULL;
}
