/* rules_lua.c: the pure rules of rules.h registered for the
 * Lua library (the providers' policy, flow.retry). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "bindings.h"
#include "rules.h"
#include "secrets.h"
#include "text.h"

static double wallclock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* redact(text): known secrets and secret-looking patterns as "***" */
static int redact(lua_State *L) {
  size_t len;
  const char *s = luaL_tolstring(L, 1, &len);
  if (secrets_clean(s, len)) return 1; /* (a page of megabytes: no copy) */
  size_t out_len;
  char *out = secrets_scrub(s, len, &out_len);
  if (!out) return luaL_error(L, "out of memory");
  lua_pushlstring(L, out, out_len);
  free(out);
  return 1;
}

/* add_secret(value): redact this value everywhere from now on */
static int add_secret(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  secrets_add(s, len);
  return 0;
}

/* backoff(attempt, delay, factor, max_delay, jitter[, u01]) -> seconds */
static int backoff(lua_State *L) {
  double u = luaL_optnumber(L, 6, (double)rand() / ((double)RAND_MAX + 1.0));
  lua_pushnumber(L, backoff_delay((int)luaL_checkinteger(L, 1),
                                  luaL_checknumber(L, 2), luaL_checknumber(L, 3),
                                  luaL_checknumber(L, 4), luaL_checknumber(L, 5),
                                  u));
  return 1;
}

static int retry_after(lua_State *L) {
  double s = retry_after_seconds(luaL_optstring(L, 1, NULL), wallclock());
  if (s < 0) return 0;
  lua_pushnumber(L, s);
  return 1;
}

/* parse_time(iso8601 or HTTP date) -> Unix seconds | nil */
static int parse_time(lua_State *L) {
  const char *s = luaL_optstring(L, 1, NULL);
  double t = time_parse_iso8601(s);
  if (t < 0) t = time_parse_http_date(s);
  if (t < 0) return 0;
  lua_pushnumber(L, t);
  return 1;
}

static void add_to_buffer(void *data, const char *bytes, size_t n) {
  luaL_addlstring((luaL_Buffer *)data, bytes, n);
}

/* printable(text[, max]): control bytes shown as \xHH, cut at max bytes */
static int printable(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer max = luaL_optinteger(L, 2, (lua_Integer)len);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  text_printable(s, len, max < 0 ? 0 : (size_t)max, add_to_buffer, &b);
  luaL_pushresult(&b);
  return 1;
}

/* duplicate_key(json) -> the first key written twice in one object, or nil */
static int duplicate_key(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_Buffer b; /* room for any key the text holds: none is cut */
  char *key = luaL_buffinitsize(L, &b, len + 1);
  if (!json_duplicate_key(s, len, key, len + 1)) return 0;
  luaL_pushresultsize(&b, strlen(key));
  return 1;
}

/* distance(a, b, max) -> the case-folded edit distance, or max + 1 when
 * it is larger (bounded work whatever the lengths) */
static int distance(lua_State *L) {
  size_t alen, blen;
  const char *a = luaL_checklstring(L, 1, &alen);
  const char *b = luaL_checklstring(L, 2, &blen);
  lua_Integer max = luaL_checkinteger(L, 3);
  if (max < 0) max = 0;
  lua_pushinteger(L, (lua_Integer)edit_distance_within(a, alen, b, blen, (size_t)max));
  return 1;
}

static int wallclock_lua(lua_State *L) {
  lua_pushnumber(L, wallclock());
  return 1;
}

void rules_register(lua_State *L) {
  static const luaL_Reg fns[] = {{"redact", redact},
                                 {"add_secret", add_secret},
                                 {"backoff", backoff},
                                 {"retry_after", retry_after},
                                 {"parse_time", parse_time},
                                 {"wallclock", wallclock_lua},
                                 {"printable", printable},
                                 {"duplicate_key", duplicate_key},
                                 {"distance", distance},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
