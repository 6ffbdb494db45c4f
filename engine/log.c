/* log.c: timestamped log lines on stderr, filtered by the -q/-v level, and
 * the log.* bindings. A line never carries control bytes (they are shown
 * escaped) nor a known secret, and is cut at LOG_MESSAGE_MAX bytes, with a
 * marker. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "engine.h"
#include "output.h"
#include "secrets.h"
#include "text.h"

/* A log line keeps at most this many bytes of its message. */
#define LOG_MESSAGE_MAX (8 * 1024)

typedef struct {
  char *data;
  size_t len, cap;
} growing;

static void append(void *data, const char *bytes, size_t n) {
  growing *g = data;
  if (g->len + n + 1 > g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 256;
    while (cap < g->len + n + 1) cap *= 2;
    char *bigger = realloc(g->data, cap);
    if (!bigger) return;
    g->data = bigger;
    g->cap = cap;
  }
  memcpy(g->data + g->len, bytes, n);
  g->len += n;
  g->data[g->len] = '\0';
}

void log_write_safe(FILE *out, const char *text, size_t len, size_t max) {
  growing g = {0};
  text_printable(text, len, max, append, &g);
  char *safe = g.data ? secrets_scrub(g.data, g.len, NULL) : NULL;
  if (safe) fputs(safe, out);
  free(safe);
  free(g.data);
}

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

static void write_line(engine *e, enum log_level level, const char *msg,
                       size_t len) {
  struct timespec ts;
  struct tm tm;
  char stamp[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  output_begin(e);
  fprintf(stderr, "%s.%03ldZ %-5s ", stamp, ts.tv_nsec / 1000000L,
          level_names[level]);
  log_write_safe(stderr, msg, len, LOG_MESSAGE_MAX);
  fputc('\n', stderr);
  output_end(e);
}

void log_msg(engine *e, enum log_level level, const char *fmt, ...) {
  if (level < e->log_level) return;
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  write_line(e, level, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* log.<level>(fmt, ...): string.format when arguments follow, tostring of
 * the single argument otherwise. */
static int log_at(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  enum log_level level = (enum log_level)lua_tointeger(L, lua_upvalueindex(2));
  if (level < e->log_level) return 0;
  if (lua_gettop(L) > 1) {
    luaL_checkstring(L, 1);
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 1);
  } else {
    luaL_tolstring(L, 1, NULL);
  }
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  write_line(e, level, msg, len);
  return 0;
}

void log_open(lua_State *L, engine *e) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  lua_createtable(L, 0, 4);
  /* string.format as loaded, whatever the flow later does to `string` */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_getfield(L, -1, LUA_STRLIBNAME);
  lua_getfield(L, -1, "format");
  lua_replace(L, -3);
  lua_pop(L, 1);
  for (int level = LOG_DEBUG; level <= LOG_ERROR; level++) {
    lua_pushlightuserdata(L, e);
    lua_pushinteger(L, level);
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, log_at, 3);
    lua_setfield(L, -3, names[level]);
  }
  lua_pop(L, 1);
}
