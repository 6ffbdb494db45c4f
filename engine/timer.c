/* timer.c: time for tasks: sleep (a task suspended on a libuv timer), now
 * (the loop's monotonic clock), and every (a function run as a short task
 * at an interval, in the background: its timer does not keep the run
 * alive, as the journal's lease renewal must not), and loop_stats (how
 * long the loop's turns held it: loop_watch.c). */
#include <math.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "bindings.h"
#include "loop_watch.h"
#include "task.h"

typedef struct {
  op base;
  uv_timer_t timer;
} sleep_op;

static void sleep_release(sleep_op *s) {
  uv_timer_stop(&s->timer);
  uv_close((uv_handle_t *)&s->timer, engine_free_handle_data);
}

static void sleep_cancel(op *o) {
  sleep_release((sleep_op *)o);
}

static void sleep_done(uv_timer_t *timer) {
  sleep_op *s = timer->data;
  task *t = s->base.owner;
  sleep_release(s);
  lua_State *T = task_wake_begin(t);
  lua_pushboolean(T, 1);
  task_wake(t, 1);
}

/* sleep(seconds) */
static int timer_sleep(lua_State *L) {
  double seconds = luaL_checknumber(L, 1);
  if (!isfinite(seconds) || seconds < 0 || seconds > 1e9)
    return luaL_error(L, "flow.sleep: seconds must be a number from 0 to 1e9, "
                         "got %s", lua_tostring(L, 1));
  task *t = task_require_waitable(L, "flow.sleep");
  engine *e = task_engine(t);
  sleep_op *s = malloc(sizeof *s);
  if (!s) return luaL_error(L, "out of memory");
  s->base.cancel = sleep_cancel;
  uv_timer_init(&e->loop, &s->timer);
  s->timer.data = s;
  uv_timer_start(&s->timer, sleep_done, (uint64_t)llround(seconds * 1000.0), 0);
  return task_wait_op(L, t, &s->base);
}

/* now(): monotonic seconds, for durations */
static int timer_now(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

#define EVERY_MT "engine.every"

/* The C side of every(): the timer and what it runs. It lives until the
 * engine's shutdown (engine_at_shutdown), whatever happens to the Lua
 * handle, so the timer is closed exactly once, with its memory. */
typedef struct every {
  uv_timer_t timer;
  engine *e;
  int fn_ref;   /* the function */
  int task_ref; /* the task of the last tick (its handle, anchored) */
  task *last;
  struct every **handle; /* the Lua handle's pointer to this, or NULL */
  engine_cleanup cleanup;
} every;

static void every_tick(uv_timer_t *timer) {
  every *ev = timer->data;
  lua_State *L = ev->e->L;
  if (ev->task_ref != LUA_NOREF) { /* the last tick's task still runs: skip */
    if (!task_finished(ev->last)) return;
    luaL_unref(L, LUA_REGISTRYINDEX, ev->task_ref);
    ev->task_ref = LUA_NOREF;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, ev->fn_ref);
  ev->last = task_spawn(ev->e, L, 0);
  ev->task_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void every_halt(every *ev) {
  lua_State *L = ev->e->L;
  uv_timer_stop(&ev->timer);
  luaL_unref(L, LUA_REGISTRYINDEX, ev->fn_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, ev->task_ref);
  ev->fn_ref = ev->task_ref = LUA_NOREF;
}

static void every_free(uv_handle_t *h) {
  free(h->data);
}

static void every_shutdown(void *data) {
  every *ev = data;
  every_halt(ev);
  if (ev->handle) *ev->handle = NULL;
  uv_close((uv_handle_t *)&ev->timer, every_free);
}

/* ev:stop(): no more ticks (a tick's task that runs goes on). */
static int every_stop(lua_State *L) {
  every **h = luaL_checkudata(L, 1, EVERY_MT);
  if (*h) every_halt(*h);
  return 0;
}

static int every_gc(lua_State *L) {
  every **h = luaL_checkudata(L, 1, EVERY_MT);
  if (*h) {
    every_halt(*h);
    (*h)->handle = NULL;
    *h = NULL;
  }
  return 0;
}

/* every(seconds, fn) -> ev: fn runs as a task every seconds (a tick is
 * skipped while the last one's task runs). The timer does not keep the
 * loop alive; a task it started does, until it ends. fn must not raise:
 * its error would be reported as an unobserved task's. */
static int timer_every(lua_State *L) {
  double seconds = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!isfinite(seconds) || seconds < 0.001 || seconds > 1e6)
    return luaL_error(L, "every: seconds must be a number from 0.001 to 1e6");
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  every **h = lua_newuserdatauv(L, sizeof *h, 0);
  *h = NULL;
  luaL_setmetatable(L, EVERY_MT);
  every *ev = calloc(1, sizeof *ev);
  if (!ev) return luaL_error(L, "out of memory");
  ev->e = e;
  ev->task_ref = LUA_NOREF;
  lua_pushvalue(L, 2);
  ev->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(&e->loop, &ev->timer);
  ev->timer.data = ev;
  uv_unref((uv_handle_t *)&ev->timer);
  ev->cleanup.run = every_shutdown;
  ev->cleanup.data = ev;
  engine_at_shutdown(e, &ev->cleanup);
  ev->handle = h;
  *h = ev;
  uint64_t ms = (uint64_t)llround(seconds * 1000.0);
  uv_timer_start(&ev->timer, every_tick, ms, ms);
  return 1;
}

void timer_register(lua_State *L, engine *e) {
  static const luaL_Reg fns[] = {{"sleep", timer_sleep}, {"now", timer_now},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  if (luaL_newmetatable(L, EVERY_MT)) {
    lua_pushcfunction(L, every_gc);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushcfunction(L, every_stop);
    lua_setfield(L, -2, "stop");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, timer_every, 1);
  lua_setfield(L, -2, "every");
  loop_watch_register(L, e);
}
