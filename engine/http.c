/* http.c: the http.request binding, which suspends a task on an HTTP
 * transfer. The options become a spec (http_spec.c), the spec an operation
 * that owns everything the request needs, the operation a transfer
 * (http_pool.c: per-host queue, pooled easy handles, curl on the loop),
 * and the transfer's end the task's answer (http_answer.c). What requests
 * share (the pool, the budget of answer bytes, the CA settings) is made on
 * the first request and given back at the engine's shutdown. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bindings.h"
#include "errors.h"
#include "http_answer.h"
#include "http_op.h"
#include "log.h"
#include "text.h"

#define DEFAULT_HOST_ACTIVE 64                 /* transfers at once per host */
#define DEFAULT_BUFFERED (256.0 * 1024 * 1024) /* all answers at once */
#define CONNECT_TIMEOUT_MAX 10.0               /* seconds, within the request's */
#define MAX_REDIRECTS 10L

typedef struct {
  engine *eng;
  http_pool *pool;     /* NULL until the first request */
  http_budget budget;
  const char *ca_file; /* ENGINE_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE */
  const char *ca_dir;  /* SSL_CERT_DIR */
  engine_cleanup cleanup;
} http_binding;

static http_op *op_of(transfer *t) {
  return (http_op *)((char *)t - offsetof(http_op, xfer));
}

/* What an op owns; it never touches the pool, so it is safe for an op
 * that never reached it. */
static void op_free(http_op *h) {
  answer_free(h);
  curl_slist_free_all(h->req_headers);
  free(h->url);
  free(h->post);
  free(h);
}

static void op_release(http_op *h) {
  pool_release(h->pool, &h->xfer);
  op_free(h);
}

static void http_cancel(op *o) {
  op_release((http_op *)o);
}

/* The request's method and body on easy. */
static void set_method(http_op *h, CURL *easy) {
  const char *method = h->method;
  if (h->nobody) {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (h->post || strcmp(method, "POST") == 0) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->post_len);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, h->post ? h->post : "");
  }
  /* libcurl silently re-sends a request whose reused connection died before
   * any answer; for POST and PATCH that could run the action twice, so they
   * get a fresh connection, which it never retries. */
  if (strcmp(method, "POST") == 0 || strcmp(method, "PATCH") == 0) {
    curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
    /* and that connection closes after: kept, it would only pile up */
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
  }
  if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0 &&
      strcmp(method, "HEAD") != 0)
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);
  else if (strcmp(method, "GET") == 0 && h->post)
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "GET");
}

/* An easy handle set up for t's request, as its transfer starts: the
 * error buffer is taken only now, so waiting requests hold none. */
static bool prepare(void *data, transfer *t, CURL *easy) {
  http_binding *b = data;
  http_op *h = op_of(t);
  if (!h->errbuf && !(h->errbuf = calloc(1, CURL_ERROR_SIZE))) return false;
  curl_easy_setopt(easy, CURLOPT_URL, h->url);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, h->follow ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(h->timeout * 1000));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(fmin(h->timeout, CONNECT_TIMEOUT_MAX) * 1000));
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "engine/" ENGINE_VERSION);
  if (b->ca_file) curl_easy_setopt(easy, CURLOPT_CAINFO, b->ca_file);
  if (b->ca_dir) curl_easy_setopt(easy, CURLOPT_CAPATH, b->ca_dir);
  /* Compressed answers only when asked (API clients ask): the body cap
   * counts bytes after decompression either way. */
  if (h->compressed) curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h->req_headers);
  answer_attach(h, easy);
  set_method(h, easy);
  return true;
}

/* From the loop: the task gets its answer. */
static void finished(void *data, transfer *t, CURLcode result) {
  (void)data;
  http_op *h = op_of(t);
  task *owner = h->base.owner;
  lua_State *T = task_wake_begin(owner);
  answer_push(T, h, result);
  op_release(h);
  task_wake(owner, 2);
}

/* A whole number >= 1 from the environment: fallback when unset, -1 when
 * it is something else. */
static long env_count(const char *name, long fallback) {
  const char *v = getenv(name);
  if (!v || !*v) return fallback;
  char *end;
  long n = strtol(v, &end, 10);
  return (*end || n < 1) ? -1 : n;
}

/* Raises a "network" error object (at the caller's position) for the
 * request to url, which never left this machine. */
static int raise_unsent(lua_State *L, const char *url, const char *message) {
  error_push(L, "network", "%s", message);
  if (url) {
    lua_pushstring(L, url);
    lua_setfield(L, -2, "url");
  }
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "sent");
  error_locate(L, -1);
  return lua_error(L);
}

/* The first request: libcurl, the pool and the limits the environment
 * sets (a wrong value there is misuse: a plain raise). */
static http_pool *pool_get(lua_State *L, http_binding *b) {
  if (b->pool) return b->pool;
  static const char *const names[] = {"ENGINE_HTTP_MAX_HOST_CONNECTIONS",
                                      "ENGINE_HTTP_MAX_BUFFERED"};
  long cap = env_count(names[0], DEFAULT_HOST_ACTIVE);
  long buffered = env_count(names[1], (long)DEFAULT_BUFFERED);
  for (int i = 0; i < 2; i++)
    if ((i == 0 ? cap : buffered) < 0)
      luaL_error(L, "%s must be a whole number >= 1, got \"%s\"", names[i], getenv(names[i]));
  transfer_owner owner = {.data = b, .prepare = prepare, .finished = finished};
  char why[256], message[300];
  if (!(b->pool = pool_open(&b->eng->loop, cap, &owner, why, sizeof why))) {
    snprintf(message, sizeof message, "http.request: %s", why);
    raise_unsent(L, NULL, message);
  }
  b->budget.max = (size_t)buffered;
  /* libcurl reads none of these itself (the curl tool does): trust what
   * the administrator points at, on top of nothing else. */
  static const char *const ca_vars[] = {"ENGINE_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"};
  for (size_t i = 0; i < sizeof ca_vars / sizeof *ca_vars && !b->ca_file; i++) {
    const char *v = getenv(ca_vars[i]);
    if (v && *v) b->ca_file = v;
  }
  const char *dir = getenv("SSL_CERT_DIR");
  if (dir && *dir) b->ca_dir = dir;
  return b->pool;
}

/* The request's header lines (the spec's list), then "Expect:": never
 * wait for "100 Continue", many servers do not send it. */
static bool add_headers(lua_State *L, http_op *h, int lines) {
  size_t n = lua_rawlen(L, lines);
  for (size_t i = 1; i <= n + 1; i++) {
    const char *line = "Expect:";
    if (i <= n) {
      lua_rawgeti(L, lines, (lua_Integer)i);
      line = lua_tostring(L, -1); /* the list keeps it alive */
      lua_pop(L, 1);
    }
    struct curl_slist *next = curl_slist_append(h->req_headers, line);
    if (!next) return false;
    h->req_headers = next;
  }
  return true;
}

/* An op owning a copy of everything spec asks for; raises without memory. */
static http_op *op_new(lua_State *L, http_binding *b, const request_spec *spec) {
  http_op *h = calloc(1, sizeof *h);
  if (!h) luaL_error(L, "out of memory");
  h->base.cancel = http_cancel;
  h->eng = b->eng;
  h->pool = b->pool;
  h->budget = &b->budget;
  snprintf(h->method, sizeof h->method, "%s", spec->method);
  h->timeout = spec->timeout;
  h->max_bytes = spec->max_bytes;
  h->follow = spec->follow;
  h->compressed = spec->compressed;
  h->nobody = strcmp(spec->method, "HEAD") == 0;
  h->url = strdup(spec->url);
  if (spec->body && (h->post = malloc(spec->body_len + 1))) {
    memcpy(h->post, spec->body, spec->body_len);
    h->post[spec->body_len] = '\0';
  }
  h->post_len = spec->body_len;
  if (!h->url || (spec->body && !h->post) || !add_headers(L, h, spec->header_lines)) {
    op_free(h);
    luaL_error(L, "out of memory");
  }
  if (log_enabled(h->eng, LOG_DEBUG)) h->asked_ns = uv_hrtime();
  return h;
}

/* request{method=, url=, headers=, body=, timeout=, follow_redirects=,
 * compressed=, max_bytes=} -> {status=, headers=, body=} */
static int http_request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  request_spec spec;
  request_spec_read(L, &spec);
  task *t = task_require_waitable(L, "http.request");
  http_binding *b = lua_touserdata(L, lua_upvalueindex(1));
  http_pool *pool = pool_get(L, b);
  http_op *h = op_new(L, b, &spec);
  if (!pool_submit(pool, &h->xfer, h->url)) {
    char url[512];
    url_redact(h->url, url, sizeof url);
    op_release(h);
    return raise_unsent(L, url, "http.request: cannot start the transfer");
  }
  lua_settop(L, 1);
  return task_wait_op(L, t, &h->base);
}

/* At the engine's shutdown, once every task is finished or abandoned: no
 * transfer is left. */
static void http_shutdown(void *data) {
  http_binding *b = data;
  if (b->pool) pool_close(b->pool);
  free(b);
}

void http_register(lua_State *L, engine *e) {
  http_binding *b = calloc(1, sizeof *b);
  if (!b) luaL_error(L, "out of memory");
  b->eng = e;
  b->cleanup = (engine_cleanup){.run = http_shutdown, .data = b};
  engine_at_shutdown(e, &b->cleanup);
  lua_pushlightuserdata(L, b);
  lua_pushcclosure(L, http_request, 1);
  lua_setfield(L, -2, "request");
}
