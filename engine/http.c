/* http.c: non-blocking HTTP for tasks. libcurl's multi interface driven by
 * the libuv loop (one uv_poll_t per socket, one uv_timer_t for curl's
 * timeout), and the http.request binding that suspends a task on a
 * transfer. Requests to one host run at most a few at a time (the rest
 * wait in a FIFO per host, O(1) per event); a request takes an easy
 * handle from a small pool only when its transfer starts, so ten thousand
 * waiting requests hold no curl state; connections are kept alive and
 * reused through the multi's cache. */
#include <ctype.h>
#include <errno.h>
#include <sys/resource.h>
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bindings.h"
#include "curl_api.h"
#include "errors.h"
#include "task.h"
#include "text.h"

#define EASY_POOL_MAX 64            /* idle easy handles kept for reuse */
#define DEFAULT_HOST_ACTIVE 64      /* transfers at once per host */
#define HOST_KEY_MAX 256
#define DEFAULT_TIMEOUT 30.0        /* seconds per request */
#define MAX_TIMEOUT 86400.0
#define MIN_TIMEOUT 0.001           /* curl counts milliseconds: 0 would mean none */
#define CONNECT_TIMEOUT_MAX 10.0    /* seconds, within the request's */
#define MAX_REDIRECTS 10L
#define DEFAULT_MAX_BYTES (64.0 * 1024 * 1024)   /* one answer's body */
#define MAX_MAX_BYTES (1024.0 * 1024 * 1024)
#define DEFAULT_BUFFERED (256.0 * 1024 * 1024)   /* all answers at once */
#define MAX_HEADER_BYTES (1024u * 1024u)
#define BUFFER_FIRST_CAP 4096
#define HEADER_NAME_MAX 256
#define METHOD_MAX 16
#define MESSAGE_URL_MAX 512
#define FD_RESERVE 32      /* descriptors kept for the loop, logs, journal, children */
#define MIN_ACTIVE 4

/* A host (scheme://host:port): its transfers and the requests waiting. */
typedef struct host_slot {
  char key[HOST_KEY_MAX];
  long active;
  struct http_op *queue_head, *queue_tail; /* waiting for a transfer slot */
  struct host_slot *next;
} host_slot;

struct http_glue {
  engine *eng;
  CURLM *multi;
  uv_timer_t timer;
  CURL *pool[EASY_POOL_MAX];
  int pooled;
  long active;
  size_t buffered;     /* response bytes held by transfers in flight */
  long max_active;     /* transfers at once: what the descriptor limit allows */
  long host_active;    /* transfers at once per host (ENGINE_HTTP_MAX_HOST_CONNECTIONS) */
  host_slot *hosts;
  const char *ca_file; /* ENGINE_CA_BUNDLE, CURL_CA_BUNDLE or SSL_CERT_FILE */
  const char *ca_dir;  /* SSL_CERT_DIR */
  size_t max_buffered; /* ENGINE_HTTP_MAX_BUFFERED */
};

typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
  http_glue *glue;
} sock_ctx;

typedef struct {
  char *data;
  size_t len, cap;
} buffer;

typedef struct http_op {
  op base;
  http_glue *glue;
  host_slot *host;
  CURL *easy;                   /* from the pool once its transfer starts */
  bool queued;                  /* in its host's queue, not yet in curl */
  bool refused;                 /* curl would not take it: never in the multi */
  struct http_op *q_prev, *q_next;
  struct curl_slist *req_headers;
  char *full_url;               /* what to ask, kept until the transfer starts */
  char *post;                   /* the body to send, or NULL */
  size_t post_len;
  bool follow, compressed, nobody;
  buffer body, headers;
  bool too_large;       /* the answer passed max_bytes */
  bool over_budget;     /* all answers together passed max_buffered */
  size_t max_bytes;
  bool headers_done; /* the blank line after the last response's headers */
  double timeout;
  char method[METHOD_MAX];
  char *errbuf;      /* curl's message, while the transfer runs */
} http_op;

static bool buffer_append(buffer *b, const char *data, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : BUFFER_FIRST_CAP;
    while (cap < b->len + n + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) return false;
    b->data = grown;
    b->cap = cap;
  }
  memcpy(b->data + b->len, data, n);
  b->len += n;
  b->data[b->len] = '\0';
  return true;
}

static void update_timer_ref(http_glue *g) {
  if (g->active)
    uv_ref((uv_handle_t *)&g->timer);
  else
    uv_unref((uv_handle_t *)&g->timer);
}

/* The host's queue: requests beyond its cap (or beyond max_active) wait
 * here, first in first out, and start as transfers end. Adding and
 * removing are O(1). */
static void queue_push(host_slot *q, http_op *h) {
  h->queued = true;
  h->q_next = NULL;
  h->q_prev = q->queue_tail;
  if (q->queue_tail)
    q->queue_tail->q_next = h;
  else
    q->queue_head = h;
  q->queue_tail = h;
}

static void queue_remove(host_slot *q, http_op *h) {
  if (h->q_prev)
    h->q_prev->q_next = h->q_next;
  else
    q->queue_head = h->q_next;
  if (h->q_next)
    h->q_next->q_prev = h->q_prev;
  else
    q->queue_tail = h->q_prev;
  h->queued = false;
}

/* The slot of the URL's scheme://host:port (few hosts: a list). */
static host_slot *host_of(http_glue *g, const char *url) {
  url_parts u = url_split(url);
  char key[HOST_KEY_MAX];
  snprintf(key, sizeof key, "%.*s%.*s", (int)(u.authority - url), url, (int)u.hostport_len,
           u.hostport);
  for (host_slot *q = g->hosts; q; q = q->next)
    if (strcmp(q->key, key) == 0) return q;
  host_slot *q = calloc(1, sizeof *q);
  if (!q) return NULL;
  memcpy(q->key, key, sizeof key);
  q->next = g->hosts;
  g->hosts = q;
  return q;
}

static void complete(http_op *h, CURLcode res);

static CURL *easy_get(http_glue *g) {
  return g->pooled ? g->pool[--g->pooled] : curl_easy_init();
}

static size_t on_body(char *data, size_t size, size_t n, void *userp);
static size_t on_header(char *data, size_t size, size_t n, void *userp);

/* An easy handle set up for h's request. */
static CURL *prepare(http_op *h) {
  http_glue *g = h->glue;
  if (!h->errbuf && !(h->errbuf = calloc(1, CURL_ERROR_SIZE))) return NULL;
  CURL *easy = easy_get(g);
  if (!easy) return NULL;
  curl_easy_setopt(easy, CURLOPT_URL, h->full_url);
  curl_easy_setopt(easy, CURLOPT_PRIVATE, h);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, h->follow ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)(h->timeout * 1000));
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                   (long)(fmin(h->timeout, CONNECT_TIMEOUT_MAX) * 1000));
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "engine/" ENGINE_VERSION);
  if (g->ca_file) curl_easy_setopt(easy, CURLOPT_CAINFO, g->ca_file);
  if (g->ca_dir) curl_easy_setopt(easy, CURLOPT_CAPATH, g->ca_dir);
  /* Compressed answers only when asked (Census answers are): the body cap
   * counts bytes after decompression either way. */
  if (h->compressed) curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, h);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, h);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, h->req_headers);
  const char *method = h->method;
  if (h->nobody) {
    curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
  } else if (h->post || strcmp(method, "POST") == 0) {
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->post_len);
    /* the op owns the bytes until the transfer ends */
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
  return easy;
}

/* Hands the transfer to curl; false when curl refused it. */
static bool start(http_op *h) {
  http_glue *g = h->glue;
  if (!(h->easy = prepare(h))) return false;
  if (curl_multi_add_handle(g->multi, h->easy) != CURLM_OK) return false;
  g->active++;
  h->host->active++;
  update_timer_ref(g);
  return true;
}

static bool may_start(http_glue *g, host_slot *q) {
  return g->active < g->max_active && q->active < g->host_active;
}

/* From the loop (a transfer of host q ended): its next waiting requests
 * start; one curl refuses completes with an error for its task. */
static void start_queued(http_glue *g, host_slot *q) {
  while (q->queue_head && may_start(g, q)) {
    http_op *next = q->queue_head;
    queue_remove(q, next);
    if (!start(next)) {
      next->refused = true;
      complete(next, CURLE_FAILED_INIT);
    }
  }
}

static void release(http_op *h) {
  http_glue *g = h->glue;
  host_slot *q = h->host;
  g->buffered -= h->body.len;
  bool held_slot = h->easy && !h->queued && !h->refused;
  if (h->queued) queue_remove(q, h);
  if (h->easy) {
    if (held_slot) {
      curl_multi_remove_handle(g->multi, h->easy);
      g->active--;
      q->active--;
      update_timer_ref(g);
    }
    if (g->pooled < EASY_POOL_MAX) {
      curl_easy_reset(h->easy);
      g->pool[g->pooled++] = h->easy;
    } else {
      curl_easy_cleanup(h->easy);
    }
  }
  curl_slist_free_all(h->req_headers);
  free(h->full_url);
  free(h->post);
  free(h->errbuf);
  free(h->body.data);
  free(h->headers.data);
  free(h);
  if (held_slot) start_queued(g, q); /* h is freed: only the flags are read */
}

static void http_cancel(op *o) {
  release((http_op *)o);
}

static void push_headers(lua_State *T, const buffer *b) {
  lua_newtable(T);
  if (!b->data) return;
  const char *p = b->data, *end = b->data + b->len;
  header_line line;
  char name[HEADER_NAME_MAX];
  while (header_next(&p, end, &line)) {
    if (line.name_len >= sizeof name) continue;
    for (size_t i = 0; i < line.name_len; i++)
      name[i] = (char)tolower((unsigned char)line.name[i]);
    name[line.name_len] = '\0';
    if (lua_getfield(T, -1, name) == LUA_TSTRING) { /* repeated: join */
      lua_pushliteral(T, ", ");
      lua_pushlstring(T, line.value, line.value_len);
      lua_concat(T, 3);
    } else {
      lua_pop(T, 1);
      lua_pushlstring(T, line.value, line.value_len);
    }
    lua_setfield(T, -2, name);
  }
}

static long os_errno(http_op *h) {
  long e = 0;
  if (h->easy) curl_easy_getinfo(h->easy, CURLINFO_OS_ERRNO, &e);
  return e;
}

/* The host part of a URL (no scheme, credentials, port or path). */
static void url_host(const char *url, char *out, size_t outsz) {
  url_parts u = url_split(url);
  const char *p = u.hostport;
  size_t n = strcspn(p, p[0] == '[' ? "]" : ":");
  if (n > u.hostport_len) n = u.hostport_len;
  if (p[0] == '[' && n < u.hostport_len) n++; /* keep the closing ']' */
  snprintf(out, outsz, "%.*s", (int)n, p);
}

static void complete(http_op *h, CURLcode res) {
  task *t = h->base.owner;
  lua_State *T = task_wake_begin(t);
  char url[MESSAGE_URL_MAX] = ""; /* redacted, for messages: only a failure has one */
  if (res != CURLE_OK || !h->headers_done) url_redact(h->full_url, url, sizeof url);
  const char *errbuf = h->errbuf ? h->errbuf : "";
  if (res == CURLE_OK && !h->headers_done) {
    /* curl reports a reply that stopped inside its headers as complete */
    lua_pushboolean(T, 0);
    error_push(T, "network", "%s %s: the answer ended inside its headers", h->method, url);
    lua_pushstring(T, url);
    lua_setfield(T, -2, "url");
  } else if (res == CURLE_OK) {
    long status = 0;
    curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &status);
    lua_pushboolean(T, 1);
    lua_createtable(T, 0, 3);
    lua_pushinteger(T, status);
    lua_setfield(T, -2, "status");
    push_headers(T, &h->headers);
    lua_setfield(T, -2, "headers");
    lua_pushlstring(T, h->body.data ? h->body.data : "", h->body.len);
    lua_setfield(T, -2, "body");
  } else {
    lua_pushboolean(T, 0);
    if (res == CURLE_OPERATION_TIMEDOUT)
      error_push(T, "timeout", "%s %s: no complete response within %f s",
                 h->method, url, h->timeout);
    else if (h->too_large)
      error_push(T, "network", "%s %s: the answer is larger than %d bytes (max_bytes)",
                 h->method, url, (int)h->max_bytes);
    else if (res == CURLE_PEER_FAILED_VERIFICATION) {
      char host[256];
      url_host(url, host, sizeof host);
      error_push(T, "network", "%s %s: the TLS certificate of %s is not trusted (%s); if the "
                 "server is yours, point ENGINE_CA_BUNDLE at the certificate of its CA",
                 h->method, url, host, errbuf[0] ? errbuf : "unknown issuer");
    } else if (h->over_budget)
      error_push(T, "network", "%s %s: answers in flight hold more than %d bytes "
                 "(ENGINE_HTTP_MAX_BUFFERED)", h->method, url, (int)h->glue->max_buffered);
    else if (os_errno(h) == EMFILE || os_errno(h) == ENFILE)
      error_push(T, "network", "%s %s: out of file descriptors (%s): raise ulimit -n",
                 h->method, url, os_errno(h) == EMFILE ? "EMFILE" : "ENFILE");
    else
      error_push(T, "network", "%s %s: %s", h->method, url,
                 errbuf[0] ? errbuf : curl_easy_strerror(res));
    lua_pushstring(T, url);
    lua_setfield(T, -2, "url");
  }
  release(h);
  task_wake(t, 2);
}

static void check_multi_info(http_glue *g) {
  CURLMsg *msg;
  int pending;
  while ((msg = curl_multi_info_read(g->multi, &pending))) {
    if (msg->msg != CURLMSG_DONE) continue;
    http_op *h = NULL;
    curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
    complete(h, msg->data.result);
  }
}

static void on_poll(uv_poll_t *handle, int status, int events) {
  sock_ctx *c = handle->data;
  http_glue *g = c->glue;
  int flags = 0;
  if (status < 0) {
    flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  int running;
  curl_multi_socket_action(g->multi, c->fd, flags, &running);
  check_multi_info(g);
}

static void sock_closed(uv_handle_t *h) {
  free(h->data);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  (void)easy;
  http_glue *g = userp;
  sock_ctx *c = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (c) {
      uv_poll_stop(&c->poll);
      uv_close((uv_handle_t *)&c->poll, sock_closed);
      curl_multi_assign(g->multi, fd, NULL);
    }
    return 0;
  }
  if (!c) {
    c = malloc(sizeof *c);
    if (!c) return -1;
    c->fd = fd;
    c->glue = g;
    if (uv_poll_init_socket(&g->eng->loop, &c->poll, fd)) {
      free(c);
      return -1;
    }
    c->poll.data = c;
    curl_multi_assign(g->multi, fd, c);
  }
  int events = 0;
  if (what & CURL_POLL_IN) events |= UV_READABLE;
  if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
  uv_poll_start(&c->poll, events, on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *timer) {
  http_glue *g = timer->data;
  int running;
  curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_multi_info(g);
}

/* curl asks for a timeout; 0 means "soon": the timer fires on the next
 * loop turn, never from inside this callback. */
static int on_timer_set(CURLM *multi, long timeout_ms, void *userp) {
  (void)multi;
  http_glue *g = userp;
  if (timeout_ms < 0)
    uv_timer_stop(&g->timer);
  else
    uv_timer_start(&g->timer, on_timeout, (uint64_t)timeout_ms, 0);
  return 0;
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

/* Created on the first request: curl_global_init loads OpenSSL's
 * configuration, which flows that make no HTTP request need not pay for. */
static http_glue *glue_get(lua_State *L, engine *e) {
  if (e->http) return e->http;
  static const char *const names[] = {"ENGINE_HTTP_MAX_HOST_CONNECTIONS",
                                      "ENGINE_HTTP_MAX_BUFFERED"};
  long cap = env_count(names[0], DEFAULT_HOST_ACTIVE);
  long buffered = env_count(names[1], (long)DEFAULT_BUFFERED);
  for (int i = 0; i < 2; i++)
    if ((i == 0 ? cap : buffered) < 0)
      luaL_error(L, "%s must be a whole number >= 1, got \"%s\"", names[i], getenv(names[i]));
  char why[256];
  if (!curl_api_load(why, sizeof why)) luaL_error(L, "http.request: %s", why);
  if (curl_global_init(CURL_GLOBAL_DEFAULT)) return NULL;
  http_glue *g = calloc(1, sizeof *g);
  if (!g || !(g->multi = curl_multi_init())) {
    free(g);
    curl_global_cleanup();
    return NULL;
  }
  g->eng = e;
  g->max_buffered = (size_t)buffered;
  /* Each transfer holds a socket and curl may keep as many idle ones for
   * reuse: beyond what the descriptor limit allows, requests queue. */
  struct rlimit nofile;
  long fds = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                 ? (long)nofile.rlim_cur : 1L << 20;
  g->max_active = (fds - FD_RESERVE) / 2;
  if (g->max_active < MIN_ACTIVE) g->max_active = MIN_ACTIVE;
  g->host_active = cap;
  /* idle connections kept for reuse: a few hosts' worth */
  curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, g->max_active < 4 * cap ? g->max_active : 4 * cap);
  /* libcurl reads none of these itself (the curl tool does): trust what
   * the administrator points at, on top of nothing else. */
  static const char *const ca_vars[] = {"ENGINE_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"};
  for (size_t i = 0; i < sizeof ca_vars / sizeof *ca_vars && !g->ca_file; i++) {
    const char *v = getenv(ca_vars[i]);
    if (v && *v) g->ca_file = v;
  }
  const char *dir = getenv("SSL_CERT_DIR");
  if (dir && *dir) g->ca_dir = dir;
  curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
  curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
  curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
  uv_timer_init(&e->loop, &g->timer);
  g->timer.data = g;
  update_timer_ref(g);
  e->http = g;
  return g;
}

static void glue_closed(uv_handle_t *h) {
  free(h->data);
}

/* Runs after every task is finished or abandoned: no transfer is left. */
void http_shutdown(engine *e) {
  http_glue *g = e->http;
  if (!g) return;
  curl_multi_cleanup(g->multi); /* closes cached connections' sockets */
  for (int i = 0; i < g->pooled; i++) curl_easy_cleanup(g->pool[i]);
  while (g->hosts) {
    host_slot *next = g->hosts->next;
    free(g->hosts);
    g->hosts = next;
  }
  uv_close((uv_handle_t *)&g->timer, glue_closed);
  e->http = NULL;
  curl_global_cleanup();
}

/* Bytes arrive decompressed, so the caps hold for compressed answers too
 * (a small gzip bomb stops at max_bytes). */
static size_t on_body(char *data, size_t size, size_t n, void *userp) {
  http_op *h = userp;
  http_glue *g = h->glue;
  size_t len = size * n;
  if (h->body.len + len > h->max_bytes) {
    h->too_large = true;
    return 0;
  }
  if (g->buffered + len > g->max_buffered) {
    h->over_budget = true;
    return 0;
  }
  if (!buffer_append(&h->body, data, len)) return 0;
  g->buffered += len;
  return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp) {
  http_op *h = userp;
  size_t len = size * n;
  if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    h->headers.len = 0;
    h->headers_done = false;
  }
  if ((len == 2 && data[0] == '\r' && data[1] == '\n') || (len == 1 && data[0] == '\n'))
    h->headers_done = true;
  if (h->headers.len + len > MAX_HEADER_BYTES) return 0;
  return buffer_append(&h->headers, data, len) ? len : 0;
}

static const char *const request_fields[] = {
    "method", "url", "headers", "body", "timeout", "follow_redirects", "compressed",
    "max_bytes", NULL};

/* What a request asks for, checked before anything is allocated. */
typedef struct {
  const char *url, *method, *body; /* kept alive by the options table */
  size_t body_len;
  double timeout;
  bool follow;
  bool compressed; /* ask for a compressed answer (Accept-Encoding) */
  size_t max_bytes; /* the largest answer body kept */
} request_spec;

/* Reads the options table at 1 into spec; raises on misuse. Leaves the
 * values it read on the stack above 1. */
static void parse_request(lua_State *L, request_spec *spec) {
  options_check(L, 1, "http.request", request_fields, false);
  lua_getfield(L, 1, "url");
  size_t url_len;
  spec->url = lua_tolstring(L, -1, &url_len);
  if (lua_type(L, -1) != LUA_TSTRING || (strncmp(spec->url, "http://", 7) != 0 &&
                                         strncmp(spec->url, "https://", 8) != 0))
    luaL_error(L, "http.request: url must be a string starting with "
                  "http:// or https://");
  if (strlen(spec->url) != url_len)
    luaL_error(L, "http.request: url contains a NUL byte");
  if (lua_getfield(L, 1, "method") != LUA_TNIL && lua_type(L, -1) != LUA_TSTRING)
    luaL_error(L, "http.request: method must be a string such as \"GET\", got a %s",
               luaL_typename(L, -1));
  spec->method = luaL_optstring(L, -1, "GET");
  size_t mlen = strlen(spec->method);
  if (mlen == 0 || mlen >= METHOD_MAX ||
      strspn(spec->method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != mlen)
    luaL_error(L, "http.request: method must be an upper-case HTTP method "
                  "such as GET or POST");
  lua_getfield(L, 1, "body");
  spec->body = NULL;
  spec->body_len = 0;
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "http.request: body must be a string (use json.encode "
                    "for tables)");
    spec->body = lua_tolstring(L, -1, &spec->body_len);
  }
  lua_getfield(L, 1, "timeout");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "http.request: timeout must be a number of seconds, got a %s",
               luaL_typename(L, -1));
  spec->timeout = luaL_optnumber(L, -1, DEFAULT_TIMEOUT);
  if (!isfinite(spec->timeout) || spec->timeout < MIN_TIMEOUT || spec->timeout > MAX_TIMEOUT)
    luaL_error(L, "http.request: timeout must be seconds from 0.001 to 86400");
  lua_getfield(L, 1, "follow_redirects");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "http.request: follow_redirects must be true or false, got a %s",
               luaL_typename(L, -1));
  spec->follow = lua_toboolean(L, -1);
  lua_getfield(L, 1, "compressed");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "http.request: compressed must be true or false, got a %s",
               luaL_typename(L, -1));
  spec->compressed = lua_toboolean(L, -1);
  lua_getfield(L, 1, "max_bytes");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TNUMBER)
    luaL_error(L, "http.request: max_bytes must be a number of bytes, got a %s",
               luaL_typename(L, -1));
  double max = luaL_optnumber(L, -1, DEFAULT_MAX_BYTES);
  if (!(max >= 1 && max <= MAX_MAX_BYTES))
    luaL_error(L, "http.request: max_bytes must be from 1 to %d", (int)MAX_MAX_BYTES);
  spec->max_bytes = (size_t)max;
}

static bool has_crlf(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

static void set_headers(lua_State *L, http_op *h) {
  if (lua_getfield(L, 1, "headers") != LUA_TNIL) {
    luaL_argexpected(L, lua_istable(L, -1), 1, "headers as a table of strings");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1))
        luaL_error(L, "http.request: headers must map names to strings");
      size_t name_len, value_len;
      const char *name = lua_tolstring(L, -2, &name_len);
      lua_pushvalue(L, -1); /* a number value is written as text */
      const char *value = lua_tolstring(L, -1, &value_len);
      lua_pop(L, 1);
      if (strlen(name) != name_len || strlen(value) != value_len)
        luaL_error(L, "http.request: header '%s' contains a NUL byte",
                   strlen(name) != name_len ? "?" : name);
      if (has_crlf(name) || has_crlf(value) || strchr(name, ':'))
        luaL_error(L, "http.request: header '%s' contains a line break or "
                      "colon", has_crlf(name) ? "?" : name);
      lua_pushfstring(L, "%s: %s", name, value);
      struct curl_slist *next = curl_slist_append(h->req_headers, lua_tostring(L, -1));
      if (!next) luaL_error(L, "out of memory");
      h->req_headers = next;
      lua_pop(L, 2);
    }
  }
  lua_pop(L, 1);
  /* Never wait for "100 Continue": many servers do not send it. */
  struct curl_slist *next = curl_slist_append(h->req_headers, "Expect:");
  if (!next) luaL_error(L, "out of memory");
  h->req_headers = next;
}

static int request_gc_guard(lua_State *L) {
  http_op **slot = lua_touserdata(L, 1);
  if (*slot) release(*slot);
  *slot = NULL;
  return 0;
}

/* request{method=, url=, headers=, body=, timeout=, follow_redirects=}
 * -> {status=, headers=, body=} */
static int http_request(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  request_spec spec;
  parse_request(L, &spec);
  task *t = task_require_waitable(L, "http.request");
  engine *e = task_engine(t);
  if (!glue_get(L, e)) return luaL_error(L, "http.request: cannot initialise libcurl");
  const char *url = spec.url, *method = spec.method, *body = spec.body;
  size_t body_len = spec.body_len;
  double timeout = spec.timeout;

  /* A guard userdata owns the op until the transfer is added, so a Lua
   * error while building it frees everything. */
  http_op **slot = lua_newuserdatauv(L, sizeof *slot, 0);
  *slot = NULL;
  if (luaL_newmetatable(L, "engine.http_guard")) {
    lua_pushcfunction(L, request_gc_guard);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  http_op *h = calloc(1, sizeof *h);
  if (!h) return luaL_error(L, "out of memory");
  *slot = h;
  h->glue = e->http;
  h->base.cancel = http_cancel;
  h->timeout = timeout;
  h->max_bytes = spec.max_bytes;
  snprintf(h->method, sizeof h->method, "%s", method);
  set_headers(L, h);

  h->full_url = strdup(url);
  if (body) {
    h->post = malloc(body_len + 1);
    if (h->post) {
      memcpy(h->post, body, body_len);
      h->post[body_len] = '\0';
    }
  }
  h->post_len = body_len;
  h->follow = spec.follow;
  h->compressed = spec.compressed;
  h->nobody = strcmp(method, "HEAD") == 0;
  h->host = host_of(e->http, url);
  if (!h->full_url || (body && !h->post) || !h->host) return luaL_error(L, "out of memory");
  if (!may_start(e->http, h->host))
    queue_push(h->host, h); /* its turn comes as the host's transfers end */
  else if (!start(h)) {
    h->refused = true;
    return luaL_error(L, "http.request: cannot start the transfer"); /* the guard frees h */
  }
  *slot = NULL; /* the op now belongs to the task */
  lua_settop(L, 1);
  return task_wait_op(L, t, &h->base);
}

void http_register(lua_State *L) {
  lua_pushcfunction(L, http_request);
  lua_setfield(L, -2, "request");
}
