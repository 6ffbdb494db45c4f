/* postgres.c: the libpq binding behind the journal's PostgreSQL store
 * (lua/store_postgres.lua holds the SQL and the policy). Every query
 * uses libpq's non-blocking API, driven by the engine's loop: a uv_poll_t
 * on the connection's socket and a uv_timer_t for the deadline, while the
 * calling task waits. Connecting runs on libuv's thread pool: libpq looks
 * up a host name and does the password exchange (SCRAM's key derivation,
 * milliseconds of CPU) and TLS's handshake inside its own calls, which
 * would hold the loop. The loop is never blocked on the server.
 *
 * One operation at a time per connection: the store serializes its users.
 * A connection that fails, passes its deadline or is abandoned by a
 * cancelled task is closed at once: the server rolls back what was not
 * committed, and the store connects again. Results come back as Lua values
 * by column type (integers, floats, booleans, text; NULL as nil). */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bindings.h"
#include "loop_watch.h"
#include "pq_api.h"
#include "task.h"

#define CONN_MT "engine.postgres"
#define MAX_PARAMS 64

typedef struct pg_wait pg_wait;
typedef struct pg_connecting pg_connecting;

/* A connection's C side: it outlives its Lua handle until the engine's
 * shutdown (engine_at_shutdown), so its libuv handles close exactly once.
 * The poll and the timer are kept for the connection's life: a query
 * starts and stops them, it does not make them. */
typedef struct pg_conn {
  PGconn *pg;
  pg_wait *wait; /* the operation in flight, or NULL */
  pg_connecting *connecting; /* a connect on the thread pool, or NULL */
  engine *e;
  uv_poll_t *poll; /* on poll_fd, or NULL */
  int poll_fd;
  uv_timer_t *timer;
  uv_timer_t *more; /* reading goes on next turn (RESULTS_PER_TURN), or NULL */
  struct pg_conn **handle; /* the Lua handle's pointer to this, or NULL */
  engine_cleanup cleanup;
} pg_conn;

enum phase { SENDING, READING };

struct pg_wait {
  op base;
  pg_conn *c;
  enum phase phase;
  double seconds;     /* the deadline, for the message */
  PGresult *result;   /* the last result with rows or a command's count */
  PGresult *failure;  /* the first error */
  const char *lost;   /* why the connection was given up, or NULL */
  char lost_text[160];
};

/* A connect on the thread pool. The pool thread owns pg until the loop
 * takes it (connect_done); a task cancelled meanwhile leaves it to be
 * closed there (c is NULL then). */
struct pg_connecting {
  op base;
  uv_work_t work;
  pg_conn *c;
  char *info;
  double seconds;
  PGconn *pg;
  bool ok, settings, timed_out;
  char message[256];
};

static void free_handle(uv_handle_t *h) {
  free(h);
}

/* libpq's messages end in a newline and some span lines: one line. */
static void push_one_line(lua_State *L, const char *text) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  bool space = false;
  for (const char *p = text ? text : ""; *p; p++) {
    if (*p == '\n' || *p == '\r' || *p == '\t') {
      space = true;
      continue;
    }
    if (space && luaL_bufflen(&b) > 0) luaL_addstring(&b, *p == ' ' ? ";" : "; ");
    space = false;
    luaL_addchar(&b, *p);
  }
  luaL_pushresult(&b);
  /* "ERROR:  x" as libpq prints a server error: the text alone */
  const char *s = lua_tostring(L, -1);
  if (strncmp(s, "ERROR:  ", 8) == 0 || strncmp(s, "FATAL:  ", 8) == 0) {
    lua_pushstring(L, s + 8);
    lua_remove(L, -2);
  }
}

static void ignore_notice(void *arg, const char *message) {
  (void)arg;
  (void)message;
}

/* --- the operation ------------------------------------------------------- */

static void stop_handles(pg_conn *c) {
  if (c->poll) uv_poll_stop(c->poll);
  if (c->timer) uv_timer_stop(c->timer);
  if (c->more) uv_timer_stop(c->more);
}

static void release(pg_wait *w) {
  stop_handles(w->c);
  if (w->result) PQclear(w->result);
  if (w->failure) PQclear(w->failure);
  w->c->wait = NULL;
  free(w);
}

/* The connection is closed: its poll handle first (it must not watch a
 * closed descriptor). */
static void close_connection(pg_conn *c) {
  if (c->poll) {
    uv_close((uv_handle_t *)c->poll, free_handle);
    c->poll = NULL;
  }
  if (c->pg) {
    PQfinish(c->pg);
    c->pg = NULL;
  }
}

static void wait_cancel(op *o) {
  pg_wait *w = (pg_wait *)o;
  close_connection(w->c); /* a query half done cannot be taken back */
  release(w);
}

static void push_value(lua_State *L, const PGresult *r, int row, int col) {
  if (PQgetisnull(r, row, col)) {
    lua_pushnil(L);
    return;
  }
  const char *v = PQgetvalue(r, row, col);
  switch (PQftype(r, col)) {
  case 20: /* int8 */
  case 21: /* int2 */
  case 23: /* int4 */
  case 26: /* oid */
    lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
    break;
  case 700: /* float4 */
  case 701: /* float8 */
  case 1700: /* numeric */
    lua_pushnumber(L, strtod(v, NULL));
    break;
  case 16: /* bool */
    lua_pushboolean(L, v[0] == 't');
    break;
  default:
    lua_pushlstring(L, v, (size_t)PQgetlength(r, row, col));
  }
}

static void push_rows(lua_State *L, const PGresult *r) {
  int rows = r ? PQntuples(r) : 0, cols = r ? PQnfields(r) : 0;
  lua_createtable(L, rows, 0);
  for (int i = 0; i < rows; i++) {
    lua_createtable(L, 0, cols);
    for (int c = 0; c < cols; c++) {
      push_value(L, r, i, c);
      lua_setfield(L, -2, PQfname(r, c));
    }
    lua_rawseti(L, -2, i + 1);
  }
}

/* Wakes the task: (true, conn) after a connect, (true, rows, changes)
 * after a query, else (true, nil, message, sqlstate, lost). */
static void finish(pg_wait *w) {
  task *t = w->base.owner;
  if (w->lost) close_connection(w->c);
  stop_handles(w->c);
  lua_State *T = task_wake_begin(t);
  lua_pushboolean(T, 1);
  int n = 1;
  if (w->lost) {
    lua_pushnil(T);
    lua_pushstring(T, w->lost);
    lua_pushnil(T);
    lua_pushboolean(T, 1);
    n += 4;
  } else if (w->failure) {
    lua_pushnil(T);
    push_one_line(T, PQresultErrorMessage(w->failure));
    const char *state = PQresultErrorField(w->failure, PG_DIAG_SQLSTATE);
    if (state)
      lua_pushstring(T, state);
    else
      lua_pushnil(T);
    lua_pushboolean(T, 0);
    n += 4;
  } else {
    push_rows(T, w->result);
    const char *count = w->result ? PQcmdTuples(w->result) : "";
    lua_pushinteger(T, *count ? strtoll(count, NULL, 10) : 0);
    n += 2;
  }
  release(w);
  task_wake(t, n);
}

static void give_up(pg_wait *w, const char *why) {
  if (!w->lost) {
    const char *msg = why;
    if (!msg && w->c->pg) msg = PQerrorMessage(w->c->pg);
    /* one line, kept short */
    size_t j = 0;
    bool space = false;
    for (const char *p = msg ? msg : "the connection failed"; *p && j + 3 < sizeof w->lost_text; p++) {
      if (*p == '\n' || *p == '\t' || *p == '\r') {
        space = true;
        continue;
      }
      if (space && j > 0) {
        w->lost_text[j++] = ';';
        if (*p != ' ') w->lost_text[j++] = ' ';
      }
      space = false;
      w->lost_text[j++] = *p;
    }
    w->lost_text[j] = '\0';
    w->lost = w->lost_text;
  }
  finish(w);
}

static void on_socket(uv_poll_t *h, int status, int events);

/* Watches the connection's socket for events (it may change while
 * connecting: libpq tries one address after another). */
static bool watch(pg_wait *w, int events) {
  pg_conn *c = w->c;
  int fd = PQsocket(c->pg);
  if (fd < 0) return false;
  if (c->poll && c->poll_fd != fd) {
    uv_close((uv_handle_t *)c->poll, free_handle);
    c->poll = NULL;
  }
  if (!c->poll) {
    c->poll = malloc(sizeof *c->poll);
    if (!c->poll || uv_poll_init(&c->e->loop, c->poll, fd) != 0) {
      free(c->poll);
      c->poll = NULL;
      return false;
    }
    c->poll_fd = fd;
  }
  c->poll->data = w;
  return uv_poll_start(c->poll, events, on_socket) == 0;
}

static void read_results(pg_wait *w);

static void read_more(uv_timer_t *timer) {
  pg_wait *w = timer->data;
  engine *e = w->c->e;
  uint64_t began = loop_watch_clock();
  read_results(w);
  loop_watch_store(e, began);
}

/* Past this many results in one callback (a transaction's notes sent
 * together answer with one each), the rest are read next turn. */
#define RESULTS_PER_TURN 64

/* Reads what arrived; finishes when the last result is in. */
static void read_results(pg_wait *w) {
  pg_conn *c = w->c;
  PGconn *pg = c->pg;
  if (!PQconsumeInput(pg)) {
    give_up(w, NULL);
    return;
  }
  int taken = 0;
  while (!PQisBusy(pg)) {
    if (++taken > RESULTS_PER_TURN) {
      if (!c->more) {
        c->more = malloc(sizeof *c->more);
        if (!c->more) {
          give_up(w, "out of memory");
          return;
        }
        uv_timer_init(&c->e->loop, c->more);
      }
      c->more->data = w;
      uv_timer_start(c->more, read_more, 0, 0);
      return;
    }
    PGresult *r = PQgetResult(pg);
    if (!r) {
      finish(w);
      return;
    }
    switch (PQresultStatus(r)) {
    case PGRES_TUPLES_OK:
    case PGRES_COMMAND_OK:
    case PGRES_EMPTY_QUERY:
      if (w->result) PQclear(w->result);
      w->result = r;
      break;
    default:
      if (!w->failure)
        w->failure = r;
      else
        PQclear(r);
    }
  }
  if (!watch(w, UV_READABLE)) give_up(w, NULL);
}

static void step(pg_wait *w) {
  PGconn *pg = w->c->pg;
  if (w->phase == SENDING) {
    int r = PQflush(pg);
    if (r < 0) {
      give_up(w, NULL);
      return;
    }
    if (r == 1) { /* more to send; the server may answer meanwhile */
      if (!watch(w, UV_READABLE | UV_WRITABLE)) give_up(w, NULL);
      return;
    }
    w->phase = READING;
    if (!watch(w, UV_READABLE)) give_up(w, NULL);
    return;
  }
  read_results(w);
}

static void socket_ready(pg_wait *w, int status, int events) {
  if (status < 0) {
    give_up(w, uv_strerror(status));
    return;
  }
  if (w->phase == SENDING && (events & UV_READABLE) && !(events & UV_WRITABLE)) {
    if (!PQconsumeInput(w->c->pg)) {
      give_up(w, NULL);
      return;
    }
  }
  step(w);
}

static void on_socket(uv_poll_t *h, int status, int events) {
  pg_wait *w = h->data;
  engine *e = w->c->e;
  uint64_t began = loop_watch_clock();
  socket_ready(w, status, events);
  loop_watch_store(e, began);
}

static void on_deadline(uv_timer_t *timer) {
  pg_wait *w = timer->data;
  snprintf(w->lost_text, sizeof w->lost_text, "no answer from the server within %g s",
           w->seconds);
  w->lost = w->lost_text;
  finish(w);
}

/* Arms an operation on c for the task running L and waits for it. A
 * query was sent (as far as the socket took it) by the caller. */
static int start(lua_State *L, task *t, pg_conn *c, enum phase phase, double seconds) {
  pg_wait *w = calloc(1, sizeof *w);
  if (!w) return luaL_error(L, "out of memory");
  if (!c->timer) {
    c->timer = malloc(sizeof *c->timer);
    if (!c->timer) {
      free(w);
      return luaL_error(L, "out of memory");
    }
    uv_timer_init(&c->e->loop, c->timer);
  }
  w->base.cancel = wait_cancel;
  w->c = c;
  w->phase = phase;
  w->seconds = seconds;
  c->timer->data = w;
  uv_timer_start(c->timer, on_deadline, (uint64_t)(seconds * 1000.0), 0);
  c->wait = w;
  w->base.owner = t;
  int events = UV_WRITABLE;
  if (phase == SENDING) { /* most queries leave whole at once: wait for the answer */
    int r = PQflush(c->pg);
    if (r == 0) w->phase = READING;
    events = r == 0 ? UV_READABLE : UV_READABLE | UV_WRITABLE;
  }
  if (!watch(w, events)) {
    /* no socket to watch: answer from the loop, never from here */
    snprintf(w->lost_text, sizeof w->lost_text, "%s", "the connection has no socket");
    w->lost = w->lost_text;
    uv_timer_start(c->timer, on_deadline, 0, 0);
  }
  return task_wait_op(L, t, &w->base);
}

/* --- Lua ----------------------------------------------------------------- */

static pg_conn *check_conn(lua_State *L) {
  pg_conn **h = luaL_checkudata(L, 1, CONN_MT);
  if (!*h) luaL_error(L, "postgres: the engine is shutting down");
  return *h;
}

/* At the engine's shutdown: the handles close, the memory goes. */
static void conn_shutdown(void *data) {
  pg_conn *c = data;
  if (c->connecting) c->connecting->c = NULL; /* (closed when its thread is done) */
  close_connection(c);
  if (c->timer) uv_close((uv_handle_t *)c->timer, free_handle);
  if (c->more) uv_close((uv_handle_t *)c->more, free_handle);
  if (c->handle) *c->handle = NULL;
  free(c);
}

static double check_seconds(lua_State *L, int idx) {
  double s = luaL_checknumber(L, idx);
  if (!(s > 0 && s <= 86400)) luaL_argerror(L, idx, "seconds from 0 to 86400");
  return s;
}

static int conn_close(lua_State *L) {
  pg_conn **h = luaL_checkudata(L, 1, CONN_MT);
  pg_conn *c = *h;
  if (!c || c->wait || c->connecting) return 0; /* (its task's cancel closes it) */
  close_connection(c);
  return 0;
}

static int conn_gc(lua_State *L) {
  pg_conn **h = luaL_checkudata(L, 1, CONN_MT);
  if (*h) {
    if (!(*h)->wait && !(*h)->connecting) close_connection(*h);
    (*h)->handle = NULL;
    *h = NULL;
  }
  return 0;
}

/* new() -> an unconnected conn */
static int pg_new(lua_State *L) {
  char why[256];
  if (!pq_api_load(why, sizeof why)) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  pg_conn **h = lua_newuserdatauv(L, sizeof *h, 0);
  *h = NULL;
  luaL_setmetatable(L, CONN_MT);
  pg_conn *c = calloc(1, sizeof *c);
  if (!c) return luaL_error(L, "out of memory");
  c->e = lua_touserdata(L, lua_upvalueindex(1));
  c->poll_fd = -1;
  c->handle = h;
  c->cleanup.run = conn_shutdown;
  c->cleanup.data = c;
  engine_at_shutdown(c->e, &c->cleanup);
  *h = c;
  return 1;
}

static void keep_message(pg_connecting *j, const char *text) {
  snprintf(j->message, sizeof j->message, "%s", text && *text ? text : "the connection failed");
}

/* libpq's connect sequence (PQconnectStart, then PQconnectPoll as the
 * socket allows), within the deadline; the thread waits in poll(2). */
static void connect_sequence(pg_connecting *j);

static void connect_run(uv_work_t *req) {
  connect_sequence(req->data);
  if (pq_fns.thread_stop) pq_fns.thread_stop();
}

static void connect_sequence(pg_connecting *j) {
  PGconn *pg = j->pg = PQconnectStart(j->info);
  if (!pg) {
    keep_message(j, "out of memory");
    return;
  }
  PQsetNoticeProcessor(pg, ignore_notice, NULL);
  if (PQstatus(pg) == CONNECTION_BAD) { /* before any traffic: the settings */
    j->settings = true;
    keep_message(j, PQerrorMessage(pg));
    return;
  }
  uint64_t deadline = uv_hrtime() + (uint64_t)(j->seconds * 1e9);
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  for (;;) {
    if (status == PGRES_POLLING_OK) {
      j->ok = true;
      return;
    }
    if (status == PGRES_POLLING_FAILED) {
      keep_message(j, PQerrorMessage(pg));
      return;
    }
    uint64_t now = uv_hrtime();
    if (now >= deadline) {
      j->timed_out = true;
      snprintf(j->message, sizeof j->message, "no answer from the server within %g s", j->seconds);
      return;
    }
    struct pollfd p = {PQsocket(pg), status == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
    int ready = poll(&p, 1, (int)((deadline - now) / 1000000 + 1));
    if (ready < 0 && errno != EINTR) {
      keep_message(j, strerror(errno));
      return;
    }
    if (ready > 0) status = PQconnectPoll(pg);
  }
}

static void connecting_free(pg_connecting *j) {
  if (j->pg) PQfinish(j->pg);
  free(j->info);
  free(j);
}

static void connect_done(uv_work_t *req, int status) {
  (void)status;
  pg_connecting *j = req->data;
  pg_conn *c = j->c;
  if (!c) { /* abandoned */
    connecting_free(j);
    return;
  }
  c->connecting = NULL;
  task *t = j->base.owner;
  lua_State *T = task_wake_begin(t);
  lua_pushboolean(T, 1);
  int n = 2;
  if (j->ok) {
    c->pg = j->pg;
    j->pg = NULL;
    PQsetnonblocking(c->pg, 1);
    lua_pushboolean(T, 1);
  } else {
    lua_pushnil(T);
    push_one_line(T, j->message);
    n = 3;
    if (j->settings) {
      lua_pushliteral(T, "settings");
      n = 4;
    }
  }
  connecting_free(j);
  task_wake(t, n);
}

static void connect_cancel(op *o) {
  pg_connecting *j = (pg_connecting *)o;
  if (j->c) j->c->connecting = NULL;
  j->c = NULL; /* the pool thread goes on; connect_done closes what it made */
}

/* conn:connect(conninfo, seconds) -> true, or nil and a message (one
 * line), and "settings" when libpq refused them before connecting. conninfo is a postgresql:// URL or key=value words; libpq reads
 * its environment (PGPASSWORD, PGPASSFILE, PGSSLMODE, PGSERVICE, ...) as
 * usual. An open connection is closed first. */
static int conn_connect(lua_State *L) {
  pg_conn *c = check_conn(L);
  const char *info = luaL_checkstring(L, 2);
  double seconds = check_seconds(L, 3);
  task *t = task_require_waitable(L, "the journal's PostgreSQL store");
  if (c->wait || c->connecting) return luaL_error(L, "postgres: the connection is busy");
  close_connection(c);
  pg_connecting *j = calloc(1, sizeof *j);
  if (j) j->info = strdup(info);
  if (!j || !j->info) {
    free(j);
    return luaL_error(L, "out of memory");
  }
  j->base.cancel = connect_cancel;
  j->c = c;
  j->seconds = seconds;
  j->work.data = j;
  if (uv_queue_work(&c->e->loop, &j->work, connect_run, connect_done) != 0) {
    connecting_free(j);
    return luaL_error(L, "postgres: cannot use the thread pool");
  }
  c->connecting = j;
  lua_settop(L, 1); /* the conn stays on the stack while the task waits */
  return task_wait_op(L, t, &j->base);
}

/* Copies s into b with every NUL byte and invalid UTF-8 sequence made
 * U+FFFD: a server in UTF-8 refuses the whole statement otherwise. */
static void add_utf8(luaL_Buffer *b, const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t ascii = i; /* a run of plain ASCII goes in whole (a summary is mostly that) */
    while (ascii < n && s[ascii] != 0 && s[ascii] < 0x80) ascii++;
    if (ascii > i) {
      luaL_addlstring(b, (const char *)s + i, ascii - i);
      i = ascii;
      continue;
    }
    unsigned char c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    bool ok = c != 0 && len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; k++) ok = (s[i + k] & 0xc0) == 0x80;
    if (ok && len == 2) ok = c >= 0xc2;
    if (ok && len == 3) {
      unsigned cp = ((c & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) | (s[i + 2] & 0x3fu);
      ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
    }
    if (ok && len == 4) {
      unsigned cp = ((c & 0x07u) << 18) | ((s[i + 1] & 0x3fu) << 12) | ((s[i + 2] & 0x3fu) << 6) |
                    (s[i + 3] & 0x3fu);
      ok = cp >= 0x10000 && cp <= 0x10ffff;
    }
    if (ok) {
      luaL_addlstring(b, (const char *)s + i, len);
      i += len;
    } else {
      luaL_addstring(b, "\xef\xbf\xbd");
      i++;
    }
  }
}

/* Adds to b what stands for the n-th placeholder (from 1). */
typedef void (*placeholder_fn)(lua_State *L, luaL_Buffer *b, int n, void *data);

/* Pushes sql with each ? outside quotes replaced by what put adds for it;
 * returns how many there were. (The store writes its statements once, for
 * SQLite and PostgreSQL alike.) */
static int each_placeholder(lua_State *L, const char *sql, placeholder_fn put, void *data) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int n = 0;
  char quote = 0;
  for (const char *p = sql; *p; p++) {
    if (quote) {
      if (*p == quote) quote = 0;
    } else if (*p == '\'' || *p == '"') {
      quote = *p;
    } else if (*p == '?') {
      put(L, &b, ++n, data);
      continue;
    }
    luaL_addchar(&b, *p);
  }
  luaL_pushresult(&b);
  return n;
}

static void put_number(lua_State *L, luaL_Buffer *b, int n, void *data) {
  (void)data;
  lua_pushfstring(L, "$%d", n);
  luaL_addvalue(b);
}

/* The SQL with each ? outside quotes made $1, $2, ... */
static int numbered(lua_State *L, const char *sql) {
  return each_placeholder(L, sql, put_number, NULL);
}

/* Pushes the text form of the parameter at arg (number index) and
 * returns true, or returns false for nil (SQL NULL). Text is repaired to
 * valid UTF-8 (add_utf8). */
static bool push_param(lua_State *L, int arg, int index) {
  switch (lua_type(L, arg)) {
  case LUA_TNIL:
  case LUA_TNONE:
    return false;
  case LUA_TBOOLEAN:
    lua_pushstring(L, lua_toboolean(L, arg) ? "true" : "false");
    return true;
  case LUA_TNUMBER:
    if (lua_isinteger(L, arg)) {
      lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, arg));
    } else {
      char num[64];
      snprintf(num, sizeof num, "%.17g", lua_tonumber(L, arg));
      lua_pushstring(L, num);
    }
    return true;
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, arg, &n);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    add_utf8(&b, (const unsigned char *)s, n);
    luaL_pushresult(&b);
    return true;
  }
  default:
    return luaL_error(L, "postgres: parameter %d is a %s (expected nil, boolean, number or string)", index,
                      luaL_typename(L, arg));
  }
}

typedef struct {
  PGconn *pg;
  int nargs; /* the values, from index 3 */
} inlining;

static void put_literal(lua_State *L, luaL_Buffer *b, int n, void *data) {
  inlining *in = data;
  if (n > in->nargs || !push_param(L, 2 + n, n)) { /* (too few values: the count says so after) */
    luaL_addstring(b, "NULL");
    return;
  }
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  char *literal = PQescapeLiteral(in->pg, text, len);
  lua_pop(L, 1);
  if (!literal) luaL_error(L, "postgres: %s", PQerrorMessage(in->pg));
  luaL_addstring(b, literal);
  PQfreemem(literal);
}

/* conn:inline(sql, ...) -> the statement with each ? outside quotes
 * made the value's quoted literal (as a parameter's text, so the server
 * types it from its place alike), for statements sent together in one
 * round trip; or nil when the connection is closed. */
static int conn_inline(lua_State *L) {
  pg_conn *c = check_conn(L);
  const char *sql = luaL_checkstring(L, 2);
  if (!c->pg) return 0;
  inlining in = {c->pg, lua_gettop(L) - 2};
  int n = each_placeholder(L, sql, put_literal, &in);
  if (n != in.nargs) return luaL_error(L, "postgres: the statement has %d parameters, got %d", n, in.nargs);
  return 1;
}

/* conn:query(seconds, sql, ...) -> rows, changes; or nil, message,
 * sqlstate, lost (true: the connection is gone). Without parameters
 * the SQL may hold several statements; the rows are the last one's. */
static int conn_query(lua_State *L) {
  pg_conn *c = check_conn(L);
  double seconds = check_seconds(L, 2);
  const char *sql = luaL_checkstring(L, 3);
  task *t = task_require_waitable(L, "the journal's PostgreSQL store");
  if (c->wait || c->connecting) return luaL_error(L, "postgres: the connection is busy");
  if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
    lua_pushnil(L);
    lua_pushstring(L, "the connection is closed");
    lua_pushnil(L);
    lua_pushboolean(L, 1);
    return 4;
  }
  uint64_t began = loop_watch_clock();
  int nparams = lua_gettop(L) - 3;
  if (nparams > MAX_PARAMS) return luaL_error(L, "postgres: more than %d parameters", MAX_PARAMS);
  luaL_checkstack(L, nparams + 8, "postgres: parameters");
  int sent;
  if (nparams == 0) {
    sent = PQsendQuery(c->pg, sql);
  } else {
    int expected = numbered(L, sql);
    if (expected != nparams)
      return luaL_error(L, "postgres: the statement has %d parameters, got %d", expected, nparams);
    const char *values[MAX_PARAMS];
    for (int i = 0; i < nparams; i++)
      values[i] = push_param(L, 4 + i, i + 1) ? lua_tostring(L, -1) : NULL; /* anchored until sent */
    sent = PQsendQueryParams(c->pg, lua_tostring(L, 4 + nparams), nparams, NULL, values, NULL,
                             NULL, 0);
  }
  if (!sent) {
    lua_pushnil(L);
    push_one_line(L, PQerrorMessage(c->pg));
    lua_pushnil(L);
    lua_pushboolean(L, 1);
    close_connection(c);
    return 4;
  }
  lua_settop(L, 1); /* the conn stays on the stack while the task waits */
  loop_watch_store(c->e, began); /* (start yields: it does not return here) */
  return start(L, t, c, SENDING, seconds);
}

/* conn:alive() -> whether it is connected (as far as libpq knows). */
static int conn_alive(lua_State *L) {
  pg_conn *c = check_conn(L);
  lua_pushboolean(L, c->pg && PQstatus(c->pg) == CONNECTION_OK);
  return 1;
}

/* conn:server_version() -> e.g. 150018 */
static int conn_server_version(lua_State *L) {
  pg_conn *c = check_conn(L);
  lua_pushinteger(L, c->pg ? PQserverVersion(c->pg) : 0);
  return 1;
}

/* parse(conninfo) -> true, or nil and libpq's message: checks a URL
 * without connecting (and without printing it: the message never holds
 * the password). */
static int pg_parse(lua_State *L) {
  const char *info = luaL_checkstring(L, 1);
  char why[256];
  if (!pq_api_load(why, sizeof why)) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  char *err = NULL;
  PQconninfoOption *opts = PQconninfoParse(info, &err);
  if (!opts) {
    lua_pushnil(L);
    push_one_line(L, err ? err : "out of memory");
    if (err) PQfreemem(err);
    return 2;
  }
  PQconninfoFree(opts);
  lua_pushboolean(L, 1);
  return 1;
}

void postgres_register(lua_State *L, engine *e) {
  static const luaL_Reg methods[] = {{"connect", conn_connect},
                                     {"query", conn_query},
                                     {"inline", conn_inline},
                                     {"close", conn_close},
                                     {"alive", conn_alive},
                                     {"server_version", conn_server_version},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, CONN_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, pg_new, 1);
  lua_setfield(L, -2, "new");
  lua_pushcfunction(L, pg_parse);
  lua_setfield(L, -2, "parse");
}
