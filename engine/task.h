/* task.h: the binding author's API. A task is an engine-owned coroutine. A
 * binding that must wait checks it may (task_require_waitable), arms a
 * libuv or curl operation embedded in an `op`, and returns
 * task_wait_op(). When the operation completes, the loop calls
 * T = task_wake_begin(t), pushes an ok flag and values on T, then
 * task_wake(t, count); a false flag is followed by the error. If the task
 * is cancelled first, op->cancel runs instead (exactly one of the two). */
#ifndef TASK_H
#define TASK_H

#include <stdbool.h>

#include <lua.h>

#include "engine.h"

typedef struct op op;
struct op {
  void (*cancel)(op *o); /* releases the operation; never touches Lua */
  task *owner;
};

/* waiting */
task *task_require_waitable(lua_State *L, const char *what);
int task_wait_op(lua_State *L, task *t, op *o);
int task_yield(lua_State *L, task *t, op *o, lua_KFunction k);
lua_State *task_wake_begin(task *t);
void task_wake(task *t, int nvalues);

/* tasks */
task *task_spawn(engine *e, lua_State *L, int nargs); /* fn + args on top; pushes the handle */
task *task_current(lua_State *L); /* the task whose own thread L is */
task *task_owner(lua_State *L);   /* the task running L (its own or a nested coroutine) */
engine *task_engine(const task *t);
long task_id(const task *t);
bool task_finished(const task *t);
bool task_failed(const task *t);   /* finished with an error (not cancelled) */
bool task_canceled(const task *t); /* finished because it was cancelled */
bool task_was_canceled(const task *t); /* a cancel was requested at some point */
bool task_visible(const task *t);  /* the flow started it: front ends may show it */
void task_watch(task *t);          /* its end goes to the hooks (finished) */
void task_push_handle(lua_State *L, task *t);
int task_push_outcome(lua_State *L, task *t); /* results, or raises its error */
void task_push_error(lua_State *L, task *t);  /* a failed task's error */
const char *task_traceback(task *t);          /* a failed task's traceback */
void task_cancel(task *t);
void task_cancel_all(engine *e);
bool task_take_interrupt(task *t);
/* From a Lua hook: raises the interrupt in t's code, or returns false when
 * the engine's own code runs (try again later); true: nothing to do. */
bool task_raise_interrupt(lua_State *L, int signal);
/* After the interrupt hook: the task's own hook again (its deadline), or none. */
void task_restore_hook(lua_State *L);
void task_abandon_all(engine *e);
int task_report_unobserved(engine *e);
long task_live_count(engine *e);
void task_runner_init(engine *e);
void task_register(lua_State *L, engine *e); /* engine.c.task: spawn, join, current, stats, ... */

/* nested waits (coroutines resumed by a task, see corolib.c) */
bool task_is_parked(lua_State *co);    /* co is suspended in an engine wait */
void task_lend(lua_State *co, task *owner); /* co's waits belong to owner */
int task_pass_wait(lua_State *L, lua_State *co, lua_KContext ctx, lua_KFunction k);

/* os.exit: stop the run with code; see engine.h's STOP_EXIT */
int task_exit(lua_State *L, engine *e, int code, bool close);

#endif
