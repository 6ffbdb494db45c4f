/* log.c: timestamped log lines on stderr, filtered by the -q/-v level, as
 * text or (--log-format=json) a JSON object per line with the context
 * fields a log pipeline filters on; the log.* bindings and engine.c.log,
 * their variant with fields, for lua/ files. Once asked (engine.c.log's
 * keep), the lines written are also kept, bounded, for the journal to take
 * (take): scrubbed and printable as the terminal shows them. A line never carries control bytes (they are shown
 * escaped) nor a known secret, and is cut at LOG_MESSAGE_MAX bytes, with a
 * marker. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "errors.h"
#include "log.h"
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

/* Registry key of the function that gives a Lua log call its context
 * fields (the step, the attempt, the flow and run: lua/run.lua sets it). */
static const char context_key = 'c';

static void append_value(lua_State *L, int idx, growing *g) {
  char num[64];
  int n = 0;
  size_t len;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    const char *s = lua_tolstring(L, idx, &len);
    text_json_string(s, len < LOG_MESSAGE_MAX ? len : LOG_MESSAGE_MAX, append, g);
    return;
  }
  case LUA_TBOOLEAN:
    append(g, lua_toboolean(L, idx) ? "true" : "false", lua_toboolean(L, idx) ? 4 : 5);
    return;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      n = snprintf(num, sizeof num, LUA_INTEGER_FMT, lua_tointeger(L, idx));
    } else {
      lua_Number x = lua_tonumber(L, idx);
      n = isfinite(x) ? snprintf(num, sizeof num, "%.14g", (double)x)
                      : snprintf(num, sizeof num, "null"); /* JSON has no inf or nan */
    }
    append(g, num, (size_t)n);
    return;
  default:
    append(g, "null", 4);
  }
}

/* Appends ,"key":value for each string key of the table at idx whose value
 * is a string, number or boolean (not ts, level or msg, nor a key the
 * table at shadow has: 0 for none). */
static void append_fields(lua_State *L, int idx, int shadow, growing *g) {
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int vt = lua_type(L, -1);
    if (lua_type(L, -2) == LUA_TSTRING &&
        (vt == LUA_TSTRING || vt == LUA_TNUMBER || vt == LUA_TBOOLEAN)) {
      size_t klen;
      const char *k = lua_tolstring(L, -2, &klen);
      bool shadowed = false;
      if (shadow) {
        lua_pushvalue(L, -2);
        shadowed = lua_rawget(L, shadow) != LUA_TNIL;
        lua_pop(L, 1);
      }
      if (!shadowed && strcmp(k, "ts") && strcmp(k, "level") && strcmp(k, "msg")) {
        append(g, ",", 1);
        text_json_string(k, klen, append, g);
        append(g, ":", 1);
        append_value(L, -1, g);
      }
    }
    lua_pop(L, 1);
  }
}

/* A Lua log call's fields (at index fields, or 0), then its context's
 * (the step, the attempt, the flow and run) that the call did not give.
 * Never raises. */
static void append_lua_fields(lua_State *L, int fields, growing *g) {
  if (fields && !lua_istable(L, fields)) fields = 0;
  if (fields) append_fields(L, fields, 0, g);
  int top = lua_gettop(L);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &context_key) == LUA_TFUNCTION &&
      lua_pcall(L, 0, 1, 0) == LUA_OK && lua_istable(L, -1))
    append_fields(L, -1, fields, g);
  lua_settop(L, top);
}

/* Lines kept for the journal: at most `max`, then only counted. */
typedef struct {
  double at;
  enum log_level level;
  char *text;
} kept_line;

struct log_kept {
  kept_line *lines;
  size_t n, cap, max, taken, dropped;
  engine *e;
  engine_cleanup cleanup;
};

static void keep_free(void *data) {
  struct log_kept *k = data;
  k->e->log_kept = NULL;
  for (size_t i = 0; i < k->n; i++) free(k->lines[i].text);
  free(k->lines);
  free(k);
}

static void keep_line(engine *e, enum log_level level, double at, const char *msg, size_t len) {
  struct log_kept *k = e->log_kept;
  if (!k) return;
  if (k->taken + k->n >= k->max) {
    k->dropped++;
    return;
  }
  if (k->n == k->cap) {
    size_t cap = k->cap ? k->cap * 2 : 64;
    kept_line *bigger = realloc(k->lines, cap * sizeof *bigger);
    if (!bigger) return;
    k->lines = bigger;
    k->cap = cap;
  }
  growing shown = {0};
  text_printable(msg, len, LOG_MESSAGE_MAX, append, &shown);
  char *safe = secrets_scrub(shown.data ? shown.data : "", shown.len, NULL);
  free(shown.data);
  if (!safe) return;
  k->lines[k->n++] = (kept_line){at, level, safe};
}

/* One log line. L (or NULL) is the Lua state of a Lua log call: in JSON
 * format its context and the fields at index fields (or 0) join the line;
 * extra (or NULL) is more of them, already JSON (",\"k\":v..."). */
static void write_line_with(engine *e, enum log_level level, const char *msg, size_t len,
                            lua_State *L, int fields, const char *extra) {
  struct timespec ts;
  struct tm tm;
  char stamp[40];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(stamp + n, sizeof stamp - n, ".%03ldZ", ts.tv_nsec / 1000000L);
  keep_line(e, level, (double)ts.tv_sec + ts.tv_nsec / 1e9, msg, len);
  if (!e->log_json) {
    output_begin(e);
    fprintf(stderr, "%s %-5s ", stamp, level_names[level]);
    log_write_safe(stderr, msg, len, LOG_MESSAGE_MAX);
    fputc('\n', stderr);
    output_end(e);
    return;
  }
  growing shown = {0}, line = {0};
  text_printable(msg, len, LOG_MESSAGE_MAX, append, &shown);
  append(&line, "{\"ts\":\"", 7);
  append(&line, stamp, strlen(stamp));
  append(&line, "\",\"level\":\"", 11);
  append(&line, level_names[level], strlen(level_names[level]));
  append(&line, "\",\"msg\":", 8);
  text_json_string(shown.data ? shown.data : "", shown.len, append, &line);
  if (extra) append(&line, extra, strlen(extra));
  if (L && lua_checkstack(L, 8)) append_lua_fields(L, fields, &line);
  append(&line, "}", 1);
  char *safe = line.data ? secrets_scrub(line.data, line.len, NULL) : NULL;
  output_begin(e);
  if (safe) fprintf(stderr, "%s\n", safe);
  output_end(e);
  free(safe);
  free(line.data);
  free(shown.data);
}

static void write_line(engine *e, enum log_level level, const char *msg, size_t len,
                       lua_State *L, int fields) {
  write_line_with(e, level, msg, len, L, fields, NULL);
}

void log_final(engine *e, const char *msg, size_t len, const char *trace) {
  if (!e->log_json) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    keep_line(e, LOG_ERROR, (double)ts.tv_sec + ts.tv_nsec / 1e9, msg, len);
    output_begin(e);
    fputs("engine: ", stderr);
    log_write_safe(stderr, msg, len, len);
    fprintf(stderr, "\n%s%s", trace ? trace : "", trace && *trace ? "\n" : "");
    output_end(e);
    return;
  }
  growing extra = {0};
  if (trace && *trace) {
    append(&extra, ",\"traceback\":", 13);
    text_json_string(trace, strlen(trace), append, &extra);
  }
  /* the run's context (flow, run) as every other line has it */
  write_line_with(e, LOG_ERROR, msg, len, e->L, 0, extra.data);
  free(extra.data);
}

void log_final_value(engine *e, lua_State *L, int idx) {
  size_t len;
  error_describe(L, idx);
  const char *msg = lua_tolstring(L, -1, &len);
  log_final(e, msg, len, NULL);
  lua_pop(L, 1);
}

char *log_context_fields(lua_State *L, engine *e, const char *name, const char *value) {
  if (!e->log_json) return NULL;
  growing g = {0};
  append(&g, "", 0);
  if (name) {
    append(&g, ",", 1);
    text_json_string(name, strlen(name), append, &g);
    append(&g, ":", 1);
    text_json_string(value, strlen(value), append, &g);
  }
  if (lua_checkstack(L, 8)) append_lua_fields(L, 0, &g);
  return g.data;
}

/* Formats the line (in a stack buffer, or whole on the heap when longer)
 * and writes it with the JSON fields (or NULL). */
static void log_formatted(engine *e, enum log_level level, const char *fields, const char *fmt,
                          va_list ap) {
  char buf[4096];
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  if (n >= 0 && (size_t)n < sizeof buf) {
    write_line_with(e, level, buf, (size_t)n, NULL, 0, fields);
  } else if (n >= 0) {
    /* longer than the buffer: formatted whole, write_line cuts it visibly */
    char *whole = malloc((size_t)n + 1);
    if (whole) vsnprintf(whole, (size_t)n + 1, fmt, again);
    write_line_with(e, level, whole ? whole : buf, whole ? (size_t)n : sizeof buf - 1, NULL, 0, fields);
    free(whole);
  }
  va_end(again);
}

void log_msg_with(engine *e, enum log_level level, const char *fields, const char *fmt, ...) {
  if (!log_enabled(e, level)) return;
  va_list ap;
  va_start(ap, fmt);
  log_formatted(e, level, fields, fmt, ap);
  va_end(ap);
}

void log_msg(engine *e, enum log_level level, const char *fmt, ...) {
  if (!log_enabled(e, level)) return;
  va_list ap;
  va_start(ap, fmt);
  log_formatted(e, level, NULL, fmt, ap);
  va_end(ap);
}

/* Formats the message from the arguments at first.. (string.format when
 * more than one, tostring of one) and writes it with the fields at index
 * fields (or 0). */
static int log_call(lua_State *L, engine *e, enum log_level level, int first, int fields) {
  if (!log_enabled(e, level)) return 0;
  int top = lua_gettop(L);
  if (top > first) {
    luaL_checkstring(L, first);
    lua_pushvalue(L, lua_upvalueindex(3));
    for (int i = first; i <= top; i++) lua_pushvalue(L, i);
    lua_call(L, top - first + 1, 1);
  } else {
    luaL_tolstring(L, first, NULL);
  }
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  write_line(e, level, msg, len, L, fields);
  return 0;
}

/* log.<level>(fmt, ...): string.format when arguments follow, tostring of
 * the single argument otherwise. */
static int log_at(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  return log_call(L, e, (enum log_level)lua_tointeger(L, lua_upvalueindex(2)), 1, 0);
}

/* engine.c.log's <level>(fields, fmt, ...): a log line that carries fields
 * in the JSON format (sync_id, status, counts...). */
static int log_with_fields(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  if (!lua_isnil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  return log_call(L, e, (enum log_level)lua_tointeger(L, lua_upvalueindex(2)), 2, 1);
}

/* engine.c.log's final(text): a line that ends the run, whatever the
 * level: "engine: text", or a JSON object at ERROR. */
static int final_line(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  log_final(e, text, len, NULL);
  return 0;
}

/* engine.c.log's summary(text, json): the run's summary, whatever the
 * level: the text as it is, or one JSON object at INFO whose msg is the
 * text's first line and whose "summary" is the document (json, as
 * --summary-json writes it). */
static int summary_line(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  const char *doc = luaL_checkstring(L, 2);
  if (!e->log_json) {
    output_begin(e);
    log_write_safe(stderr, text, len, len);
    fputc('\n', stderr);
    output_end(e);
    return 0;
  }
  const char *nl = memchr(text, '\n', len);
  growing extra = {0};
  append(&extra, ",\"summary\":", 11);
  append(&extra, doc, strlen(doc));
  write_line_with(e, LOG_INFO, text, nl ? (size_t)(nl - text) : len, L, 0, extra.data);
  free(extra.data);
  return 0;
}

/* engine.c.log's set_context(fn): fn() gives each Lua log call its
 * context fields. */
static int set_context(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  lua_settop(L, 1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &context_key);
  return 0;
}

/* Sets the four level functions (each a closure over fn) into the table on
 * top. */
static void set_levels(lua_State *L, engine *e, lua_CFunction fn) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
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
    lua_pushcclosure(L, fn, 3);
    lua_setfield(L, -3, names[level]);
  }
  lua_pop(L, 1);
}

/* engine.c.log's enabled(level) -> whether a line at level is written,
 * and whether it would carry fields (the JSON format): callers skip
 * building what would be thrown away. */
static int enabled(lua_State *L) {
  static const char *const names[] = {"debug", "info", "warn", "error", NULL};
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  bool on = luaL_checkoption(L, 1, NULL, names) >= (int)e->log_level;
  lua_pushboolean(L, on);
  lua_pushboolean(L, on && e->log_json);
  return 2;
}

/* keep(max): from now on, keep up to max lines (in all) for take. */
static int keep(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  lua_Integer max = luaL_checkinteger(L, 1);
  if (!e->log_kept) {
    struct log_kept *k = calloc(1, sizeof *k);
    if (!k) return luaL_error(L, "out of memory");
    k->e = e;
    k->cleanup.run = keep_free;
    k->cleanup.data = k;
    engine_at_shutdown(e, &k->cleanup);
    e->log_kept = k;
  }
  e->log_kept->max = max > 0 ? (size_t)max : 0;
  return 0;
}

/* take() -> {{at, level, text}, ...} kept since the last take, and how many
 * lines were not kept (past the bound) in all. */
static int take(lua_State *L) {
  static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR", "ERROR"};
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  struct log_kept *k = e->log_kept;
  lua_createtable(L, k ? (int)k->n : 0, 0);
  for (size_t i = 0; k && i < k->n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushnumber(L, k->lines[i].at);
    lua_setfield(L, -2, "at");
    lua_pushstring(L, names[k->lines[i].level]);
    lua_setfield(L, -2, "level");
    lua_pushstring(L, k->lines[i].text);
    lua_setfield(L, -2, "text");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    free(k->lines[i].text);
  }
  if (k) {
    k->taken += k->n;
    k->n = 0;
  }
  lua_pushinteger(L, k ? (lua_Integer)k->dropped : 0);
  return 2;
}

void log_register(lua_State *L, engine *e) {
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, keep, 1);
  lua_setfield(L, -2, "keep");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, take, 1);
  lua_setfield(L, -2, "take");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, enabled, 1);
  lua_setfield(L, -2, "enabled");
  set_levels(L, e, log_with_fields);
  lua_pushcfunction(L, set_context);
  lua_setfield(L, -2, "set_context");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, final_line, 1);
  lua_setfield(L, -2, "final");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, summary_line, 1);
  lua_setfield(L, -2, "summary");
}

void log_open(lua_State *L, engine *e) {
  lua_createtable(L, 0, 4);
  set_levels(L, e, log_at);
}
