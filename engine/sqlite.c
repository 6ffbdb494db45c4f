/* sqlite.c: the SQLite binding behind the journal (lua/store_sqlite.lua
 * holds the schema and every query). A database opens in WAL mode with a busy
 * timeout, so several engines can share one file; statements are prepared
 * once per connection and cached. Calls are synchronous and short: a
 * commit in NORMAL mode writes to the WAL without an fsync (durable when
 * the process dies), in durable mode (FULL) it also fsyncs (durable when
 * the machine dies), which the journal asks for before it acts. The file
 * is the user's alone (0600): it holds flow arguments and errors, and
 * SQLite gives its -wal and -shm files the database file's mode. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "bindings.h"
#include "loop_watch.h"
#include "task.h"

#define DB_MT "engine.sqlite"
#define BUSY_TIMEOUT_MS 5000

typedef struct away away;

typedef struct {
  sqlite3 *db;
  engine *e;     /* its calls count as the store's hold of the loop */
  int cache_ref; /* SQL text -> statement (light userdata) */
  away *away;    /* a statement running on libuv's thread pool, or NULL */
} database;

/* db:exec_away(sql) while it runs on a pool thread: the connection is the
 * thread's until it ends (it is opened NOMUTEX), so every other call
 * raises meanwhile (the driver's lock keeps tasks from making one), and a
 * close waits for its end. */
struct away {
  op base;
  uv_work_t work;
  sqlite3 *db;
  database *d;     /* NULL once the userdata was closed (collected) */
  char *sql;         /* exec_away's statements, or */
  sqlite3_stmt *st;  /* run_away's, prepared and bound */
  int rc;
  sqlite3_int64 changes, rowid;
  char *message;   /* SQLite's, when rc is not SQLITE_OK */
  bool abandoned;  /* the task was cancelled: nobody to wake */
  bool close_after;
};

static database *check_db(lua_State *L) {
  database *d = luaL_checkudata(L, 1, DB_MT);
  if (!d->db) luaL_error(L, "sqlite: the database is closed");
  if (d->away) luaL_error(L, "sqlite: the connection is busy (a statement runs off the loop)");
  return d;
}

/* Raises "<message> (<file>)" for the connection's last error, without
 * the Lua position luaL_error would add: the message is the user's. */
static int db_error(lua_State *L, sqlite3 *db) {
  const char *file = sqlite3_db_filename(db, "main");
  lua_pushfstring(L, "%s (%s)", sqlite3_errmsg(db), file && *file ? file : "memory");
  return lua_error(L);
}

/* Every statement the connection prepared (the cache's), then itself. */
static void close_connection(sqlite3 *db) {
  sqlite3_stmt *st;
  while ((st = sqlite3_next_stmt(db, NULL))) sqlite3_finalize(st);
  sqlite3_close(db);
}

static int db_close(lua_State *L) {
  database *d = luaL_checkudata(L, 1, DB_MT);
  if (d->cache_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, d->cache_ref);
    d->cache_ref = LUA_NOREF;
  }
  if (d->away) { /* the pool thread's until it ends: closed then */
    d->away->close_after = true;
    d->away->d = NULL;
    d->away = NULL;
  } else if (d->db) {
    close_connection(d->db);
  }
  d->db = NULL;
  return 0;
}

/* The cached statement for the SQL text at idx, reset and with the values
 * from idx + 1 on bound to its parameters. */
static sqlite3_stmt *prepare(lua_State *L, database *d, int idx) {
  size_t len;
  const char *sql = luaL_checklstring(L, idx, &len);
  lua_rawgeti(L, LUA_REGISTRYINDEX, d->cache_ref);
  lua_pushvalue(L, idx);
  sqlite3_stmt *st = NULL;
  if (lua_rawget(L, -2) == LUA_TLIGHTUSERDATA) {
    st = lua_touserdata(L, -1);
    lua_pop(L, 2);
  } else {
    lua_pop(L, 1);
    if (sqlite3_prepare_v3(d->db, sql, (int)len + 1, SQLITE_PREPARE_PERSISTENT, &st,
                           NULL) != SQLITE_OK) {
      lua_pop(L, 1);
      db_error(L, d->db);
    }
    lua_pushvalue(L, idx);
    lua_pushlightuserdata(L, st);
    lua_rawset(L, -3);
    lua_pop(L, 1);
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  int n = sqlite3_bind_parameter_count(st);
  for (int i = 1; i <= n; i++) {
    int arg = idx + i;
    switch (lua_type(L, arg)) {
    case LUA_TNONE:
    case LUA_TNIL:
      sqlite3_bind_null(st, i);
      break;
    case LUA_TBOOLEAN:
      sqlite3_bind_int(st, i, lua_toboolean(L, arg));
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, arg))
        sqlite3_bind_int64(st, i, lua_tointeger(L, arg));
      else
        sqlite3_bind_double(st, i, lua_tonumber(L, arg));
      break;
    case LUA_TSTRING: {
      size_t n_bytes;
      const char *s = lua_tolstring(L, arg, &n_bytes);
      sqlite3_bind_text(st, i, s, (int)n_bytes, SQLITE_TRANSIENT);
      break;
    }
    default:
      luaL_error(L, "sqlite: parameter %d is a %s (expected nil, boolean, number "
                    "or string)", i, luaL_typename(L, arg));
    }
  }
  return st;
}

static void push_column(lua_State *L, sqlite3_stmt *st, int col) {
  switch (sqlite3_column_type(st, col)) {
  case SQLITE_INTEGER:
    lua_pushinteger(L, sqlite3_column_int64(st, col));
    break;
  case SQLITE_FLOAT:
    lua_pushnumber(L, sqlite3_column_double(st, col));
    break;
  case SQLITE_NULL:
    lua_pushnil(L);
    break;
  default:
    lua_pushlstring(L, (const char *)sqlite3_column_text(st, col),
                    (size_t)sqlite3_column_bytes(st, col));
  }
}

/* db:run(sql, ...) -> changes, last insert rowid */
static int db_run(lua_State *L) {
  database *d = check_db(L);
  uint64_t began = loop_watch_clock();
  sqlite3_stmt *st = prepare(L, d, 2);
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
  }
  sqlite3_reset(st);
  loop_watch_store(d->e, began);
  if (rc != SQLITE_DONE) return db_error(L, d->db);
  lua_pushinteger(L, sqlite3_changes(d->db));
  lua_pushinteger(L, sqlite3_last_insert_rowid(d->db));
  return 2;
}

/* db:rows(sql, ...) -> {{column = value, ...}, ...} */
static int db_rows(lua_State *L) {
  database *d = check_db(L);
  uint64_t began = loop_watch_clock();
  sqlite3_stmt *st = prepare(L, d, 2);
  /* the column names as Lua strings, made once (a run page reads ten
   * thousand rows of sixteen columns) */
  int cols = sqlite3_column_count(st);
  luaL_checkstack(L, cols + 4, "sqlite: columns");
  int names = lua_gettop(L) + 1;
  for (int c = 0; c < cols; c++) lua_pushstring(L, sqlite3_column_name(st, c));
  lua_newtable(L);
  int rc, n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    lua_createtable(L, 0, cols);
    for (int c = 0; c < cols; c++) {
      lua_pushvalue(L, names + c);
      push_column(L, st, c);
      lua_rawset(L, -3);
    }
    lua_rawseti(L, -2, ++n);
  }
  sqlite3_reset(st);
  lua_replace(L, names); /* the rows where the first name was */
  lua_settop(L, names);
  loop_watch_store(d->e, began);
  if (rc != SQLITE_DONE) return db_error(L, d->db);
  return 1;
}

/* db:exec(sql): several statements, no parameters (schema, BEGIN, ...). */
static int db_exec(lua_State *L) {
  database *d = check_db(L);
  const char *sql = luaL_checkstring(L, 2);
  uint64_t began = loop_watch_clock();
  int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
  loop_watch_store(d->e, began);
  if (rc != SQLITE_OK) return db_error(L, d->db);
  return 0;
}

static void away_run(uv_work_t *req) {
  away *a = req->data;
  char *message = NULL;
  if (a->st) {
    while ((a->rc = sqlite3_step(a->st)) == SQLITE_ROW) {
    }
    sqlite3_reset(a->st);
    sqlite3_clear_bindings(a->st); /* (a large value's copy goes now) */
    if (a->rc == SQLITE_DONE) {
      a->rc = SQLITE_OK;
      a->changes = sqlite3_changes64(a->db);
      a->rowid = sqlite3_last_insert_rowid(a->db);
    } else {
      message = sqlite3_mprintf("%s", sqlite3_errmsg(a->db));
    }
  } else {
    a->rc = sqlite3_exec(a->db, a->sql, NULL, NULL, &message);
  }
  if (a->rc != SQLITE_OK) {
    const char *file = sqlite3_db_filename(a->db, "main");
    size_t n = strlen(message ? message : sqlite3_errstr(a->rc)) + strlen(file ? file : "") + 16;
    a->message = malloc(n);
    if (a->message)
      snprintf(a->message, n, "%s (%s)", message ? message : sqlite3_errstr(a->rc),
               file && *file ? file : "memory");
  }
  sqlite3_free(message);
}

static void away_free(away *a) {
  if (a->close_after) close_connection(a->db);
  free(a->message);
  free(a->sql);
  free(a);
}

static void away_done(uv_work_t *req, int status) {
  (void)status;
  away *a = req->data;
  if (a->d) a->d->away = NULL;
  if (a->abandoned) {
    away_free(a);
    return;
  }
  task *t = a->base.owner;
  lua_State *T = task_wake_begin(t);
  int n = 2;
  if (a->rc == SQLITE_OK) {
    lua_pushboolean(T, 1);
    if (a->st) {
      lua_pushinteger(T, (lua_Integer)a->changes);
      lua_pushinteger(T, (lua_Integer)a->rowid);
      n = 3;
    } else {
      n = 1;
    }
  } else {
    lua_pushboolean(T, 0);
    lua_pushstring(T, a->message ? a->message : "sqlite: out of memory");
  }
  away_free(a);
  task_wake(t, n);
}

/* The task was cancelled: the statement runs on to its end all the same
 * (SQLite's own work, COMMIT, is not cut in half); then it is freed. */
static void away_cancel(op *o) {
  ((away *)o)->abandoned = true;
}

/* Sends a to the pool; the task waits. */
static int go_away(lua_State *L, database *d, away *a) {
  task *t = task_owner(L);
  a->base.cancel = away_cancel;
  a->db = d->db;
  a->d = d;
  a->work.data = a;
  if (uv_queue_work(&d->e->loop, &a->work, away_run, away_done) != 0) {
    free(a->sql);
    free(a);
    return luaL_error(L, "sqlite: cannot use the thread pool");
  }
  d->away = a;
  lua_settop(L, 1); /* the database stays anchored while the task waits */
  return task_wait_op(L, t, &a->base);
}

/* db:exec_away(sql): as db:exec, on libuv's thread pool while the task
 * waits (a COMMIT's fsync and checkpoint, which would hold the loop for
 * milliseconds). Outside a task it runs here. */
static int db_exec_away(lua_State *L) {
  database *d = check_db(L);
  const char *sql = luaL_checkstring(L, 2);
  if (!task_owner(L)) return db_exec(L);
  task_require_waitable(L, "the journal");
  away *a = calloc(1, sizeof *a);
  if (a) a->sql = strdup(sql);
  if (!a || !a->sql) {
    free(a);
    return luaL_error(L, "out of memory");
  }
  return go_away(L, d, a);
}

/* db:run_away(sql, ...): as db:run, the statement prepared and bound here
 * and run on the pool (a large value written: the run's summary). */
static int db_run_away(lua_State *L) {
  database *d = check_db(L);
  if (!task_owner(L)) return db_run(L);
  task_require_waitable(L, "the journal");
  sqlite3_stmt *st = prepare(L, d, 2);
  away *a = calloc(1, sizeof *a);
  if (!a) return luaL_error(L, "out of memory");
  a->st = st;
  return go_away(L, d, a);
}

static int first_column(void *out, int n, char **values, char **names) {
  (void)names;
  if (n > 0 && values[0]) snprintf(out, 16, "%s", values[0]);
  return 0;
}

/* Turning a new file to WAL needs an exclusive lock, and SQLite does not
 * call the busy handler for it: engines that create one journal at once
 * retry here within the same budget. WAL is the file's own property, so
 * once one of them turned it, the others find it so. Returns NULL or why
 * not. */
static const char *use_wal(sqlite3 *db) {
  int waited = 0, pause = 1;
  for (;;) {
    char mode[16] = "";
    int rc = sqlite3_exec(db, "PRAGMA journal_mode = WAL", first_column, mode, NULL);
    if (rc == SQLITE_OK && strcmp(mode, "wal") == 0) return NULL;
    if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY) return sqlite3_errmsg(db);
    if (waited >= BUSY_TIMEOUT_MS)
      return rc == SQLITE_OK ? "another program keeps it from WAL mode" : sqlite3_errmsg(db);
    sqlite3_sleep(pause);
    waited += pause;
    pause = pause < 64 ? pause * 2 : 64;
  }
}

/* path (and its -wal and -shm files) made readable by its owner alone,
 * when it is ours; created so, when missing and create is true. Returns
 * NULL or why not. */
static const char *make_private(const char *path, bool create, char *why, size_t whysz) {
  int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
  if (fd < 0) {
    if (errno == ENOENT && !create) return "it does not exist (no run was recorded here yet)";
    snprintf(why, whysz, "%s", errno == ELOOP ? "it is a symbolic link" : strerror(errno));
    return why;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 077)) fchmod(fd, 0600);
  close(fd);
  static const char *const suffixes[] = {"-wal", "-shm"};
  for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
    char other[4096];
    if (snprintf(other, sizeof other, "%s%s", path, suffixes[i]) >= (int)sizeof other) continue;
    if (lstat(other, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 077))
      chmod(other, 0600);
  }
  return NULL;
}

/* open(path[, create]) -> db, or nil and a message. create (default
 * true): make the file when it is missing. */
static int db_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  bool create = lua_isnoneornil(L, 2) || lua_toboolean(L, 2);
  char buf[256];
  const char *why = make_private(path, create, buf, sizeof buf);
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  database *d = lua_newuserdatauv(L, sizeof *d, 0);
  d->db = NULL;
  d->e = lua_touserdata(L, lua_upvalueindex(1));
  d->away = NULL;
  d->cache_ref = LUA_NOREF;
  luaL_setmetatable(L, DB_MT);
  int rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    why = d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc);
  } else {
    sqlite3_busy_timeout(d->db, BUSY_TIMEOUT_MS);
    why = use_wal(d->db);
    if (!why && sqlite3_exec(d->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK)
      why = sqlite3_errmsg(d->db);
  }
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    sqlite3_close(d->db);
    d->db = NULL;
    return 2;
  }
  lua_newtable(L);
  d->cache_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

/* db:total_changes() -> rows this connection changed since it opened (a
 * transaction that changed none commits here: nothing to sync). */
static int db_total_changes(lua_State *L) {
  database *d = check_db(L);
  lua_pushinteger(L, (lua_Integer)sqlite3_total_changes64(d->db));
  return 1;
}

/* db:busy_timeout(ms): how long a statement waits for another connection's
 * lock before it fails with "database is locked" (the journal keeps it
 * short once open, and waits longer off the loop: lua/store_sqlite.lua). */
static int db_busy_timeout(lua_State *L) {
  database *d = check_db(L);
  sqlite3_busy_timeout(d->db, (int)luaL_checkinteger(L, 2));
  return 0;
}

void sqlite_register(lua_State *L, engine *e) {
  static const luaL_Reg methods[] = {{"run", db_run},
                                     {"rows", db_rows},
                                     {"exec", db_exec},
                                     {"exec_away", db_exec_away},
                                     {"run_away", db_run_away},
                                     {"close", db_close},
                                     {"busy_timeout", db_busy_timeout},
                                     {"total_changes", db_total_changes},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, DB_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, db_close);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, db_close);
    lua_setfield(L, -2, "__close");
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, db_open, 1);
  lua_setfield(L, -2, "open");
}
