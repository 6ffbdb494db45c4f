# FindLuaCJSON.cmake: Debian's lua-cjson-dev for Lua 5.4, linked statically
# (liblua5.4-cjson.a) and registered by the engine through package.preload.
# Defines the imported target LuaCJSON::LuaCJSON.
find_path(LUACJSON_INCLUDE_DIR lua-cjson.h PATH_SUFFIXES lua5.4)
find_library(LUACJSON_LIBRARY NAMES liblua5.4-cjson.a lua5.4-cjson)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LuaCJSON
  REQUIRED_VARS LUACJSON_LIBRARY LUACJSON_INCLUDE_DIR
  FAIL_MESSAGE "lua-cjson for Lua 5.4 not found: apt-get install lua-cjson-dev (or run ./dev deps)")
if(LuaCJSON_FOUND AND NOT TARGET LuaCJSON::LuaCJSON)
  add_library(LuaCJSON::LuaCJSON UNKNOWN IMPORTED)
  set_target_properties(LuaCJSON::LuaCJSON PROPERTIES
    IMPORTED_LOCATION "${LUACJSON_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${LUACJSON_INCLUDE_DIR}")
endif()
