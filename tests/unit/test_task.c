/* test_task.c: unit tests for the scheduler (task.c) through its C API:
 * spawning, outcomes, the traceback accessor, cancellation delivered once,
 * interrupts (never in the engine's own code, whatever its chunk's name),
 * os.exit's stop state, which thread belongs to which task, and the
 * engine's lists of hooks and shutdown work. Each case runs a real engine
 * (loop and Lua state) to completion. */
#include <lauxlib.h>

#include "check.h"
#include "errors.h"
#include "lifetime.h"
#include "own_code.h"
#include "task.h"

/* Spawns the function that `code` returns as a task (not the main task),
 * keeping its handle in a global. */
static task *spawn(engine *e, const char *code) {
  lua_State *L = e->L;
  CHECK(luaL_dostring(L, code) == LUA_OK);
  task *t = task_spawn(e, L, 0);
  lua_pushfstring(L, "handle%d", (int)task_id(t));
  lua_insert(L, -2);
  lua_settable(L, LUA_REGISTRYINDEX); /* keeps it */
  CHECK(!task_finished(t));
  return t;
}

/* spawn on a fresh engine, then run the loop until it drains. */
static task *run_task(engine *e, const char *code) {
  CHECK(engine_init(e, LOG_QUIET, true) == 0);
  task *t = spawn(e, code);
  uv_run(&e->loop, UV_RUN_DEFAULT);
  return t;
}

static void test_done(void) {
  engine e;
  task *t = run_task(&e, "return function() flow.sleep(0) return 1, 'two' end");
  CHECK(task_finished(t) && !task_failed(t) && !task_canceled(t));
  CHECK(task_traceback(t) == NULL);
  CHECK(task_engine(t) == &e);
  lua_State *L = e.L;
  lua_settop(L, 0);
  CHECK(task_push_outcome(L, t) == 2);
  CHECK(lua_tointeger(L, 1) == 1);
  CHECK_STR(lua_tostring(L, 2), "two");
  CHECK(task_live_count(&e) == 0);
  CHECK(task_current(L) == NULL && task_owner(L) == NULL); /* the host is no task */
  engine_shutdown(&e);
}

static void test_failed(void) {
  engine e;
  task *t = run_task(&e, "return function() local function inner() error('boom') end inner() end");
  CHECK(task_failed(t) && !task_canceled(t));
  CHECK(task_traceback(t) && strstr(task_traceback(t), "in local 'inner'"));
  lua_State *L = e.L;
  task_push_error(L, t);
  CHECK(strstr(error_describe(L, -1), "boom") != NULL);
  CHECK(task_report_unobserved(&e) == 1); /* nobody took it */
  CHECK(task_report_unobserved(&e) == 0);
  engine_shutdown(&e);
}

static void test_cancel_is_delivered_once(void) {
  engine e;
  CHECK(engine_init(&e, LOG_QUIET, true) == 0);
  lua_State *L = e.L;
  task *t = spawn(&e, "return function()\n"
                         "  local ok, err = pcall(flow.sleep, 10)\n"
                         "  flow.sleep(0) -- a second wait is not cancelled\n"
                         "  cleaned = flow.is_error(err, 'canceled')\n"
                         "  error(err, 0)\n"
                         "end");
  uv_run(&e.loop, UV_RUN_NOWAIT); /* it starts and waits */
  CHECK(!task_finished(t) && !task_was_canceled(t));
  task_cancel(t);
  CHECK(task_was_canceled(t));
  uv_run(&e.loop, UV_RUN_DEFAULT);
  CHECK(task_canceled(t) && !task_failed(t));
  lua_getglobal(L, "cleaned");
  CHECK(lua_toboolean(L, -1));
  task_cancel(t); /* a finished task: nothing happens */
  CHECK(task_report_unobserved(&e) == 0); /* a cancel is not a failure */
  engine_shutdown(&e);
}

static void test_cancel_before_start_and_interrupts(void) {
  engine e;
  CHECK(engine_init(&e, LOG_QUIET, true) == 0);
  lua_State *L = e.L;
  task *t = spawn(&e, "return function() ran = true end");
  task_cancel(t);
  uv_run(&e.loop, UV_RUN_DEFAULT);
  CHECK(task_canceled(t));
  lua_getglobal(L, "ran");
  CHECK(lua_isnil(L, -1));
  /* an interrupt reaches each task once; the engine's own cleanup
   * (shield) may still wait, nothing else may once the engine stops */
  task *u = spawn(&e, "return function() pcall(flow.sleep, 10) "
                      "require('engine.c.task').shield(flow.sleep, 0.01) end");
  task *v = spawn(&e, "return function() pcall(flow.sleep, 10) "
                      "local ok, err = pcall(flow.sleep, 0.01) stopped = not ok and err.kind end");
  uv_run(&e.loop, UV_RUN_NOWAIT);
  e.stop = STOP_SIGNAL;
  e.interrupt_signal = 2;
  task_cancel_all(&e);
  CHECK(!task_take_interrupt(u)); /* already taken */
  task_cancel_all(&e);           /* a second round does not cancel the cleanup */
  uv_run(&e.loop, UV_RUN_DEFAULT);
  CHECK(task_finished(u) && !task_failed(u) && !task_canceled(u));
  CHECK(task_finished(v) && !task_failed(v));
  lua_getglobal(L, "stopped");
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "canceled") == 0);
  engine_shutdown(&e);
}

static void test_threads_and_owners(void) {
  engine e;
  CHECK(engine_init(&e, LOG_QUIET, true) == 0);
  lua_State *L = e.L;
  task *t = spawn(&e, "return function()\n"
                         "  local co = coroutine.create(function() flow.sleep(0.01) return 'in co' end)\n"
                         "  parked = co\n"
                         "  return coroutine.resume(co)\n"
                         "end");
  uv_run(&e.loop, UV_RUN_NOWAIT);
  lua_getglobal(L, "parked");
  lua_State *co = lua_tothread(L, -1);
  CHECK(task_is_parked(co));
  CHECK(task_current(co) == NULL && task_owner(co) == NULL); /* not lent while parked */
  uv_run(&e.loop, UV_RUN_DEFAULT);
  CHECK(!task_is_parked(co) && task_finished(t) && !task_failed(t));
  engine_shutdown(&e);
}

static void test_exit(void) {
  engine e;
  task *t = run_task(&e, "return function()\n"
                         "  flow.spawn(flow.sleep, 10)\n"
                         "  local x <close> = setmetatable({}, {__close = function() closed = true end})\n"
                         "  os.exit(3, true)\n"
                         "end");
  CHECK(e.stop == STOP_EXIT && e.exit_code == 3 && e.exit_close);
  CHECK(task_finished(t) && !task_failed(t));
  CHECK(task_live_count(&e) == 0); /* the sleeping task was cancelled */
  lua_getglobal(e.L, "closed");
  CHECK(lua_toboolean(e.L, -1));
  engine_shutdown(&e);
}

/* probe(): what an interrupt hook firing here would do */
static int probe(lua_State *L) {
  lua_pushboolean(L, task_raise_interrupt(L, 2)); /* raises, or says "later" */
  return 1;
}

static void test_interrupts_wait_for_the_flows_code(void) {
  engine e;
  CHECK(engine_init(&e, LOG_QUIET, true) == 0);
  lua_State *L = e.L;
  lua_pushcfunction(L, probe);
  lua_setglobal(L, "probe");
  /* the engine's own code (its loader marks it: the name says nothing), under pcall */
  CHECK(luaL_loadbuffer(L, "return function() return pcall(probe) end", 41, "=own") == LUA_OK);
  own_code_add(L, -1);
  lua_call(L, 0, 1);
  lua_setglobal(L, "engine_code");
  /* the flow's code, even in a file named like the engine's library */
  CHECK(luaL_loadbuffer(L, "return function() return pcall(probe) end", 41, "@lua/fake.lua") == LUA_OK);
  lua_call(L, 0, 1);
  lua_setglobal(L, "flow_code");
  task *t = spawn(&e, "return function()\n"
                      "  local ok, later = engine_code()\n"
                      "  in_engine = {ok, later}\n"
                      "  local ok2, err = flow_code()\n"
                      "  in_flow = {ok2, flow.is_error(err, 'canceled')}\n"
                      "end");
  uv_run(&e.loop, UV_RUN_DEFAULT);
  CHECK(task_finished(t));
  lua_getglobal(L, "in_engine");
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  CHECK(lua_toboolean(L, -2) && !lua_toboolean(L, -1)); /* not raised: "later" */
  lua_settop(L, 0);
  lua_getglobal(L, "in_flow");
  lua_rawgeti(L, -1, 1);
  lua_rawgeti(L, -2, 2);
  CHECK(!lua_toboolean(L, -2) && lua_toboolean(L, -1)); /* raised in the flow's code */
  lua_settop(L, 0);
  engine_shutdown(&e);
}

static void count_spawn(void *data, task *parent, task *child) {
  (void)parent, (void)child;
  ++*(int *)data;
}

static bool never(void *data, task *t) {
  (void)data, (void)t;
  return false;
}

/* Several front ends may attach; each hears every event, any one may keep
 * a task running. */
static void test_hooks_are_a_list(void) {
  engine e;
  CHECK(engine_init(&e, LOG_QUIET, true) == 0);
  int a = 0, b = 0;
  engine_hooks ha = {.data = &a, .spawned = count_spawn};
  engine_hooks hb = {.data = &b, .spawned = count_spawn, .interruptible = never};
  engine_hooks_add(&e, &ha);
  engine_hooks_add(&e, &hb);
  task *t = spawn(&e, "return function() end");
  CHECK(a == 1 && b == 1);
  CHECK(!engine_interruptible(&e, t));
  engine_hooks_remove(&e, &hb);
  CHECK(engine_interruptible(&e, t));
  spawn(&e, "return function() end");
  CHECK(a == 2 && b == 1);
  uv_run(&e.loop, UV_RUN_DEFAULT);
  engine_hooks_remove(&e, &ha);
  engine_shutdown(&e);
}

static int cleanup_order[2], cleanups_run;

static void note_cleanup(void *data) {
  cleanup_order[cleanups_run++] = *(int *)data;
}

/* Bindings hand their shutdown work to the engine: it runs once, latest
 * first. */
static void test_shutdown_runs_the_cleanups(void) {
  engine e;
  CHECK(engine_init(&e, LOG_QUIET, true) == 0);
  int first = 1, second = 2;
  engine_cleanup c1 = {.run = note_cleanup, .data = &first};
  engine_cleanup c2 = {.run = note_cleanup, .data = &second};
  engine_at_shutdown(&e, &c1);
  engine_at_shutdown(&e, &c2);
  engine_shutdown(&e);
  CHECK(cleanups_run == 2 && cleanup_order[0] == 2 && cleanup_order[1] == 1);
}

int main(void) {
  test_interrupts_wait_for_the_flows_code();
  test_done();
  test_failed();
  test_cancel_is_delivered_once();
  test_cancel_before_start_and_interrupts();
  test_threads_and_owners();
  test_exit();
  test_hooks_are_a_list();
  test_shutdown_runs_the_cleanups();
  return check_done();
}
