/* httpd.c: the HTTP server behind `engine ui` (engine.c.httpd), on the
 * engine's loop: libmicrohttpd in its external-loop mode (its epoll
 * descriptor watched by a uv_poll_t, its timeouts by a uv_timer_t), so
 * HTTP parsing is the library's and every request is answered by Lua
 * code in a task of its own (lua/ui.lua), which may wait on the journal's
 * store. While that task runs, the request's connection is suspended;
 * respond() hands the answer back and resumes it. This file only carries
 * requests and answers: what is allowed and what is shown is lua/ui.lua's. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>

#include "bindings.h"
#include "mhd_api.h"
#include "task.h"

#define SERVER_MT "engine.httpd"
#define MAX_CONNECTIONS 256
#define IDLE_SECONDS 30

typedef struct request request;

typedef struct server {
  engine *e;
  struct MHD_Daemon *d;
  int listen_fd;
  uv_poll_t *poll; /* on the daemon's epoll descriptor */
  uv_timer_t *timer;
  int handler_ref;
  request *suspended; /* waiting for their task's answer */
  long next_id;
  struct server **handle; /* the Lua handle's pointer to this, or NULL */
  engine_cleanup cleanup;
} server;

struct request {
  long id;
  server *s;
  struct MHD_Connection *conn;
  bool answered;
  unsigned status;
  char *body;
  size_t len;
  char **headers; /* name, value, ..., NULL */
  request *prev, *next;
};

static void free_handle(uv_handle_t *h) {
  free(h);
}

static void quiet_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  (void)fmt;
  (void)ap;
}

static void free_answer(request *r) {
  free(r->body);
  r->body = NULL;
  for (char **h = r->headers; h && *h; h++) free(*h);
  free(r->headers);
  r->headers = NULL;
}

static void unlink_request(request *r) {
  server *s = r->s;
  if (r->prev)
    r->prev->next = r->next;
  else if (s->suspended == r)
    s->suspended = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

/* --- the daemon on the loop --------------------------------------------- */

static void pump(server *s);

static void on_epoll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  pump(h->data);
}

static void on_timer(uv_timer_t *t) {
  pump(t->data);
}

/* Lets the daemon work, then arms the timer for its next timeout. */
static void pump(server *s) {
  if (!s->d) return;
  MHD_run(s->d);
  MHD_UNSIGNED_LONG_LONG ms;
  if (s->d && MHD_get_timeout(s->d, &ms) == MHD_YES)
    uv_timer_start(s->timer, on_timer, ms, 0);
  else
    uv_timer_stop(s->timer);
}

/* Soon, from the loop (a resumed connection needs the daemon to run). */
static void pump_soon(server *s) {
  if (s->timer) uv_timer_start(s->timer, on_timer, 0, 0);
}

/* --- requests ----------------------------------------------------------- */

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  lua_State *L = cls;
  if (key) {
    lua_pushstring(L, value ? value : "");
    lua_setfield(L, -2, key);
  }
  return MHD_YES;
}

static void push_header(lua_State *L, struct MHD_Connection *conn, const char *name, const char *field) {
  const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
  if (v) {
    lua_pushstring(L, v);
    lua_setfield(L, -2, field);
  }
}

/* The request's task: the handler with {id, method, path, query,
 * authorization, cookie}. */
static void start_task(server *s, request *r, const char *method, const char *url) {
  lua_State *L = s->e->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, s->handler_ref);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, r->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, method);
  lua_setfield(L, -2, "method");
  lua_pushstring(L, url);
  lua_setfield(L, -2, "path");
  lua_newtable(L);
  MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, add_query, L);
  lua_setfield(L, -2, "query");
  push_header(L, r->conn, MHD_HTTP_HEADER_AUTHORIZATION, "authorization");
  push_header(L, r->conn, MHD_HTTP_HEADER_COOKIE, "cookie");
  task_spawn(s->e, L, 1);
  lua_pop(L, 1); /* its handle: the task anchors itself while it runs */
}

static enum MHD_Result queue_answer(request *r) {
  struct MHD_Response *resp = MHD_create_response_from_buffer(r->len, r->body, MHD_RESPMEM_MUST_COPY);
  if (!resp) return MHD_NO;
  for (char **h = r->headers; h && h[0] && h[1]; h += 2) MHD_add_response_header(resp, h[0], h[1]);
  enum MHD_Result ok = MHD_queue_response(r->conn, r->status, resp);
  MHD_destroy_response(resp);
  free_answer(r);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size,
                                  void **con_cls) {
  (void)version;
  (void)upload;
  server *s = cls;
  request *r = *con_cls;
  if (!r) { /* the headers are in: the answer is Lua's */
    r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->id = ++s->next_id;
    r->s = s;
    r->conn = conn;
    *con_cls = r;
    r->next = s->suspended;
    if (s->suspended) s->suspended->prev = r;
    s->suspended = r;
    MHD_suspend_connection(conn);
    start_task(s, r, method, url);
    return MHD_YES;
  }
  *upload_size = 0; /* a body is not read: every answer is to a GET or HEAD */
  if (!r->answered) return MHD_YES;
  return queue_answer(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode why) {
  (void)cls;
  (void)conn;
  (void)why;
  request *r = *con_cls;
  if (!r) return;
  unlink_request(r);
  free_answer(r);
  free(r);
  *con_cls = NULL;
}

/* Gives r its answer (copied) and resumes its connection. */
static void answer(request *r, unsigned status, const char *body, size_t len, char **headers) {
  r->status = status;
  r->body = malloc(len ? len : 1);
  if (r->body) memcpy(r->body, body, len);
  r->len = r->body ? len : 0;
  r->headers = headers;
  r->answered = true;
  unlink_request(r);
  MHD_resume_connection(r->conn);
  pump_soon(r->s);
}

/* --- Lua ---------------------------------------------------------------- */

static server *check_server(lua_State *L) {
  server **h = luaL_checkudata(L, 1, SERVER_MT);
  if (!*h || !(*h)->d) luaL_error(L, "httpd: the server is stopped");
  return *h;
}

/* Stops the daemon: the connections still waiting get 503 first. */
static void stop_server(server *s) {
  if (!s->d) return;
  for (request *r = s->suspended; r; r = s->suspended) {
    static const char text[] = "the server is stopping\n";
    answer(r, 503, text, sizeof text - 1, NULL);
  }
  MHD_run(s->d);
  MHD_stop_daemon(s->d);
  s->d = NULL;
  if (s->poll) {
    uv_close((uv_handle_t *)s->poll, free_handle);
    s->poll = NULL;
  }
  if (s->timer) {
    uv_close((uv_handle_t *)s->timer, free_handle);
    s->timer = NULL;
  }
  if (s->listen_fd >= 0) close(s->listen_fd);
  s->listen_fd = -1;
  luaL_unref(s->e->L, LUA_REGISTRYINDEX, s->handler_ref);
  s->handler_ref = LUA_NOREF;
}

static void server_shutdown(void *data) {
  server *s = data;
  stop_server(s);
  if (s->handle) *s->handle = NULL;
  free(s);
}

/* Binds host:port for listening: the socket, or -1 with why. */
static int listen_on(const char *host, const char *port, char *why, size_t whysz) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    snprintf(why, whysz, "cannot resolve %s: %s", host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
      snprintf(why, whysz, "cannot listen on %s port %s: %s", host, port, strerror(errno));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

/* start(host, port, handler) -> server, or nil and a message. handler(req)
 * runs as a task per request and ends with server:respond(req.id, ...). */
static int httpd_start(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  const char *port = luaL_checkstring(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  char why[256];
  if (!mhd_api_load(why, sizeof why)) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  int fd = listen_on(host, port, why, sizeof why);
  if (fd < 0) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  server **h = lua_newuserdatauv(L, sizeof *h, 0);
  *h = NULL;
  luaL_setmetatable(L, SERVER_MT);
  server *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return luaL_error(L, "out of memory");
  }
  s->e = e;
  s->listen_fd = fd;
  s->handler_ref = LUA_NOREF;
  s->d = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL, on_request, s,
                          MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                          MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
                          MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_SECONDS,
                          MHD_OPTION_EXTERNAL_LOGGER, quiet_log, NULL, MHD_OPTION_END);
  const union MHD_DaemonInfo *info = s->d ? MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
  s->poll = malloc(sizeof *s->poll);
  s->timer = malloc(sizeof *s->timer);
  if (!s->d || !info || !s->poll || !s->timer || uv_poll_init(&e->loop, s->poll, info->epoll_fd) != 0) {
    if (s->d) MHD_stop_daemon(s->d);
    free(s->poll);
    free(s->timer);
    close(fd);
    free(s);
    lua_pushnil(L);
    lua_pushstring(L, "cannot start the HTTP server (libmicrohttpd)");
    return 2;
  }
  uv_timer_init(&e->loop, s->timer);
  s->poll->data = s->timer->data = s;
  uv_poll_start(s->poll, UV_READABLE, on_epoll);
  lua_pushvalue(L, 3);
  s->handler_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  s->cleanup.run = server_shutdown;
  s->cleanup.data = s;
  engine_at_shutdown(e, &s->cleanup);
  s->handle = h;
  *h = s;
  pump(s);
  return 1;
}

/* server:port() -> the port it listens on (when it was given as 0). */
static int server_port(lua_State *L) {
  server *s = check_server(L);
  struct sockaddr_storage a;
  socklen_t n = sizeof a;
  if (getsockname(s->listen_fd, (struct sockaddr *)&a, &n) != 0) return luaL_error(L, "httpd: %s", strerror(errno));
  int port = a.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&a)->sin6_port)
                                     : ntohs(((struct sockaddr_in *)&a)->sin_port);
  lua_pushinteger(L, port);
  return 1;
}

/* server:respond(id, status, body, {name, value, ...}): the answer to a
 * request (ignored when it is gone: the server stopped meanwhile). */
static int server_respond(lua_State *L) {
  server **h = luaL_checkudata(L, 1, SERVER_MT);
  lua_Integer id = luaL_checkinteger(L, 2);
  lua_Integer status = luaL_checkinteger(L, 3);
  size_t len;
  const char *body = luaL_checklstring(L, 4, &len);
  luaL_checktype(L, 5, LUA_TTABLE);
  if (status < 100 || status > 599) return luaL_error(L, "httpd: status %d", (int)status);
  server *s = *h;
  request *r = s ? s->suspended : NULL;
  while (r && r->id != id) r = r->next;
  if (!r) return 0;
  lua_Integer n = luaL_len(L, 5);
  char **headers = calloc((size_t)n + 1, sizeof *headers);
  if (!headers) return luaL_error(L, "out of memory");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 5, i);
    const char *v = lua_tostring(L, -1);
    headers[i - 1] = strdup(v ? v : "");
    lua_pop(L, 1);
  }
  answer(r, (unsigned)status, body, len, headers);
  return 0;
}

static int server_stop(lua_State *L) {
  server **h = luaL_checkudata(L, 1, SERVER_MT);
  if (*h) stop_server(*h);
  return 0;
}

static int server_gc(lua_State *L) {
  server **h = luaL_checkudata(L, 1, SERVER_MT);
  if (*h) {
    stop_server(*h);
    (*h)->handle = NULL;
    *h = NULL;
  }
  return 0;
}

void httpd_register(lua_State *L, engine *e) {
  static const luaL_Reg methods[] = {
      {"port", server_port}, {"respond", server_respond}, {"stop", server_stop}, {NULL, NULL}};
  if (luaL_newmetatable(L, SERVER_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, server_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, httpd_start, 1);
  lua_setfield(L, -2, "start");
}
