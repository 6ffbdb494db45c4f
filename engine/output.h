/* output.h: one terminal shared by log lines, print(), the REPL prompt and
 * the progress view. Writers bracket a line with output_begin/output_end;
 * observers (the REPL, the progress view) take their block off the screen
 * in begin and draw it again in end. */
#ifndef OUTPUT_H
#define OUTPUT_H

#include <lua.h>

#include "engine.h"

struct output_observer {
  void (*begin)(void *data);
  void (*end)(void *data);
  void (*close)(void *data); /* optional: the run's output ends (summary next) */
  void *data;
  output_observer *next;
};

void output_observe(engine *e, output_observer *o);
void output_unobserve(engine *e, output_observer *o);
void output_begin(engine *e);
void output_end(engine *e);
void output_close(engine *e); /* tells and drops every observer with a close */
void output_guard_print(lua_State *L, engine *e); /* print() through the guard */

#endif
