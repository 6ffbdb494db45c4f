/* timer.c: time for tasks: sleep (a task suspended on a libuv timer) and
 * now (the loop's monotonic clock). */
#include <math.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "bindings.h"
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

void timer_register(lua_State *L) {
  static const luaL_Reg fns[] = {{"sleep", timer_sleep}, {"now", timer_now},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
