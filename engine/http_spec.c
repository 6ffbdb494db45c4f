/* http_spec.c: an http.request's options table read into a request_spec.
 * Misuse (an unknown option, a wrong type, a URL that is not http(s), a
 * header that would split the request) raises at once, with what was
 * expected; nothing is allocated outside Lua, so a raise leaks nothing. */
#include <math.h>
#include <string.h>

#include <lauxlib.h>

#include "http_spec.h"
#include "options.h"

#define DEFAULT_TIMEOUT 30.0 /* seconds per request */
#define MAX_TIMEOUT 86400.0
#define MIN_TIMEOUT 0.001    /* curl counts milliseconds: 0 would mean none */
#define DEFAULT_MAX_BYTES (64.0 * 1024 * 1024) /* one answer's body */
#define MAX_MAX_BYTES (1024.0 * 1024 * 1024)

static const char *const request_fields[] = {
    "method", "url", "headers", "body", "timeout", "follow_redirects", "compressed",
    "max_bytes", NULL};

static void read_url(lua_State *L, request_spec *spec) {
  lua_getfield(L, 1, "url");
  size_t url_len;
  spec->url = lua_tolstring(L, -1, &url_len);
  if (lua_type(L, -1) != LUA_TSTRING || (strncmp(spec->url, "http://", 7) != 0 &&
                                         strncmp(spec->url, "https://", 8) != 0))
    luaL_error(L, "http.request: url must be a string starting with "
                  "http:// or https://");
  if (strlen(spec->url) != url_len)
    luaL_error(L, "http.request: url contains a NUL byte");
}

static void read_method(lua_State *L, request_spec *spec) {
  if (lua_getfield(L, 1, "method") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "http.request: method must be a string such as \"GET\", got a %s",
               luaL_typename(L, -1));
  spec->method = luaL_optstring(L, -1, "GET");
  size_t mlen = strlen(spec->method);
  if (mlen == 0 || mlen >= HTTP_METHOD_MAX ||
      strspn(spec->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != mlen)
    luaL_error(L, "http.request: method must be an upper-case HTTP method "
                  "such as GET or POST");
}

static bool read_flag(lua_State *L, const char *name) {
  lua_getfield(L, 1, name);
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "http.request: %s must be true or false, got a %s", name,
               luaL_typename(L, -1));
  return lua_toboolean(L, -1);
}

static double read_number(lua_State *L, const char *name, const char *unit, double fallback) {
  lua_getfield(L, 1, name);
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "http.request: %s must be a number of %s, got a %s", name, unit,
               luaL_typename(L, -1));
  return luaL_optnumber(L, -1, fallback);
}

static bool has_crlf(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

/* headers = {name = value}: a list of "Name: value" lines, each checked. */
static void read_headers(lua_State *L, request_spec *spec) {
  lua_newtable(L);
  spec->header_lines = lua_gettop(L);
  if (lua_getfield(L, 1, "headers") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  luaL_argexpected(L, lua_istable(L, -1), 1, "headers as a table of strings");
  lua_Integer n = 0;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
      luaL_error(L, "http.request: headers must map names to strings");
    size_t name_len, value_len;
    const char *name = lua_tolstring(L, -2, &name_len);
    lua_pushvalue(L, -1); /* a number value is written as text */
    const char *value = lua_tolstring(L, -1, &value_len);
    if (strlen(name) != name_len || strlen(value) != value_len)
      luaL_error(L, "http.request: header '%s' contains a NUL byte",
                 strlen(name) != name_len ? "?" : name);
    if (has_crlf(name) || has_crlf(value) || strchr(name, ':'))
      luaL_error(L, "http.request: header '%s' contains a line break or "
                    "colon", has_crlf(name) ? "?" : name);
    lua_pushfstring(L, "%s: %s", name, value);
    lua_rawseti(L, spec->header_lines, ++n);
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

void request_spec_read(lua_State *L, request_spec *spec) {
  options_check(L, 1, "http.request", request_fields, false);
  read_url(L, spec);
  read_method(L, spec);
  lua_getfield(L, 1, "body");
  spec->body = NULL;
  spec->body_len = 0;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "http.request: body must be a string (use json.encode "
                    "for tables)");
    spec->body = lua_tolstring(L, -1, &spec->body_len);
  }
  spec->timeout = read_number(L, "timeout", "seconds", DEFAULT_TIMEOUT);
  if (!isfinite(spec->timeout) || spec->timeout < MIN_TIMEOUT || spec->timeout > MAX_TIMEOUT)
    luaL_error(L, "http.request: timeout must be seconds from 0.001 to 86400");
  spec->follow = read_flag(L, "follow_redirects");
  spec->compressed = read_flag(L, "compressed");
  double max = read_number(L, "max_bytes", "bytes", DEFAULT_MAX_BYTES);
  if (!(max >= 1 && max <= MAX_MAX_BYTES))
    luaL_error(L, "http.request: max_bytes must be from 1 to %d", (int)MAX_MAX_BYTES);
  spec->max_bytes = (size_t)max;
  read_headers(L, spec);
}
