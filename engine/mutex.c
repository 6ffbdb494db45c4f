/* mutex.c: a lock that tasks take in turn (engine.c.mutex), for a
 * resource one task at a time may use across waits: the journal's
 * PostgreSQL connection, where a transaction spans several queries.
 * lock() waits (yields) while another task holds it; unlock() hands it
 * to the first waiter, who resumes from the loop. A waiter that is
 * cancelled leaves the queue. */
#include <stdbool.h>
#include <stdlib.h>

#include <lauxlib.h>

#include "bindings.h"
#include "task.h"

#define MUTEX_MT "engine.mutex"

typedef struct waiter waiter;

typedef struct {
  bool held;
  waiter *head, *tail;
} mutex;

struct waiter {
  op base;
  mutex *m;
  waiter *prev, *next;
};

static void unlink_waiter(waiter *w) {
  mutex *m = w->m;
  if (w->prev)
    w->prev->next = w->next;
  else
    m->head = w->next;
  if (w->next)
    w->next->prev = w->prev;
  else
    m->tail = w->prev;
}

static void waiter_cancel(op *o) {
  waiter *w = (waiter *)o;
  unlink_waiter(w);
  free(w);
}

/* m:lock(): returns once this task holds it. */
static int mutex_lock(lua_State *L) {
  mutex *m = luaL_checkudata(L, 1, MUTEX_MT);
  if (!m->held) {
    m->held = true;
    return 0;
  }
  task *t = task_require_waitable(L, "a lock");
  waiter *w = malloc(sizeof *w);
  if (!w) return luaL_error(L, "out of memory");
  w->base.cancel = waiter_cancel;
  w->m = m;
  w->next = NULL;
  w->prev = m->tail;
  if (m->tail)
    m->tail->next = w;
  else
    m->head = w;
  m->tail = w;
  lua_settop(L, 1); /* the mutex stays on the stack while the task waits */
  return task_wait_op(L, t, &w->base);
}

/* m:unlock(): the first waiter holds it now (it resumes from the loop). */
static int mutex_unlock(lua_State *L) {
  mutex *m = luaL_checkudata(L, 1, MUTEX_MT);
  if (!m->held) return luaL_error(L, "unlock: the lock is not held");
  waiter *w = m->head;
  if (!w) {
    m->held = false;
    return 0;
  }
  unlink_waiter(w);
  task *t = w->base.owner;
  free(w);
  lua_State *T = task_wake_begin(t);
  lua_pushboolean(T, 1);
  task_wake(t, 1);
  return 0;
}

/* m:held() -> whether a task holds it */
static int mutex_held(lua_State *L) {
  mutex *m = luaL_checkudata(L, 1, MUTEX_MT);
  lua_pushboolean(L, m->held);
  return 1;
}

static int mutex_new(lua_State *L) {
  mutex *m = lua_newuserdatauv(L, sizeof *m, 0);
  m->held = false;
  m->head = m->tail = NULL;
  luaL_setmetatable(L, MUTEX_MT);
  return 1;
}

void mutex_register(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"lock", mutex_lock}, {"unlock", mutex_unlock}, {"held", mutex_held}, {NULL, NULL}};
  if (luaL_newmetatable(L, MUTEX_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, mutex_new);
  lua_setfield(L, -2, "new");
}
