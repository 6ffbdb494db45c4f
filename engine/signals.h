/* signals.h: SIGINT/SIGTERM for the engine (see signals.c). */
#ifndef SIGNALS_H
#define SIGNALS_H

#include <stdbool.h>

#include <lua.h>

#include "engine.h"

int signals_init(engine *e);
void signals_set_running(lua_State *thread);
void signals_set_repeatable(bool on); /* every SIGINT is a fresh request */
int signals_caught(void); /* the signal the loop has yet to act on, or 0 */
void signals_close(void);

#endif
