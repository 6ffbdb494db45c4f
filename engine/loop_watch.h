/* loop_watch.h: the longest turn of the loop, and the longest time the
 * journal's store held it in one turn (loop_watch.c). */
#ifndef LOOP_WATCH_H
#define LOOP_WATCH_H

#include <stdint.h>

#include <lua.h>

#include "engine.h"

int loop_watch_init(engine *e); /* before the loop first runs */
/* A store call: t = loop_watch_clock() before, loop_watch_store(e, t) after. */
uint64_t loop_watch_clock(void);
void loop_watch_store(engine *e, uint64_t since);
/* loop_stats() -> {longest_turn = s, longest_store_hold = s}, into the
 * table on top of L (engine.c.timer's). */
void loop_watch_register(lua_State *L, engine *e);

#endif
