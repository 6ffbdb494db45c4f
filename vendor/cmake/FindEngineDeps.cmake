# FindEngineDeps.cmake: the system libraries the engine links, from Debian 12
# packages through pkg-config: Lua 5.4 (liblua5.4-dev), libuv (libuv1-dev),
# libcurl (libcurl4-openssl-dev), libedit (libedit-dev, the REPL's line
# editing), SQLite (libsqlite3-dev, the journal), libpq (libpq-dev: its
# header; the journal on PostgreSQL), libmicrohttpd (libmicrohttpd-dev: its
# header; engine ui). Defines PkgConfig::LUA,
# ::UV, ::CURL, ::EDIT, ::SQLITE.
find_package(PkgConfig REQUIRED)
pkg_check_modules(LUA REQUIRED IMPORTED_TARGET lua5.4>=5.4.4)
pkg_check_modules(UV REQUIRED IMPORTED_TARGET libuv>=1.44)
pkg_check_modules(CURL REQUIRED IMPORTED_TARGET libcurl>=7.85)
pkg_check_modules(EDIT REQUIRED IMPORTED_TARGET libedit)
pkg_check_modules(SQLITE REQUIRED IMPORTED_TARGET sqlite3>=3.40)
# libpq (libpq-dev, the journal on PostgreSQL): its header only; the
# library is loaded when a journal on a server is first opened (pq_api.c).
pkg_check_modules(PQ REQUIRED libpq>=13)
# libmicrohttpd (libmicrohttpd-dev, engine ui's HTTP server): its header
# only; the library is loaded when the server starts (mhd_api.c).
pkg_check_modules(MHD REQUIRED libmicrohttpd>=0.9.71)
find_package(Threads REQUIRED)
