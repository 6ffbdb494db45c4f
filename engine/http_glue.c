/* http_glue.c: libcurl's multi interface on the libuv loop, the
 * curl_multi_socket_action pattern: one uv_poll_t per socket curl asks to
 * watch (created lazily, freed in its close callback), one uv_timer_t for
 * curl's timeout, and every finished transfer read after each socket
 * action and handed to the owner's callback. */
#include <stdlib.h>

#include "engine.h"
#include "http_glue.h"

struct http_glue {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  long handles; /* easy handles in the multi: the timer keeps the loop alive while any is */
  glue_done_fn done;
  void *done_data;
};

typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
  http_glue *glue;
} sock_ctx;

static void update_timer_ref(http_glue *g) {
  if (g->handles)
    uv_ref((uv_handle_t *)&g->timer);
  else
    uv_unref((uv_handle_t *)&g->timer);
}

/* After every socket action, not only while transfers run. */
static void check_multi_info(http_glue *g) {
  CURLMsg *msg;
  int pending;
  while ((msg = curl_multi_info_read(g->multi, &pending))) {
    if (msg->msg == CURLMSG_DONE) g->done(g->done_data, msg->easy_handle, msg->data.result);
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

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp) {
  (void)easy;
  http_glue *g = userp;
  sock_ctx *c = socketp;
  if (what == CURL_POLL_REMOVE) {
    if (c) {
      uv_poll_stop(&c->poll);
      uv_close((uv_handle_t *)&c->poll, engine_free_handle_data);
      curl_multi_assign(g->multi, fd, NULL);
    }
    return 0;
  }
  if (!c) {
    c = malloc(sizeof *c);
    if (!c) return -1;
    c->fd = fd;
    c->glue = g;
    if (uv_poll_init_socket(g->loop, &c->poll, fd)) {
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

/* curl_global_init loads OpenSSL's configuration, which flows that make no
 * HTTP request need not pay for: this runs on the first request. */
http_glue *glue_open(uv_loop_t *loop, glue_done_fn done, void *data, char *why, size_t whysz) {
  if (!curl_api_load(why, whysz)) return NULL;
  if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
    snprintf(why, whysz, "cannot initialise libcurl");
    return NULL;
  }
  http_glue *g = calloc(1, sizeof *g);
  if (!g || !(g->multi = curl_multi_init())) {
    free(g);
    curl_global_cleanup();
    snprintf(why, whysz, "cannot initialise libcurl");
    return NULL;
  }
  g->loop = loop;
  g->done = done;
  g->done_data = data;
  curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
  curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, on_timer_set);
  curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
  uv_timer_init(loop, &g->timer);
  g->timer.data = g;
  update_timer_ref(g);
  return g;
}

void glue_keep_connections(http_glue *g, long idle) {
  curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, idle);
}

bool glue_add(http_glue *g, CURL *easy) {
  if (curl_multi_add_handle(g->multi, easy) != CURLM_OK) return false;
  g->handles++;
  update_timer_ref(g);
  return true;
}

void glue_remove(http_glue *g, CURL *easy) {
  curl_multi_remove_handle(g->multi, easy);
  g->handles--;
  update_timer_ref(g);
}

void glue_close(http_glue *g) {
  curl_multi_cleanup(g->multi); /* closes cached connections' sockets */
  uv_close((uv_handle_t *)&g->timer, engine_free_handle_data);
  curl_global_cleanup();
}
