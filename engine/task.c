/* task.c: the task scheduler. A task is an engine-owned coroutine: spawn it,
 * resume it from the loop's run queue, suspend it on one pending op, wake it
 * when the op completes, cancel it, join it, and keep its outcome until
 * someone takes it. Nothing outside this file touches a task's fields.
 *
 * A task's thread carries its task in the thread's extra space, so
 * task_current(L) is one load. A user coroutine's extra space names the
 * task that resumed it only while that resume runs (task_lend), so no
 * coroutine ever keeps a pointer to a task that may be gone. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "errors.h"
#include "log.h"
#include "own_code.h"
#include "task.h"

#define TASK_MT "engine.task"

enum task_state {
  TASK_NEW,      /* spawned, not yet resumed */
  TASK_READY,    /* in the run queue with resume values pushed */
  TASK_RUNNING,  /* currently executing Lua code */
  TASK_WAITING,  /* suspended on an op */
  TASK_DONE,     /* returned; its results stay on its thread's stack */
  TASK_FAILED,   /* raised; traceback and error stay on its thread's stack */
  TASK_CANCELED, /* raised the cancel it was handed */
};

/* Cancellation is delivered once per request, so a cancelled task can still
 * wait while it cleans up; an interrupt (SIGINT/SIGTERM, os.exit) is a
 * request of its own that reaches each task once. */
enum task_cancel {
  CANCEL_NONE,
  CANCEL_PENDING,      /* requested; raised at the next wait or resume */
  CANCEL_DELIVERED,
  INTERRUPT_PENDING,
  INTERRUPT_DELIVERED,
};

struct join_op {
  op base;
  task *target;
  struct join_op *prev, *next;
  bool has_timer;
  uv_timer_t timer;
};

/* A task lives inside its Lua handle userdata. While it has not finished,
 * the handle is anchored in the registry (ref) so Lua cannot collect it;
 * afterwards the handle lives as long as Lua code holds it. */
struct task {
  engine *eng;
  lua_State *thread;
  int ref;
  long id;
  enum task_state state;
  enum task_cancel cancel;
  op *op;
  int nresume;  /* values pushed on thread for the next resume */
  int nresults; /* results kept on a finished thread's stack */
  int shielded;  /* inside tasks.shield: the engine's own cleanup runs */
  char *cancel_message; /* why it was cancelled (tasks.cancel), or NULL */
  char cancel_cause[16];
  double deadline; /* uv_hrtime() seconds after which its code is stopped; 0: none */
  bool observed;      /* someone has taken its outcome */
  bool visible;       /* the flow started it (flow.spawn): front ends may show it */
  bool watched;       /* a front end hears of its end */
  bool in_unobserved; /* linked in engine.unobserved */
  struct join_op *waiters;
  task *ready_next;
  task *live_prev, *live_next; /* in engine.live, later engine.unobserved */
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

static task **extra(lua_State *L) {
  return (task **)lua_getextraspace(L);
}

task *task_current(lua_State *L) {
  task *t = *extra(L);
  return (t && t->thread == L) ? t : NULL;
}

task *task_owner(lua_State *L) {
  task *t = *extra(L);
  return (t && t->state == TASK_RUNNING) ? t : NULL;
}

void task_lend(lua_State *co, task *owner) {
  *extra(co) = owner;
}

engine *task_engine(const task *t) { return t->eng; }
long task_id(const task *t) { return t->id; }

bool task_finished(const task *t) {
  return t->state >= TASK_DONE;
}

bool task_failed(const task *t) { return t->state == TASK_FAILED; }
bool task_canceled(const task *t) { return t->state == TASK_CANCELED; }
bool task_was_canceled(const task *t) { return t->cancel != CANCEL_NONE; }
bool task_visible(const task *t) { return t->visible; }
void task_watch(task *t) { t->watched = true; }

static task *check_handle(lua_State *L, int idx) {
  return (task *)luaL_checkudata(L, idx, TASK_MT);
}

void task_push_handle(lua_State *L, task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->ref);
}

/* The cancel error t gets: why the engine stops, else why t was
 * cancelled (its cause, e.g. "timeout" from flow.timeout, is a field the
 * report shows as the job's outcome), else a plain cancel. */
static void push_cancel_error(lua_State *L, task *t) {
  engine *e = t->eng;
  if (e->stop == STOP_SIGNAL) {
    error_push(L, "canceled", "%s", engine_interrupted_by(e->interrupt_signal));
  } else if (e->stop == STOP_EXIT) {
    error_push(L, "canceled", "the flow called os.exit(%d)", e->exit_code);
  } else if (t->cancel_message) {
    error_push(L, "canceled", "%s", t->cancel_message);
    lua_pushstring(L, t->cancel_cause);
    lua_setfield(L, -2, "cause");
  } else {
    error_push(L, "canceled", "task canceled");
  }
}

/* Takes a pending cancel: true when one was pending (now delivered). */
static bool take_cancel(task *t) {
  if (t->shielded > 0) return false; /* delivered when the cleanup ends */
  if (t->cancel == CANCEL_PENDING) {
    t->cancel = CANCEL_DELIVERED;
    return true;
  }
  if (t->cancel == INTERRUPT_PENDING) {
    t->cancel = INTERRUPT_DELIVERED;
    return true;
  }
  return false;
}

/* Once the engine is stopping (a signal, os.exit), nothing new starts:
 * a flow that catches the cancel and goes on (a pcall in a loop) gets
 * `canceled` from every later wait, except in flow.on_finish handlers
 * (engine.finishing) and the engine's own cleanup (tasks.shield). */
static bool stopping_for(const task *t) {
  const engine *e = t->eng;
  return e->stop != STOP_NONE && !e->finishing && t->shielded == 0;
}

static task *require_waitable(lua_State *L, const char *what, bool joining) {
  task *t = task_owner(L);
  if (!t)
    luaL_error(L, "%s must be called from a flow task or a coroutine it "
                  "resumes (not from a __close or __gc handler, or a "
                  "coroutine being closed)", what);
  if (!lua_isyieldable(L))
    luaL_error(L, "%s cannot wait here: it was called from a metamethod, a "
                  "C callback (table.sort, string.gsub) or a require'd "
                  "module's top level; call it from the flow body instead",
               what);
  /* waiting for other tasks to end stays possible: they end by themselves */
  if (take_cancel(t) || (!joining && stopping_for(t))) {
    push_cancel_error(L, t);
    lua_error(L);
  }
  return t;
}

/* Checks that the running code may suspend, and delivers a pending
 * cancellation (or the engine's stop) instead of suspending. Raises;
 * returns the current task. */
task *task_require_waitable(lua_State *L, const char *what) {
  return require_waitable(L, what, false);
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

/* Nested waits: a coroutine that a task resumes (coroutine.resume and wrap,
 * corolib.c) can call waiting functions too. The op is armed for the task;
 * the coroutine yields the marker below to the resume that runs it, which
 * passes the wait up (task_pass_wait) until the task's own thread
 * suspends. Once woken, each resume hands the op's values back down. While
 * it waits, a coroutine is parked: the marker stays on its stack, so no
 * one else can resume it. */
static const char wait_marker = 'w';

static int suspend(lua_State *L, task *t, lua_KContext ctx, lua_KFunction k) {
  if (L == t->thread) {
    t->state = TASK_WAITING;
    return lua_yieldk(L, 0, ctx, k);
  }
  lua_pushlightuserdata(L, (void *)&wait_marker);
  return lua_yieldk(L, 1, ctx, k);
}

int task_yield(lua_State *L, task *t, op *o, lua_KFunction k) {
  o->owner = t;
  t->op = o;
  return suspend(L, t, (lua_KContext)lua_gettop(L), k);
}

bool task_is_parked(lua_State *co) {
  return lua_status(co) == LUA_YIELD && lua_gettop(co) > 0 &&
         lua_touserdata(co, -1) == (void *)&wait_marker;
}

/* co (just resumed by L) yielded the marker: suspend L in turn. Returns
 * only when L cannot suspend (a C boundary lies between it and its task):
 * then the wait is released, co is unparked and 2 values (false and the
 * error) are pushed on L for co. */
int task_pass_wait(lua_State *L, lua_State *co, lua_KContext ctx,
                   lua_KFunction k) {
  task *t = task_owner(L);
  if (t && t->op && lua_isyieldable(L)) return suspend(L, t, ctx, k);
  lua_pop(co, 1); /* the marker */
  if (t && t->op) {
    op *o = t->op;
    t->op = NULL;
    o->cancel(o);
  }
  lua_pushboolean(L, 0);
  lua_pushliteral(L, "cannot wait inside a coroutine resumed from a "
                     "metamethod or a C callback (table.sort, "
                     "string.gsub); wait in the flow body instead");
  return 2;
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

/* --- join ---------------------------------------------------------------- */

static void join_release(struct join_op *j) {
  task *target = j->target;
  if (j->prev)
    j->prev->next = j->next;
  else
    target->waiters = j->next;
  if (j->next) j->next->prev = j->prev;
  if (j->has_timer) {
    uv_timer_stop(&j->timer);
    uv_close((uv_handle_t *)&j->timer, engine_free_handle_data);
  } else {
    free(j);
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

static int join_yield(lua_State *L, task *target, double timeout,
                      lua_KFunction k) {
  task *self = require_waitable(L, "task:wait", true);
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

/* join(handle[, timeout]): true once the task has finished, false when the
 * timeout passed first. Does not take the outcome. */
static int join(lua_State *L) {
  task *target = check_handle(L, 1);
  double timeout = opt_seconds(L, 2, "task:join");
  lua_settop(L, 2);
  if (task_finished(target)) {
    lua_pushboolean(L, 1);
    return 1;
  }
  return join_yield(L, target, timeout, wait_continue);
}

/* --- outcomes ------------------------------------------------------------ */

static void observe(task *t) {
  t->observed = true;
  if (t->in_unobserved) {
    t->in_unobserved = false;
    live_unlink(&t->eng->unobserved, t);
    luaL_unref(t->eng->L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
  }
}

/* A failed task's thread holds [traceback, error]. */
void task_push_error(lua_State *L, task *t) {
  lua_pushvalue(t->thread, 2);
  lua_xmove(t->thread, L, 1);
}

const char *task_traceback(task *t) {
  return task_finished(t) && t->state != TASK_DONE ? lua_tostring(t->thread, 1)
                                                   : NULL;
}

int task_push_outcome(lua_State *L, task *t) {
  lua_State *T = t->thread;
  observe(t);
  if (t->state != TASK_DONE) {
    task_push_error(L, t);
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
  return task_push_outcome(L, check_handle(L, 1));
}

/* handle:wait(): the task's results, or its error re-raised. */
static int handle_wait(lua_State *L) {
  task *t = check_handle(L, 1);
  lua_settop(L, 1);
  if (task_finished(t)) return task_push_outcome(L, t);
  return join_yield(L, t, -1, wait_after_join);
}

static int handle_cancel(lua_State *L) {
  task_cancel(check_handle(L, 1));
  return 0;
}

static const char *state_name(const task *t) {
  switch (t->state) {
  case TASK_DONE:
    return "done";
  case TASK_FAILED:
    return "failed";
  case TASK_CANCELED:
    return "canceled";
  default:
    return "running";
  }
}

static int handle_status(lua_State *L) {
  lua_pushstring(L, state_name(check_handle(L, 1)));
  return 1;
}

static int handle_tostring(lua_State *L) {
  task *t = check_handle(L, 1);
  lua_pushfstring(L, "task %d (%s)", (int)t->id, state_name(t));
  return 1;
}

static int handle_index(lua_State *L) {
  task *t = check_handle(L, 1);
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

/* The handle is collected only after the task finished (a live task is
 * anchored): its thread forgets the task and its kept outcome, so a thread
 * that outlives its handle (coroutine.running() kept it) reads as dead. */
static int handle_gc(lua_State *L) {
  task *t = check_handle(L, 1);
  free(t->cancel_message);
  t->cancel_message = NULL;
  if (!t->thread) return 0;
  *extra(t->thread) = NULL;
  if (task_finished(t)) lua_settop(t->thread, 0);
  t->thread = NULL;
  return 0;
}

/* --- spawning, running, finishing ---------------------------------------- */

static task *spawn_task(engine *e, lua_State *L, int nargs, bool visible);

/* Spawns fn(args...) from the top nargs + 1 values of L; pushes the handle.
 * The task starts from the run queue, never from inside this call. */
task *task_spawn(engine *e, lua_State *L, int nargs) {
  return spawn_task(e, L, nargs, false);
}

static task *spawn_task(engine *e, lua_State *L, int nargs, bool visible) {
  int fn = lua_gettop(L) - nargs;
  luaL_checktype(L, fn, LUA_TFUNCTION);
  task *t = lua_newuserdatauv(L, sizeof *t, 1);
  memset(t, 0, sizeof *t);
  t->ref = LUA_NOREF;
  luaL_setmetatable(L, TASK_MT);
  lua_State *T = lua_newthread(L);
  lua_setiuservalue(L, -2, 1);
  t->eng = e;
  t->thread = T;
  t->id = ++e->next_task_id;
  t->state = TASK_NEW;
  t->visible = visible;
  *extra(T) = t;
  lua_pushvalue(L, -1);
  t->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_insert(L, fn); /* handle below fn and args */
  lua_xmove(L, T, nargs + 1);
  live_link(&e->live, t);
  e->live_count++;
  engine_tell_spawned(e, task_owner(L), t);
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
    if (t->state != TASK_DONE) task_cancel_all(e);
    return; /* engine_run holds the main handle and takes its outcome */
  }
  bool tell = t->watched && e->hooks;
  if (tell) {
    t->observed = true; /* the front end shows its outcome */
    task_push_handle(e->L, t);
  }
  if (t->state == TASK_FAILED && !t->observed && !waited) {
    live_link(&e->unobserved, t); /* stays anchored until taken or reported */
    t->in_unobserved = true;
  } else {
    luaL_unref(e->L, LUA_REGISTRYINDEX, t->ref);
    t->ref = LUA_NOREF;
  }
  if (tell) {
    engine_tell_finished(e, e->L, t);
    lua_pop(e->L, 1);
  }
}

/* The one way a task fails: the error is on top of its thread. A thread
 * that died (dead = true) first gets a traceback of where it failed, then
 * its pending to-be-closed variables run (an error they raise replaces the
 * first, as in stock Lua). The thread keeps [traceback, error]. */
static void task_fail(task *t, bool dead) {
  lua_State *T = t->thread, *L = t->eng->L;
  if (dead) {
    luaL_traceback(L, T, NULL, 0);
    lua_resetthread(T); /* leaves the error object on top */
  } else {
    lua_pushliteral(L, "");
  }
  lua_xmove(T, L, 1);
  lua_settop(T, 0);
  lua_xmove(L, T, 2);
  t->nresults = 1;
  t->state = error_is_kind(T, 2, "canceled") ? TASK_CANCELED : TASK_FAILED;
  finish(t);
}

static void fail_with(task *t, bool canceled, const char *message) {
  lua_State *T = t->thread;
  lua_settop(T, 0);
  if (canceled)
    push_cancel_error(T, t);
  else
    lua_pushstring(T, message);
  task_fail(t, false);
}

/* os.exit from a task that could suspend: it did, on this op, which the
 * run queue recognises. */
static void exit_cancel(op *o) { (void)o; }
static op exit_op = {exit_cancel, NULL};

static void exit_finish(task *t) {
  engine *e = t->eng;
  t->op = NULL;
  /* As lua_close does for the main thread: close its pending <close>
   * variables, ignoring their errors. */
  if (e->exit_close) lua_resetthread(t->thread);
  lua_settop(t->thread, 0);
  t->nresults = 0;
  t->state = TASK_DONE;
  finish(t);
  task_cancel_all(e);
}

/* Where the task cannot stop at once (a C boundary: metamethod, sort
 * comparator, require), every task, this one included, is cancelled. The
 * context is the engine. */
static int exit_blocked(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  engine *e = (engine *)ctx;
  task_cancel_all(e);
  error_push(L, "canceled", "the flow called os.exit(%d)", e->exit_code);
  return lua_error(L);
}

int task_exit(lua_State *L, engine *e, int code, bool close) {
  if (e->stop != STOP_EXIT || e->finishing) { /* a handler's os.exit has the last word */
    e->stop = STOP_EXIT;
    e->exit_code = code;
    e->exit_close = close;
  }
  engine_begin_stop(e);
  task *t = task_owner(L);
  if (!t || !lua_isyieldable(L)) return exit_blocked(L, LUA_OK, (lua_KContext)e);
  t->op = &exit_op;
  return suspend(L, t, (lua_KContext)e, exit_blocked);
}

static void resume(task *t) {
  lua_State *T = t->thread;
  int nargs;
  if (t->state == TASK_NEW) {
    nargs = lua_gettop(T) - 1;
    if (take_cancel(t)) {
      fail_with(t, true, NULL);
      return;
    }
  } else {
    nargs = t->nresume;
    if (take_cancel(t)) { /* cancelled after its op completed */
      lua_pop(T, nargs);
      lua_pushboolean(T, 0);
      push_cancel_error(T, t);
      nargs = 2;
    }
  }
  t->state = TASK_RUNNING;
  int nres = 0;
  t->eng->running = T;
  atomic_store_explicit(&t->eng->resume_started, uv_hrtime(), memory_order_relaxed);
  int status = lua_resume(T, t->eng->L, nargs, &nres);
  atomic_store_explicit(&t->eng->resume_started, 0, memory_order_relaxed);
  t->eng->running = NULL;
  if (status == LUA_YIELD) {
    if (t->op == &exit_op) {
      exit_finish(t);
    } else if (!t->op || t->state != TASK_WAITING) {
      /* cannot happen: coroutine.yield refuses at task level */
      lua_pop(T, nres);
      lua_resetthread(T);
      fail_with(t, false, "attempt to yield from outside a coroutine");
    }
  } else if (status == LUA_OK) {
    t->nresults = nres;
    t->state = TASK_DONE;
    finish(t);
  } else {
    task_fail(t, true);
  }
}

/* How long one turn of the loop resumes tasks before it polls again. */
#define RUN_SLICE_NS 2000000

static void runner_cb(uv_idle_t *idle) {
  engine *e = idle->data;
  /* Tasks woken while draining wait for the next turn of the loop, so I/O
   * is polled between batches; so do the rest of a batch that has run
   * RUN_SLICE_NS (a thousand tasks started at once: their timers and
   * answers are not held up behind them). */
  task *tail = e->ready_tail;
  uint64_t began = uv_hrtime();
  while (e->ready_head) {
    task *t = e->ready_head;
    e->ready_head = t->ready_next;
    if (!e->ready_head) e->ready_tail = NULL;
    resume(t);
    if (t == tail || uv_hrtime() - began > RUN_SLICE_NS) break;
  }
  if (!e->ready_head) uv_idle_stop(&e->runner);
}

/* --- cancellation -------------------------------------------------------- */

/* One interrupt cancels each task once, whether the signal hook caught the
 * task running Lua code or the loop found it waiting. */
bool task_take_interrupt(task *t) {
  if (t->cancel >= INTERRUPT_PENDING) return false;
  t->cancel = INTERRUPT_PENDING;
  return true;
}

void task_cancel(task *t) {
  if (task_finished(t)) return;
  if (t->eng->stop != STOP_NONE) {
    if (!task_take_interrupt(t)) return;
  } else {
    t->cancel = CANCEL_PENDING;
  }
  if (t->state == TASK_WAITING && t->shielded == 0) {
    take_cancel(t);
    op *o = t->op;
    t->op = NULL;
    o->cancel(o);
    lua_State *T = t->thread;
    lua_pushboolean(T, 0);
    push_cancel_error(T, t);
    task_wake(t, 2);
  }
}

void task_cancel_all(engine *e) {
  task *next;
  for (task *t = e->live; t; t = next) {
    next = t->live_next;
    task_cancel(t);
  }
}

/* Whether the innermost Lua function running on L is the engine's own
 * (its loader recorded which: own_code.h). */
static bool in_engine_code(lua_State *L) {
  return own_code_at(L, 0);
}

/* Raises the interrupt in t now, unless a front end keeps t running or
 * it was delivered already. */
static void task_raise_interrupt_now(lua_State *L, task *t, int signal) {
  if (!engine_interruptible(t->eng, t)) return;
  if (t->cancel >= INTERRUPT_PENDING) return;
  t->cancel = INTERRUPT_DELIVERED;
  error_push(L, "canceled", "%s", engine_interrupted_by(signal));
  lua_error(L);
}

/* Called from the interrupt hook while t runs Lua code: raises the cancel
 * there, unless a front end keeps this task running. Inside the engine's
 * own Lua code it waits (returns false): a pcall there (a journal write,
 * an answer check) must not swallow the interrupt; it arrives in the
 * flow's code or at the next wait. */
bool task_raise_interrupt(lua_State *L, int signal) {
  task *t = task_current(L);
  if (!t) t = task_owner(L);
  if (!t) return true;
  if (!engine_interruptible(t->eng, t)) return true;
  if (t->cancel >= INTERRUPT_PENDING) return true;
  if (in_engine_code(L)) return false;
  task_raise_interrupt_now(L, t, signal);
  return true;
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
    const char *msg = error_describe(T, 2);
    const char *trace = task_traceback(t);
    log_msg(e, LOG_ERROR, "task %ld failed and nobody waited for it: %s%s%s",
            t->id, msg, trace && *trace ? "\n" : "", trace ? trace : "");
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

/* --- Lua functions ------------------------------------------------------- */

/* The engine these functions were registered for (upvalue 1). */
static engine *engine_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* spawn(fn, ...): a task of the engine's own (a journal commit, a provider's
 * listing); front ends do not show it. */
static int spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  spawn_task(engine_of(L), L, lua_gettop(L) - 1, false);
  return 1;
}

/* Whether the code that called the Lua function calling this one (flow.spawn)
 * is the flow's. After a tail call (a flow's `return flow.spawn(f)`, a REPL
 * line) that caller is gone from the stack: the engine's own code never
 * hands a spawn on that way, so it was the flow's. */
static bool called_from_flow(lua_State *L) {
  lua_Debug ar;
  if (!lua_getstack(L, 1, &ar)) return true;
  lua_getinfo(L, "t", &ar);
  return ar.istailcall || !own_code_at(L, 2);
}

/* spawn_visible(fn, ...): flow.spawn's spawn. The task is the flow's, which
 * front ends may show, when the flow's code called flow.spawn; the tasks
 * flow.parallel and flow.timeout start through it are the engine's own. */
static int spawn_visible(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  spawn_task(engine_of(L), L, lua_gettop(L) - 1, called_from_flow(L));
  return 1;
}

/* A cancel that arrived while the task was shielded reaches it in the
 * flow's code, as the interrupt hook does: a pcall in the engine's own
 * Lua (a journal write) must not swallow it, and a flow that never waits
 * outside the engine's shielded work (steps in a loop) would otherwise
 * never see it. */
#define PENDING_RETRY_INSTRUCTIONS 1000

static void pending_cancel_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  task *t = task_owner(L);
  if (!t || t->shielded > 0) { /* shielded again: its end arms this anew */
    task_restore_hook(L);
    return;
  }
  if (in_engine_code(L)) return; /* (the hook stays: the next call, return or count) */
  task_restore_hook(L);
  if (take_cancel(t)) {
    push_cancel_error(L, t);
    error_locate(L, -1);
    lua_error(L);
  }
}

static int shield_k(lua_State *L, int status, lua_KContext ctx) {
  task *t = (task *)ctx;
  if (t) t->shielded--;
  if (t && t->shielded == 0 && (t->cancel == CANCEL_PENDING || t->cancel == INTERRUPT_PENDING))
    lua_sethook(L, pending_cancel_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, PENDING_RETRY_INSTRUCTIONS);
  if (status != LUA_OK && status != LUA_YIELD) return lua_error(L);
  return lua_gettop(L);
}

/* shield(fn, ...): fn(...) as the engine's own cleanup (cancelling a run
 * it started, after a stop): its waits are allowed once the engine is
 * stopping, and a cancel that arrives meanwhile is delivered after it. */
static int shield(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  task *t = task_owner(L);
  if (t) t->shielded++;
  int status = lua_pcallk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, (lua_KContext)t, shield_k);
  return shield_k(L, status, (lua_KContext)t);
}

/* cancel(handle, cause, message): cancels the task saying why: its cancel
 * error reads message and carries cause ("timeout" from flow.timeout), so
 * the job it stops shows that, not a bare cancel. */
static int cancel_because(lua_State *L) {
  task *t = check_handle(L, 1);
  const char *cause = luaL_checkstring(L, 2);
  const char *message = luaL_checkstring(L, 3);
  if (!task_finished(t) && t->cancel == CANCEL_NONE && !t->cancel_message) {
    t->cancel_message = strdup(message);
    snprintf(t->cancel_cause, sizeof t->cancel_cause, "%s", cause);
  }
  task_cancel(t);
  return 0;
}

/* can_wait() -> whether the code running here may wait (a task's code,
 * no C boundary in between): coroutine.isyieldable as the engine sees it
 * (a flow sees a task's own thread as the main thread). */
static int can_wait(lua_State *L) {
  lua_pushboolean(L, task_owner(L) != NULL && lua_isyieldable(L));
  return 1;
}

/* stop_budget(seconds): ENGINE_STOP_TIMEOUT, as lua/run.lua read it. */
static int set_stop_budget(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  e->stop_budget = luaL_checknumber(L, 1);
  return 0;
}

/* stop_left() -> seconds left of the stop budget, or nil when the engine
 * is not stopping: what cleanups (cancels, flow.on_finish handlers) may
 * still spend. */
static int stop_left(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  if (!e->stop_began) return 0;
  double spent = (double)(uv_now(&e->loop) - (e->stop_began - 1)) / 1000.0;
  double left = e->stop_budget - spent;
  lua_pushnumber(L, left > 0 ? left : 0);
  return 1;
}

/* check_stop(): raises the cancel a wait would raise now (a pending
 * cancel, or the engine stopping), for work that starts something
 * without waiting first. */
static int check_stop(lua_State *L) {
  task *t = task_owner(L);
  if (t && (take_cancel(t) || stopping_for(t))) {
    push_cancel_error(L, t);
    return lua_error(L);
  }
  /* a signal the loop has not seen yet: the engine's long loops (which the
   * interrupt hook leaves alone) end here */
  int sig = t ? t->eng->caught_signal : 0;
  if (t && sig && t->shielded == 0) task_raise_interrupt_now(L, t, sig);
  return 0;
}

/* The count hook of a task with a deadline: past it, the task's own code
 * (not the engine's, whose pcalls would swallow it) raises `timeout`. */
#define DEADLINE_INSTRUCTIONS 10000

static void deadline_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  task *t = task_owner(L);
  if (!t || t->deadline <= 0 || (double)uv_hrtime() / 1e9 < t->deadline) return;
  if (in_engine_code(L)) return; /* the next count tries again */
  t->deadline = 0;
  lua_sethook(L, NULL, 0, 0);
  error_push(L, "timeout", "did not finish in time and was stopped");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "deadline");
  lua_error(L);
}

void task_restore_hook(lua_State *L) {
  task *t = task_owner(L);
  if (t && t->deadline > 0)
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT, DEADLINE_INSTRUCTIONS);
  else
    lua_sethook(L, NULL, 0, 0);
}

/* set_deadline(handle, seconds): past it the task's code stops even if it
 * never waits (a flow.on_finish handler stuck in a loop); the hook is
 * inherited by the coroutines it creates. */
static int set_deadline(lua_State *L) {
  task *t = check_handle(L, 1);
  double seconds = luaL_checknumber(L, 2);
  if (task_finished(t)) return 0;
  t->deadline = (double)uv_hrtime() / 1e9 + seconds;
  lua_sethook(t->thread, deadline_hook, LUA_MASKCOUNT, DEADLINE_INSTRUCTIONS);
  return 0;
}

/* current(): the running task's id and whether it was ever cancelled. */
static int current(lua_State *L) {
  task *t = task_owner(L);
  if (!t) return 0;
  lua_pushinteger(L, t->id);
  lua_pushboolean(L, task_was_canceled(t));
  return 2;
}

static void count_active(uv_handle_t *h, void *arg) {
  engine *e = ((void **)arg)[0];
  if (uv_is_active(h) && h != (uv_handle_t *)&e->runner && h != (uv_handle_t *)&e->watch.prepare)
    ++*(long *)((void **)arg)[1];
}

/* stats(): live tasks and active libuv handles, for leak checks. */
static int stats(lua_State *L) {
  engine *e = engine_of(L);
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

void task_register(lua_State *L, engine *e) {
  static const luaL_Reg methods[] = {{"wait", handle_wait},
                                     {"cancel", handle_cancel},
                                     {"status", handle_status},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, TASK_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "methods");
    lua_pushcfunction(L, handle_index);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, handle_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, handle_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "task");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"spawn", spawn},
                                 {"spawn_visible", spawn_visible},
                                 {"join", join},
                                 {"current", current},
                                 {"stats", stats},
                                 {"shield", shield},
                                 {"check_stop", check_stop},
                                 {"cancel", cancel_because},
                                 {"set_deadline", set_deadline},
                                 {"stop_budget", set_stop_budget},
                                 {"stop_left", stop_left},
                                 {"can_wait", can_wait},
                                 {NULL, NULL}};
  lua_pushlightuserdata(L, e);
  luaL_setfuncs(L, fns, 1);
}
