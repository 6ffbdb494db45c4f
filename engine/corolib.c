/* corolib.c: the coroutine library flows see. It behaves as stock Lua 5.4's
 * with two additions that stay invisible to a Lua programmer:
 * - A task's own thread looks like the main thread: running() says it is
 *   main, isyieldable() is false, yield() raises "attempt to yield from
 *   outside a coroutine", and no other task can resume or close it.
 * - A coroutine resumed by a task may call waiting functions (flow.sleep,
 *   http.get, ...): the wait is passed up to the task (task.c, nested
 *   waits), and the coroutine is "normal" until the wait is over. */
#include <lauxlib.h>
#include <lualib.h>

#include "corolib.h"
#include "task.h"

enum co_status { CO_RUNNING, CO_DEAD, CO_SUSPENDED, CO_NORMAL };
static const char *const status_names[] = {"running", "dead", "suspended",
                                           "normal"};

static lua_State *check_co(lua_State *L) {
  lua_State *co = lua_tothread(L, 1);
  luaL_argexpected(L, co, 1, "thread");
  return co;
}

static enum co_status status_of(lua_State *L, lua_State *co) {
  if (L == co) return CO_RUNNING;
  task *t = task_current(co);
  if (t) return task_finished(t) ? CO_DEAD : CO_NORMAL;
  switch (lua_status(co)) {
  case LUA_YIELD:
    return task_is_parked(co) ? CO_NORMAL : CO_SUSPENDED;
  case LUA_OK: {
    lua_Debug ar;
    if (lua_getstack(co, 0, &ar)) return CO_NORMAL; /* it is resuming another */
    return lua_gettop(co) == 0 ? CO_DEAD : CO_SUSPENDED;
  }
  default:
    return CO_DEAD; /* died with an error */
  }
}

/* Resumes co with the top narg values of L. Returns how many values it
 * moved to L, or -1 with the error on top of L. When co parks in an engine
 * wait, L suspends too (this call does not return); k continues it. */
static int resume_co(lua_State *L, lua_State *co, int narg, lua_KContext ctx,
                     lua_KFunction k) {
  for (;;) {
    if (task_current(co) || task_is_parked(co)) {
      lua_pop(L, narg);
      lua_pushstring(L, status_of(L, co) == CO_DEAD
                            ? "cannot resume dead coroutine"
                            : "cannot resume non-suspended coroutine");
      return -1;
    }
    if (!lua_checkstack(co, narg)) {
      lua_pushliteral(L, "too many arguments to resume");
      return -1;
    }
    lua_xmove(L, co, narg);
    int nres;
    task_lend(co, task_owner(L));
    int status = lua_resume(co, L, narg, &nres);
    task_lend(co, NULL);
    if (status == LUA_YIELD && nres == 1 && task_is_parked(co)) {
      narg = task_pass_wait(L, co, ctx, k); /* returns only when L cannot wait */
      continue;
    }
    if (status == LUA_OK || status == LUA_YIELD) {
      if (!lua_checkstack(L, nres + 1)) {
        lua_pop(co, nres);
        lua_pushliteral(L, "too many results to resume");
        return -1;
      }
      lua_xmove(co, L, nres);
      return nres;
    }
    lua_xmove(co, L, 1);
    return -1;
  }
}

/* A parked coroutine's wait is over: its values are above base on L. */
static int rearm(lua_State *L, lua_State *co, lua_KContext base,
                 lua_KFunction k) {
  lua_pop(co, 1); /* the marker */
  return resume_co(L, co, lua_gettop(L) - (int)base, base, k);
}

static int resume_results(lua_State *L, int r) {
  if (r < 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_insert(L, -(r + 1));
  return r + 1;
}

static int resume_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  return resume_results(L, rearm(L, lua_tothread(L, 1), ctx, resume_k));
}

static int co_resume(lua_State *L) {
  lua_State *co = check_co(L);
  return resume_results(L, resume_co(L, co, lua_gettop(L) - 1, 1, resume_k));
}

static int wrap_results(lua_State *L, lua_State *co, int r) {
  if (r >= 0) return r;
  int status = lua_status(co);
  if (status != LUA_OK && status != LUA_YIELD) { /* died: close it */
    status = lua_resetthread(co);
    lua_xmove(co, L, 1);
  }
  if (status != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
    luaL_where(L, 1);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int wrap_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  return wrap_results(L, co, rearm(L, co, ctx, wrap_k));
}

static int wrapped(lua_State *L) {
  lua_State *co = lua_tothread(L, lua_upvalueindex(1));
  return wrap_results(L, co, resume_co(L, co, lua_gettop(L), 0, wrap_k));
}

static int co_create(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_State *co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  return 1;
}

static int co_wrap(lua_State *L) {
  co_create(L);
  lua_pushcclosure(L, wrapped, 1);
  return 1;
}

static int co_yield(lua_State *L) {
  if (task_current(L)) { /* as lua_yield says it: no position */
    lua_pushliteral(L, "attempt to yield from outside a coroutine");
    return lua_error(L);
  }
  return lua_yield(L, lua_gettop(L));
}

static int co_status(lua_State *L) {
  lua_pushstring(L, status_names[status_of(L, check_co(L))]);
  return 1;
}

static int co_isyieldable(lua_State *L) {
  lua_State *co = lua_isnone(L, 1) ? L : check_co(L);
  lua_pushboolean(L, !task_current(co) && lua_isyieldable(co));
  return 1;
}

static int co_running(lua_State *L) {
  int ismain = lua_pushthread(L);
  lua_pushboolean(L, ismain || task_current(L) != NULL);
  return 2;
}

static int co_close(lua_State *L) {
  lua_State *co = check_co(L);
  enum co_status status = status_of(L, co);
  if (status == CO_DEAD && task_current(co)) { /* a finished task: engine-owned */
    lua_pushboolean(L, 1);
    return 1;
  }
  if (status != CO_DEAD && status != CO_SUSPENDED)
    return luaL_error(L, "cannot close a %s coroutine", status_names[status]);
  if (lua_resetthread(co) == LUA_OK) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_xmove(co, L, 1);
  return 2;
}

/* Replaces the functions of the loaded coroutine library in place, so
 * `coroutine` and require "coroutine" are the same table. */
void corolib_open(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"create", co_create},   {"resume", co_resume},
      {"running", co_running}, {"status", co_status},
      {"wrap", co_wrap},       {"yield", co_yield},
      {"isyieldable", co_isyieldable}, {"close", co_close},
      {NULL, NULL}};
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_COLIBNAME);
  luaL_setfuncs(L, fns, 0);
  lua_pop(L, 2);
}
