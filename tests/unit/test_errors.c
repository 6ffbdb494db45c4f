/* test_errors.c: unit tests for error objects (errors.c): kind, message,
 * one-line tostring with the flow location, and error_describe, which
 * never raises whatever the error value is. */
#include <lauxlib.h>
#include <lualib.h>

#include "check.h"
#include "errors.h"

static lua_State *L;

/* Runs code (which leaves one value) and describes that value. */
static const char *describe(const char *code) {
  lua_settop(L, 0);
  if (luaL_dostring(L, code) != LUA_OK) return lua_tostring(L, -1);
  return error_describe(L, 1);
}

static void test_describe(void) {
  CHECK_STR(describe("return 'text'"), "text");
  CHECK_STR(describe("return 42"), "42");
  CHECK(lua_type(L, 1) == LUA_TNUMBER); /* the value itself is not converted */
  CHECK_STR(describe("return nil"), "(error object is a nil value)");
  CHECK_STR(describe("return {}"), "(error object is a table value)");
  CHECK_STR(describe("return setmetatable({}, {__tostring = function() return 'mine' end})"), "mine");
  CHECK_STR(describe("return setmetatable({}, {__tostring = function() return 1 end})"),
            "(error object is a table value)");
  CHECK_STR(describe("return setmetatable({}, {__tostring = function() error('x') end})"),
            "(error object is a table value)");
  CHECK_STR(describe("return true"), "(error object is a boolean value)");
}

static void test_objects(void) {
  lua_settop(L, 0);
  error_push(L, "timeout", "took %d s", 5);
  CHECK(error_is_kind(L, 1, "timeout"));
  CHECK(!error_is_kind(L, 1, "network"));
  CHECK_STR(error_describe(L, 1), "took 5 s");
  lua_getfield(L, 1, "kind");
  CHECK_STR(lua_tostring(L, -1), "timeout");
  lua_pushliteral(L, "timeout");
  CHECK(!error_is_kind(L, -1, "timeout")); /* a string is not an error object */

  /* error(kind, message, fields) from Lua: fields kept, located at the caller */
  lua_settop(L, 0);
  lua_newtable(L);
  error_register(L);
  lua_setglobal(L, "errors");
  CHECK(luaL_dostring(L, "return errors.error('custom', 'went wrong', {code = 7})") == LUA_OK);
  CHECK(error_is_kind(L, 1, "custom"));
  lua_getfield(L, 1, "code");
  CHECK(lua_tointeger(L, -1) == 7);
  CHECK_STR(error_describe(L, 1), "[string \"return errors.error('custom', 'went wrong', {...\"]:1: went wrong");
  lua_settop(L, 0);
  CHECK(luaL_dostring(L, "return errors.is_error(errors.error('a', 'b'), 'a'), errors.is_error({}), "
                         "errors.describe(nil)") == LUA_OK);
  CHECK(lua_toboolean(L, 1) && !lua_toboolean(L, 2));
  CHECK_STR(lua_tostring(L, 3), "(error object is a nil value)");
  lua_settop(L, 0);
  CHECK(luaL_dostring(L, "return errors.error('a')") != LUA_OK); /* message required */
}

int main(void) {
  L = luaL_newstate();
  luaL_openlibs(L);
  test_describe();
  test_objects();
  lua_close(L);
  return check_done();
}
