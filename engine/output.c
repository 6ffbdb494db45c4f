/* output.c: one terminal shared by log lines, print(), the REPL prompt and
 * the live progress view. Anything that writes a line calls output_begin
 * and output_end around it, so the prompt or the progress block is taken
 * off the screen first and drawn again after. The progress view redraws
 * itself from lua/report.lua's running entries a few times a second, only
 * when they changed, and only on a terminal unless --progress=always. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <lauxlib.h>

#include "engine.h"

#define PROGRESS_TICK_MS 200
#define PROGRESS_MAX_LINES 12

struct progress {
  uv_timer_t timer;
  char *block; /* what is on screen now */
  int lines;   /* its height */
};

static int terminal_width(void) {
  struct winsize ws;
  if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 100;
}

static void erase(struct progress *p) {
  if (p->lines > 0) fprintf(stderr, "\033[%dF\033[J", p->lines);
  p->lines = 0;
}

static void draw(struct progress *p) {
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
  engine *e = timer->data;
  struct progress *p = e->progress;
  char *text = render(e);
  if (!text || (p->block && strcmp(text, p->block) == 0)) {
    free(text);
    return;
  }
  erase(p);
  free(p->block);
  p->block = text;
  draw(p);
}

void output_begin(engine *e) {
  repl_output_begin(e);
  if (e->progress) erase(e->progress);
}

void output_end(engine *e) {
  if (e->progress) {
    fflush(stdout);
    draw(e->progress);
  }
  repl_output_end(e);
}

/* print() through the guard, for flows and the REPL alike. */
static int guarded_print(lua_State *L) {
  engine *e = engine_from(L);
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  output_begin(e);
  int status = lua_pcall(L, n, 0, 0);
  fflush(stdout);
  output_end(e);
  return status == LUA_OK ? 0 : lua_error(L);
}

void output_guard_print(lua_State *L) {
  lua_getglobal(L, "print");
  if (lua_tocfunction(L, -1) == NULL || lua_getupvalue(L, -1, 1) == NULL) {
    lua_pushcclosure(L, guarded_print, 1);
    lua_setglobal(L, "print");
  } else {
    lua_pop(L, 2); /* already guarded */
  }
}

/* mode: "auto" (stderr is a terminal), "always" or "never". */
int progress_start(engine *e, const char *mode) {
  bool on = strcmp(mode, "always") == 0 ||
            (strcmp(mode, "auto") == 0 && isatty(STDERR_FILENO));
  if (!on) return 0;
  struct progress *p = calloc(1, sizeof *p);
  if (!p) return -1;
  uv_timer_init(&e->loop, &p->timer);
  p->timer.data = e;
  uv_timer_start(&p->timer, tick, PROGRESS_TICK_MS, PROGRESS_TICK_MS);
  uv_unref((uv_handle_t *)&p->timer); /* never keeps the run alive */
  e->progress = p;
  output_guard_print(e->L);
  return 0;
}

static void progress_closed(uv_handle_t *h) {
  free(h->data);
}

/* Takes the block off the screen for good (before the summary). */
void progress_stop(engine *e) {
  struct progress *p = e->progress;
  if (!p) return;
  erase(p);
  free(p->block);
  p->timer.data = p;
  uv_close((uv_handle_t *)&p->timer, progress_closed);
  e->progress = NULL;
}
