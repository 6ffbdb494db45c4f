/* progress.c: the live progress view, a front end. A few times a second it
 * renders lua/report.lua's running entries and, only when they changed,
 * redraws them below the log on stderr; it is an output observer, so log
 * lines and print() appear above it. On a terminal unless
 * --progress=always. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <lauxlib.h>

#include "frontend.h"
#include "output.h"

#define PROGRESS_TICK_MS 200
#define PROGRESS_MAX_LINES 12
#define MIN_WIDTH 20
#define DEFAULT_WIDTH 100

struct progress {
  engine *eng;
  uv_timer_t timer;
  output_observer observer;
  char *block; /* what is on screen now */
  int lines;   /* its height */
};

static int terminal_width(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > MIN_WIDTH)
    return ws.ws_col;
  return DEFAULT_WIDTH;
}

static void erase(void *data) {
  struct progress *p = data;
  if (p->lines > 0) fprintf(stderr, "\033[%dF\033[J", p->lines);
  p->lines = 0;
}

static void draw(void *data) {
  struct progress *p = data;
  if (!p->block || !*p->block) return;
  fputs(p->block, stderr);
  p->lines = 0;
  for (const char *c = p->block; *c; c++) p->lines += *c == '\n';
  fflush(stderr);
}

/* The running entries as text, or NULL when the report module is unused. */
static char *render(engine *e) {
  lua_State *L = e->L;
  int top = lua_gettop(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "engine.report") != LUA_TTABLE) {
    lua_settop(L, top);
    return NULL;
  }
  lua_getfield(L, -1, "progress_lines");
  lua_pushinteger(L, terminal_width() - 1);
  lua_pushinteger(L, PROGRESS_MAX_LINES);
  char *text = NULL;
  if (lua_pcall(L, 2, 2, 0) == LUA_OK && lua_istable(L, -2)) {
    lua_Integer running = lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    lua_Integer n = luaL_len(L, -2);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_geti(L, -2, i);
      luaL_addvalue(&b);
      luaL_addchar(&b, '\n');
    }
    if (running > n) {
      lua_pushfstring(L, "  ... and %d more running\n", (int)(running - n));
      luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    text = strdup(lua_tostring(L, -1));
  }
  lua_settop(L, top);
  return text;
}

static void tick(uv_timer_t *timer) {
  struct progress *p = timer->data;
  char *text = render(p->eng);
  if (!text || (p->block && strcmp(text, p->block) == 0)) {
    free(text);
    return;
  }
  erase(p);
  free(p->block);
  p->block = text;
  draw(p);
}

/* The run's output ends: take the block off the screen for good. */
static void progress_close(void *data) {
  struct progress *p = data;
  erase(p);
  free(p->block);
  uv_close((uv_handle_t *)&p->timer, engine_free_handle_data);
}

int progress_start(engine *e, const char *mode) {
  bool on = strcmp(mode, "always") == 0 ||
            (strcmp(mode, "auto") == 0 && isatty(STDERR_FILENO));
  if (!on) return 0;
  struct progress *p = calloc(1, sizeof *p);
  if (!p) return -1;
  p->eng = e;
  uv_timer_init(&e->loop, &p->timer);
  p->timer.data = p;
  uv_timer_start(&p->timer, tick, PROGRESS_TICK_MS, PROGRESS_TICK_MS);
  uv_unref((uv_handle_t *)&p->timer); /* never keeps the run alive */
  p->observer = (output_observer){
      .begin = erase, .end = draw, .close = progress_close, .data = p};
  output_observe(e, &p->observer);
  output_guard_print(e->L, e);
  return 0;
}
