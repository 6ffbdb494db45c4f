/* task.c: the task scheduler. A task is an engine-owned coroutine: spawn it,
 * resume it from the loop's run queue, suspend it on one pending op, wake it
 * when the op completes, cancel it, join it, and keep its outcome until
 * someone takes it. */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "engine.h"

#define TASK_MT "engine.task"

struct join_op {
  op base;
  task *target;
  struct join_op *prev, *next;
  bool has_timer;
  uv_timer_t timer;
};

static void runner_cb(uv_idle_t *idle);

static void enqueue(task *t) {
  engine *e = t->eng;
  t->ready_next = NULL;
  if (e->ready_tail)
    e->ready_tail->ready_next = t;
  else
    e->ready_head = t;
  e->ready_tail = t;
  if (!uv_is_active((uv_handle_t *)&e->runner))
    uv_idle_start(&e->runner, runner_cb);
}

static void live_link(task **head, task *t) {
  t->live_prev = NULL;
  t->live_next = *head;
  if (*head) (*head)->live_prev = t;
  *head = t;
}

static void live_unlink(task **head, task *t) {
  if (t->live_prev)
    t->live_prev->live_next = t->live_next;
  else
    *head = t->live_next;
  if (t->live_next) t->live_next->live_prev = t->live_prev;
  t->live_prev = t->live_next = NULL;
}

task *task_current(lua_State *L) {
  task *t = *(task **)lua_getextraspace(L);
  return (t && t->thread == L) ? t : NULL;
}

/* The task a thread belongs to: its own, or for a coroutine the task that
 * last resumed it (see nested waits below). */
static task *task_owner(lua_State *L) {
  task *t = *(task **)lua_getextraspace(L);
  return (t && t->state == TASK_RUNNING) ? t : NULL;
}

task *task_check(lua_State *L, int idx) {
  return (task *)luaL_checkudata(L, idx, TASK_MT);
}

static void push_cancel_error(lua_State *L, engine *e) {
  if (e->interrupt_signal)
    error_push(L, "canceled", "interrupted by %s",
               e->interrupt_signal == SIGINT ? "SIGINT" : "SIGTERM");
  else
    error_push(L, "canceled", "task canceled");
}

/* Checks that the running code may suspend, and delivers a pending
 * cancellation instead of suspending. Raises; returns the current task. */
task *task_require_waitable(lua_State *L, const char *what) {
  task *t = task_owner(L);
  if (!t)
    luaL_error(L, "%s must be called from a flow task (or a coroutine "
                  "resumed by one), not from a coroutine resumed outside "
                  "the engine", what);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s cannot wait here: it was called from a metamethod, a "
                  "C callback (table.sort, string.gsub) or a require'd "
                  "module's top level; call it from the flow body instead",
               what);
  if (t->cancel_requested) {
    t->cancel_requested = false;
    push_cancel_error(L, t->eng);
    lua_error(L);
  }
  return t;
}

/* Raises the error a wake delivered, or returns how many values follow the
 * ok flag at base + 1. */
static int resumed_values(lua_State *L, int base) {
  if (!lua_toboolean(L, base + 1)) {
    lua_pushvalue(L, base + 2);
    error_locate(L, -1);
    return lua_error(L);
  }
  return lua_gettop(L) - base - 1;
}

static int wait_continue(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return resumed_values(L, (int)ctx);
}

int task_wait_op(lua_State *L, task *t, op *o) {
  return task_yield(L, t, o, wait_continue);
}

/* Nested waits: a coroutine that a task resumes (coroutine.resume and
 * wrap, as replaced in lua/flow.lua) can call waiting functions too. The op
 * is armed for the task; the coroutine yields the marker below to the
 * resume that runs it, which then suspends the task with await_nested and,
 * once woken, resumes the coroutine with the op's values. */
static const char nested_marker = 'n';

int task_yield(lua_State *L, task *t, op *o, lua_KFunction k) {
  o->owner = t;
  t->op = o;
  if (L == t->thread) {
    t->state = TASK_WAITING;
    return lua_yieldk(L, 0, (lua_KContext)lua_gettop(L), k);
  }
  int base = lua_gettop(L);
  lua_pushlightuserdata(L, (void *)&nested_marker);
  return lua_yieldk(L, 1, (lua_KContext)base, k);
}

static int pass_values(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return lua_gettop(L) - (int)ctx;
}

/* core.await_nested(): called by coroutine.resume when the coroutine it
 * ran yielded the marker; returns the op's ok flag and values. */
int task_await_nested(lua_State *L) {
  task *t = task_owner(L);
  if (!t || !t->op) return luaL_error(L, "await_nested: no wait in progress");
  if (!lua_isyieldable(L)) { /* a C boundary between the wait and its task */
    op *o = t->op;
    t->op = NULL;
    o->cancel(o);
    return luaL_error(L, "cannot wait inside a coroutine resumed from a "
                         "metamethod or a C callback (table.sort, "
                         "string.gsub); wait in the flow body instead");
  }
  int base = lua_gettop(L);
  if (L == t->thread) {
    t->state = TASK_WAITING;
    return lua_yieldk(L, 0, (lua_KContext)base, pass_values);
  }
  lua_pushlightuserdata(L, (void *)&nested_marker); /* still deeper: pass up */
  return lua_yieldk(L, 1, (lua_KContext)base, pass_values);
}

/* core.adopt(co): co now belongs to the running task; pushes the marker. */
int task_adopt(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co != NULL, 1, "coroutine");
  *(task **)lua_getextraspace(co) = task_owner(L);
  lua_pushlightuserdata(L, (void *)&nested_marker);
  return 1;
}

lua_State *task_wake_begin(task *t) {
  t->op = NULL;
  return t->thread;
}

void task_wake(task *t, int nvalues) {
  t->nresume = nvalues;
  t->state = TASK_READY;
  enqueue(t);
}

static void join_free(struct join_op *j) {
  free(j);
}

static void join_timer_closed(uv_handle_t *h) {
  join_free((struct join_op *)h->data);
}

static void join_release(struct join_op *j) {
  task *target = j->target;
  if (j->prev)
    j->prev->next = j->next;
  else
    target->waiters = j->next;
  if (j->next) j->next->prev = j->prev;
  if (j->has_timer) {
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, join_timer_closed);
  } else {
    join_free(j);
  }
}

static void join_cancel(op *o) {
  join_release((struct join_op *)o);
}

/* Wakes the waiting task: join returns whether the target finished. */
static void join_complete(struct join_op *j, bool target_finished) {
  task *waiter = j->base.owner;
  join_release(j);
  lua_State *T = task_wake_begin(waiter);
  lua_pushboolean(T, 1);
  lua_pushboolean(T, target_finished);
  task_wake(waiter, 2);
}

static void join_timeout_cb(uv_timer_t *timer) {
  join_complete(timer->data, false);
}

static bool finished(const task *t) {
  return t->state == TASK_DONE || t->state == TASK_FAILED;
}

static int join_yield(lua_State *L, task *target, double timeout,
                      lua_KFunction k) {
  task *self = task_require_waitable(L, "task:wait");
  if (target == self) luaL_error(L, "a task cannot wait for itself");
  struct join_op *j = calloc(1, sizeof *j);
  if (!j) luaL_error(L, "out of memory");
  j->base.cancel = join_cancel;
  j->target = target;
  j->next = target->waiters;
  if (j->next) j->next->prev = j;
  target->waiters = j;
  if (timeout >= 0) {
    j->has_timer = true;
    uv_timer_init(&self->eng->loop, &j->timer);
    j->timer.data = j;
    uv_timer_start(&j->timer, join_timeout_cb, (uint64_t)(timeout * 1000.0 + 0.5),
                   0);
  }
  return task_yield(L, self, &j->base, k);
}

static double opt_seconds(lua_State *L, int idx, const char *what) {
  if (lua_isnoneornil(L, idx)) return -1;
  double s = luaL_checknumber(L, idx);
  if (!(s >= 0) || s > 1e9)
    luaL_error(L, "%s: timeout must be a number of seconds >= 0, got %s", what,
               lua_tostring(L, idx));
  return s;
}

/* core.join(handle[, timeout]): true once the task has finished, false when
 * the timeout passed first. Does not take the outcome. */
int task_join(lua_State *L) {
  task *target = task_check(L, 1);
  double timeout = opt_seconds(L, 2, "task:join");
  lua_settop(L, 2);
  if (finished(target)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return join_yield(L, target, timeout, wait_continue);
}

static void observe(task *t) {
  t->observed = true;
  if (t->in_unobserved) {
    t->in_unobserved = false;
    live_unlink(&t->eng->unobserved, t);
    luaL_unref(t->eng->L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
  }
}

int task_push_outcome(lua_State *L, task *t) {
  lua_State *T = t->thread;
  observe(t);
  if (t->state == TASK_FAILED) {
    lua_pushvalue(T, -1);
    lua_xmove(T, L, 1);
    return lua_error(L);
  }
  int top = lua_gettop(T);
  luaL_checkstack(L, t->nresults, "too many results");
  for (int i = top - t->nresults + 1; i <= top; i++) {
    lua_pushvalue(T, i);
    lua_xmove(T, L, 1);
  }
  return t->nresults;
}

static int wait_after_join(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  resumed_values(L, (int)ctx);
  return task_push_outcome(L, task_check(L, 1));
}

/* handle:wait(): the task's results, or its error re-raised. */
static int handle_wait(lua_State *L) {
  task *t = task_check(L, 1);
  lua_settop(L, 1);
  if (finished(t)) return task_push_outcome(L, t);
  return join_yield(L, t, -1, wait_after_join);
}

static int handle_cancel(lua_State *L) {
  task_cancel(task_check(L, 1));
  return 0;
}

static const char *state_name(const task *t) {
  switch (t->state) {
  case TASK_NEW:
  case TASK_READY:
  case TASK_RUNNING:
  case TASK_WAITING:
    return "running";
  case TASK_DONE:
    return "done";
  case TASK_FAILED:
    return t->canceled ? "canceled" : "failed";
  }
  return "?";
}

static int handle_status(lua_State *L) {
  lua_pushstring(L, state_name(task_check(L, 1)));
  return 1;
}

static int handle_tostring(lua_State *L) {
  task *t = task_check(L, 1);
  lua_pushfstring(L, "task %d (%s)", (int)t->id, state_name(t));
  return 1;
}

static int handle_index(lua_State *L) {
  task *t = task_check(L, 1);
  const char *k = luaL_checkstring(L, 2);
  if (strcmp(k, "id") == 0) {
    lua_pushinteger(L, t->id);
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_getfield(L, -1, k);
  return 1;
}

void task_open(lua_State *L) {
  static const luaL_Reg methods[] = {{"wait", handle_wait},
                                     {"cancel", handle_cancel},
                                     {"status", handle_status},
                                     {NULL, NULL}};
  luaL_newmetatable(L, TASK_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "methods");
  lua_pushcfunction(L, handle_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, handle_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushliteral(L, "task");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
}

/* Spawns fn(args...) from the top nargs + 1 values of L; pushes the handle.
 * The task starts from the run queue, never from inside this call. */
task *task_spawn(engine *e, lua_State *L, int nargs) {
  int fn = lua_gettop(L) - nargs;
  luaL_checktype(L, fn, LUA_TFUNCTION);
  task *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TASK_MT);
  lua_State *T = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  t->eng = e;
  t->thread = T;
  t->id = ++e->next_task_id;
  t->state = TASK_NEW;
  *(task **)lua_getextraspace(T) = t;
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_insert(L, fn);      /* handle below fn and args */
  lua_xmove(L, T, nargs + 1);
  live_link(&e->live, t);
  e->live_count++;
  enqueue(t);
  return t;
}

static void finish(task *t) {
  engine *e = t->eng;
  live_unlink(&e->live, t);
  e->live_count--;
  bool waited = t->waiters != NULL;
  while (t->waiters) join_complete(t->waiters, true);
  if (t == e->main_task) {
    if (t->state == TASK_FAILED) task_cancel_all(e);
    return; /* engine_run holds the main handle and takes its outcome */
  }
  bool report = t->report && e->repl;
  bool foreground = repl_is_foreground(e, t);
  if (report) {
    t->observed = true; /* the REPL shows its outcome */
    lua_rawgeti(e->L, LUA_REGISTRYINDEX, t->ref);
  }
  if (t->state == TASK_FAILED && !t->canceled && !t->observed && !waited) {
    live_link(&e->unobserved, t); /* stays anchored until taken or reported */
    t->in_unobserved = true;
  } else {
    luaL_unref(e->L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
  }
  if (report) repl_report(e);
  if (foreground) repl_chunk_done(e);
}

/* After an error the thread is dead: record a traceback under the error so
 * a later report can name where the task failed, then reset the thread so
 * pending to-be-closed variables run. */
static void fail(task *t) {
  lua_State *T = t->thread, *L = t->eng->L;
  luaL_traceback(L, T, NULL, 0);
  lua_resetthread(T); /* leaves the error object on top */
  lua_xmove(L, T, 1);
  lua_insert(T, -2);
  t->nresults = 1;
  t->state = TASK_FAILED;
  t->canceled = error_is_kind(T, -1, "canceled");
  finish(t);
}

static void resume(task *t) {
  lua_State *T = t->thread;
  int nargs;
  if (t->state == TASK_NEW) {
    nargs = lua_gettop(T) - 1;
    if (t->cancel_requested) {
      t->cancel_requested = false;
      lua_settop(T, 0);
      push_cancel_error(T, t->eng);
      t->nresults = 1;
      t->state = TASK_FAILED;
      t->canceled = true;
      lua_pushliteral(T, "");
      lua_insert(T, -2);
      finish(t);
      return;
    }
  } else {
    nargs = t->nresume;
    if (t->cancel_requested) { /* cancelled after its op completed */
      t->cancel_requested = false;
      lua_pop(T, nargs);
      lua_pushboolean(T, 0);
      push_cancel_error(T, t->eng);
      nargs = 2;
    }
  }
  t->state = TASK_RUNNING;
  int nres = 0;
  signals_set_running(T);
  int status = lua_resume(T, t->eng->L, nargs, &nres);
  signals_set_running(NULL);
  if (status == LUA_YIELD) {
    if (t->op && t->state == TASK_WAITING) return; /* suspended in a wait */
    lua_pop(T, nres);
    lua_resetthread(T);
    lua_settop(T, 0);
    lua_pushliteral(T, "");
    lua_pushliteral(T, "coroutine.yield was called outside a coroutine "
                       "(flow tasks wait with flow.sleep, task:wait, ...)");
    t->nresults = 1;
    t->state = TASK_FAILED;
    finish(t);
  } else if (status == LUA_OK) {
    t->nresults = nres;
    t->state = TASK_DONE;
    finish(t);
  } else {
    fail(t);
  }
}

static void runner_cb(uv_idle_t *idle) {
  engine *e = idle->data;
  /* Tasks woken while draining wait for the next turn of the loop, so I/O
   * is polled between batches. */
  task *tail = e->ready_tail;
  while (e->ready_head) {
    task *t = e->ready_head;
    e->ready_head = t->ready_next;
    if (!e->ready_head) e->ready_tail = NULL;
    resume(t);
    if (t == tail) break;
  }
  if (!e->ready_head) uv_idle_stop(&e->runner);
}

/* One interrupt cancels each task once, whether the signal hook caught the
 * task running Lua code or the loop found it waiting. */
bool task_take_interrupt(task *t) {
  if (t->interrupted) return false;
  t->interrupted = true;
  return true;
}

void task_cancel(task *t) {
  if (finished(t) || (t->eng->interrupt_signal && !task_take_interrupt(t)))
    return;
  t->ever_canceled = true;
  switch (t->state) {
  case TASK_DONE:
  case TASK_FAILED:
    return;
  case TASK_WAITING: {
    op *o = t->op;
    t->op = NULL;
    o->cancel(o);
    lua_State *T = t->thread;
    lua_pushboolean(T, 0);
    push_cancel_error(T, t->eng);
    task_wake(t, 2);
    return;
  }
  case TASK_NEW:
  case TASK_READY:
  case TASK_RUNNING:
    t->cancel_requested = true;
    return;
  }
}

void task_cancel_all(engine *e) {
  for (task *t = e->live; t; t = t->live_next) task_cancel(t);
}

/* At shutdown: release the ops of tasks that can never finish (they wait
 * on each other) without resuming them. */
void task_abandon_all(engine *e) {
  for (task *t = e->live; t; t = t->live_next) {
    if (t->op) {
      op *o = t->op;
      t->op = NULL;
      o->cancel(o);
    }
  }
}

/* Reports failures nobody waited for; returns how many there were. */
int task_report_unobserved(engine *e) {
  int n = 0;
  while (e->unobserved) {
    task *t = e->unobserved;
    lua_State *T = t->thread;
    const char *msg = luaL_tolstring(T, -1, NULL);
    log_msg(e, LOG_ERROR, "task %ld failed and nobody waited for it: %s%s%s",
            t->id, msg, *lua_tostring(T, -3) ? "\n" : "", lua_tostring(T, -3));
    lua_pop(T, 1);
    observe(t);
    n++;
  }
  return n;
}

long task_live_count(engine *e) {
  return e->live_count;
}

void task_runner_init(engine *e) {
  uv_idle_init(&e->loop, &e->runner);
  e->runner.data = e;
}
