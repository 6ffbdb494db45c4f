/* loop_watch.c: how long the loop's turns hold the thread. A turn's busy
 * time is the time between two prepare phases less the time the loop sat
 * in the poll waiting (libuv's idle-time metric): the callbacks, the
 * tasks' Lua and whatever they blocked on. Of that, the journal's store
 * reports the time its calls held the thread (sqlite.c, postgres.c). The
 * longest of each goes to the summary and --metrics: a stall an operator
 * can see, and the bound the benchmark checks (the store never holds the
 * loop long while jobs trigger). */
#include "loop_watch.h"

static void turn_ended(uv_prepare_t *h) {
  engine *e = h->data;
  loop_watch *w = &e->watch;
  uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(&e->loop);
  if (w->turn_began) {
    uint64_t wall = now - w->turn_began, waited = idle - w->idle_began;
    uint64_t busy = wall > waited ? wall - waited : 0;
    if (busy > w->longest_turn_ns) w->longest_turn_ns = busy;
  }
  if (w->store_ns > w->longest_store_ns) w->longest_store_ns = w->store_ns;
  w->store_ns = 0;
  w->turn_began = now;
  w->idle_began = idle;
}

int loop_watch_init(engine *e) {
  if (uv_loop_configure(&e->loop, UV_METRICS_IDLE_TIME)) return -1;
  uv_prepare_init(&e->loop, &e->watch.prepare);
  e->watch.prepare.data = e;
  uv_prepare_start(&e->watch.prepare, turn_ended);
  uv_unref((uv_handle_t *)&e->watch.prepare); /* it never keeps the loop alive */
  return 0;
}

uint64_t loop_watch_clock(void) {
  return uv_hrtime();
}

void loop_watch_store(engine *e, uint64_t since) {
  e->watch.store_ns += uv_hrtime() - since;
}

static int loop_stats(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  turn_ended(&e->watch.prepare); /* the turn running now counts too */
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, (double)e->watch.longest_turn_ns / 1e9);
  lua_setfield(L, -2, "longest_turn");
  lua_pushnumber(L, (double)e->watch.longest_store_ns / 1e9);
  lua_setfield(L, -2, "longest_store_hold");
  return 1;
}

void loop_watch_register(lua_State *L, engine *e) {
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, loop_stats, 1);
  lua_setfield(L, -2, "loop_stats");
}
