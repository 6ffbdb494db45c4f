/* http_answer.c: an http.request's answer. curl's write callbacks fill it
 * within its caps (one answer's max_bytes, the budget of all answers in
 * flight, the headers' size); when the transfer ends it becomes what the
 * task gets: {status, headers, body}, or an error object whose kind says
 * what failed ("network", "timeout") and whose `sent = false` says the
 * request provably never left this machine. With -v each ends in one
 * debug line. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "errors.h"
#include "http_answer.h"
#include "log.h"
#include "text.h"

#define MAX_HEADER_BYTES (1024u * 1024u)
#define BUFFER_FIRST_CAP 4096
#define MESSAGE_URL_MAX 512

static bool buffer_append(http_buffer *b, const char *data, size_t n) {
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

/* Bytes arrive decompressed, so the caps hold for compressed answers too
 * (a small gzip bomb stops at max_bytes). */
static size_t on_body(char *data, size_t size, size_t n, void *userp) {
  http_op *h = userp;
  size_t len = size * n;
  if (h->body.len + len > h->max_bytes) {
    h->too_large = true;
    return 0;
  }
  if (h->budget->held + len > h->budget->max) {
    h->over_budget = true;
    return 0;
  }
  if (!buffer_append(&h->body, data, len)) return 0;
  h->budget->held += len;
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

void answer_attach(http_op *h, CURL *easy) {
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, h);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, h);
}

/* Header names lower-cased; a repeated header's values joined by ", ". */
static void push_headers(lua_State *T, const http_buffer *b) {
  lua_newtable(T);
  if (!b->data) return;
  const char *p = b->data, *end = b->data + b->len;
  header_line line;
  while (header_next(&p, end, &line)) {
    luaL_Buffer name;
    char *lower = luaL_buffinitsize(T, &name, line.name_len);
    for (size_t i = 0; i < line.name_len; i++)
      lower[i] = (char)tolower((unsigned char)line.name[i]);
    luaL_pushresultsize(&name, line.name_len);
    lua_pushvalue(T, -1);
    if (lua_rawget(T, -3) == LUA_TSTRING) { /* repeated: join */
      lua_pushliteral(T, ", ");
      lua_pushlstring(T, line.value, line.value_len);
      lua_concat(T, 3);
    } else {
      lua_pop(T, 1);
      lua_pushlstring(T, line.value, line.value_len);
    }
    lua_rawset(T, -3);
  }
}

static void push_response(lua_State *T, http_op *h, long status) {
  lua_createtable(T, 0, 3);
  lua_pushinteger(T, status);
  lua_setfield(T, -2, "status");
  push_headers(T, &h->headers);
  lua_setfield(T, -2, "headers");
  lua_pushlstring(T, h->body.data ? h->body.data : "", h->body.len);
  lua_setfield(T, -2, "body");
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

static long os_errno(const http_op *h) {
  long e = 0;
  if (h->xfer.easy) curl_easy_getinfo(h->xfer.easy, CURLINFO_OS_ERRNO, &e);
  return e;
}

/* Whether curl gave up before the request was written: no name, no
 * connection, or TLS that failed before the request went out. */
static bool never_sent(CURLcode result) {
  return result == CURLE_COULDNT_RESOLVE_HOST || result == CURLE_COULDNT_RESOLVE_PROXY ||
         result == CURLE_COULDNT_CONNECT || result == CURLE_SSL_CONNECT_ERROR ||
         result == CURLE_PEER_FAILED_VERIFICATION;
}

/* Pushes what went wrong, without the request's "METHOD URL: ", and
 * returns the error kind. */
static const char *push_failure(lua_State *T, http_op *h, CURLcode result, const char *url) {
  const char *errbuf = h->errbuf ? h->errbuf : "";
  if (result == CURLE_OK) /* curl reports a reply that stopped inside its headers as complete */
    lua_pushliteral(T, "the answer ended inside its headers");
  else if (result == CURLE_OPERATION_TIMEDOUT)
    lua_pushfstring(T, "no complete response within %f s", h->timeout);
  else if (h->too_large)
    lua_pushfstring(T, "the answer is larger than %d bytes (max_bytes)", (int)h->max_bytes);
  else if (result == CURLE_PEER_FAILED_VERIFICATION) {
    char host[256];
    url_host(url, host, sizeof host);
    lua_pushfstring(T, "the TLS certificate of %s is not trusted (%s); if the server is yours, "
                       "point ENGINE_CA_BUNDLE at the certificate of its CA",
                    host, errbuf[0] ? errbuf : "unknown issuer");
  } else if (h->over_budget)
    lua_pushfstring(T, "answers in flight hold more than %d bytes (ENGINE_HTTP_MAX_BUFFERED)",
                    (int)h->budget->max);
  else if (os_errno(h) == EMFILE || os_errno(h) == ENFILE)
    lua_pushfstring(T, "out of file descriptors (%s): raise ulimit -n",
                    os_errno(h) == EMFILE ? "EMFILE" : "ENFILE");
  else
    lua_pushstring(T, errbuf[0] ? errbuf : curl_easy_strerror(result));
  return result == CURLE_OPERATION_TIMEDOUT ? "timeout" : "network";
}

int answer_push(lua_State *T, http_op *h, CURLcode result) {
  bool debug = log_enabled(h->eng, LOG_DEBUG);
  bool failed = result != CURLE_OK || !h->headers_done;
  char url[MESSAGE_URL_MAX] = ""; /* redacted, for messages: a success needs none */
  if (failed || debug) url_redact(h->url, url, sizeof url);
  long status = 0;
  if (!failed) {
    curl_easy_getinfo(h->xfer.easy, CURLINFO_RESPONSE_CODE, &status);
    lua_pushboolean(T, 1);
    push_response(T, h, status);
  } else {
    lua_pushboolean(T, 0);
    const char *kind = push_failure(T, h, result, url);
    error_push(T, kind, "%s %s: %s", h->method, url, lua_tostring(T, -1));
    lua_pushstring(T, url);
    lua_setfield(T, -2, "url");
    /* a queued request curl would not start never left either */
    if (strcmp(kind, "network") == 0 && (never_sent(result) || !h->xfer.started)) {
      lua_pushboolean(T, 0);
      lua_setfield(T, -2, "sent");
    }
  }
  if (debug) {
    unsigned long long ms = (uv_hrtime() - h->asked_ns) / 1000000u;
    if (failed)
      log_msg(h->eng, LOG_DEBUG, "http: %s %s: %s in %llu ms", h->method, url,
              lua_tostring(T, -2), ms);
    else
      log_msg(h->eng, LOG_DEBUG, "http: %s %s: %ld in %llu ms", h->method, url, status, ms);
  }
  if (failed) lua_remove(T, -2); /* the failure's text, now in the message */
  return 2;
}

void answer_free(http_op *h) {
  h->budget->held -= h->body.len;
  free(h->errbuf);
  free(h->body.data);
  free(h->headers.data);
  h->errbuf = h->body.data = h->headers.data = NULL;
  h->body.len = h->headers.len = 0;
}
