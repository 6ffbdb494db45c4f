/* output.c: one terminal shared by log lines, print(), the REPL prompt and
 * the live progress view. Anything that writes a line calls output_begin
 * and output_end around it; the observers (the REPL, the progress view)
 * take what they drew off the screen first and draw it again after. */
#include <stdio.h>

#include <lauxlib.h>

#include "output.h"

void output_observe(engine *e, output_observer *o) {
  o->next = e->observers;
  e->observers = o;
}

void output_unobserve(engine *e, output_observer *o) {
  for (output_observer **p = &e->observers; *p; p = &(*p)->next) {
    if (*p == o) {
      *p = o->next;
      return;
    }
  }
}

void output_begin(engine *e) {
  for (output_observer *o = e->observers; o; o = o->next) o->begin(o->data);
}

void output_end(engine *e) {
  fflush(stdout);
  for (output_observer *o = e->observers; o; o = o->next) o->end(o->data);
}

void output_close(engine *e) {
  output_observer **p = &e->observers;
  while (*p) {
    output_observer *o = *p;
    if (o->close) {
      *p = o->next;
      o->close(o->data);
    } else {
      p = &o->next;
    }
  }
}

/* print() through the guard, for flows and the REPL alike: upvalue 1 is
 * the print it guards, 2 the engine. */
static int guarded_print(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(2));
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  output_begin(e);
  int status = lua_pcall(L, n, 0, 0);
  fflush(stdout);
  output_end(e);
  return status == LUA_OK ? 0 : lua_error(L);
}

void output_guard_print(lua_State *L, engine *e) {
  lua_getglobal(L, "print");
  if (lua_tocfunction(L, -1) == guarded_print) {
    lua_pop(L, 1); /* already guarded */
    return;
  }
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, guarded_print, 2);
  lua_setglobal(L, "print");
}
