/* bench_floor.c: the benchmark's floor. The requests the engine makes for
 * N syncs run in parallel (a trigger, then polls every POLL seconds until
 * the run completed), made by the plainest C client that can: libcurl's
 * multi interface driven by libuv, one easy handle per sync kept for its
 * life, no Lua, no journal, no logs. Same headers, same connection rules
 * (a POST on a fresh connection that is not kept, GETs reuse), same
 * answers read (the run id, the status).
 * Usage: bench_floor BASE_URL N POLL JITTER; prints "completed N". */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <curl/curl.h>
#include <uv.h>

typedef struct {
  CURL *easy;
  uv_timer_t timer;
  struct curl_slist *headers;
  char url[256];
  char *body;
  size_t len;
  long run_id;
  bool triggered;
} sync_t;

typedef struct {
  uv_poll_t poll;
  curl_socket_t fd;
} sock_t;

static uv_loop_t *loop;
static CURLM *multi;
static uv_timer_t curl_timer;
static const char *base;
static double poll_s, jitter;
static long done_count, n_syncs;

static size_t on_body(char *data, size_t size, size_t n, void *userp) {
  sync_t *s = userp;
  s->body = realloc(s->body, s->len + size * n + 1);
  memcpy(s->body + s->len, data, size * n);
  s->len += size * n;
  s->body[s->len] = '\0';
  return size * n;
}

static void start_get(uv_timer_t *t);

static void send_request(sync_t *s, bool post) {
  curl_easy_setopt(s->easy, CURLOPT_URL, s->url);
  if (post) {
    curl_easy_setopt(s->easy, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(s->easy, CURLOPT_COPYPOSTFIELDS, "");
    curl_easy_setopt(s->easy, CURLOPT_FRESH_CONNECT, 1L);
    curl_easy_setopt(s->easy, CURLOPT_FORBID_REUSE, 1L);
  } else {
    curl_easy_setopt(s->easy, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(s->easy, CURLOPT_FRESH_CONNECT, 0L);
    curl_easy_setopt(s->easy, CURLOPT_FORBID_REUSE, 0L);
  }
  s->len = 0;
  curl_multi_add_handle(multi, s->easy);
}

static void schedule_poll(sync_t *s, bool first) {
  double wait = first ? 0 : poll_s * (1 + jitter * rand() / (double)RAND_MAX);
  uv_timer_start(&s->timer, start_get, (uint64_t)(wait * 1000), 0);
}

static void start_get(uv_timer_t *t) {
  sync_t *s = t->data;
  snprintf(s->url, sizeof s->url, "%s/api/v1/sync_runs/%ld", base, s->run_id);
  send_request(s, false);
}

static void finished(sync_t *s) {
  curl_multi_remove_handle(multi, s->easy);
  const char *data = s->body ? strstr(s->body, "\"data\"") : NULL;
  if (!s->triggered) {
    const char *id = data ? strstr(data, "\"sync_run_id\":") : NULL;
    if (!id) {
      fprintf(stderr, "bench_floor: no run id in %s\n", s->body ? s->body : "(nothing)");
      exit(1);
    }
    s->run_id = strtol(id + 14, NULL, 10);
    s->triggered = true;
    schedule_poll(s, true);
    return;
  }
  if (data && strstr(data, "\"status\":\"completed\"")) {
    if (++done_count == n_syncs) {
      uv_timer_stop(&curl_timer);
      uv_stop(loop);
    }
    return;
  }
  schedule_poll(s, false);
}

static void check_done(void) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    sync_t *s;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&s);
    if (m->data.result != CURLE_OK) {
      fprintf(stderr, "bench_floor: %s\n", curl_easy_strerror(m->data.result));
      exit(1);
    }
    finished(s);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  sock_t *c = p->data;
  int flags = status < 0 ? CURL_CSELECT_ERR
                         : ((events & UV_READABLE) ? CURL_CSELECT_IN : 0) |
                               ((events & UV_WRITABLE) ? CURL_CSELECT_OUT : 0);
  int running;
  curl_multi_socket_action(multi, c->fd, flags, &running);
  check_done();
}

static void on_closed(uv_handle_t *h) { free(h->data); }

static int on_socket(CURL *e, curl_socket_t fd, int what, void *u, void *sp) {
  (void)e, (void)u;
  sock_t *c = sp;
  if (what == CURL_POLL_REMOVE) {
    if (c) {
      uv_poll_stop(&c->poll);
      uv_close((uv_handle_t *)&c->poll, on_closed);
      curl_multi_assign(multi, fd, NULL);
    }
    return 0;
  }
  if (!c) {
    c = malloc(sizeof *c);
    c->fd = fd;
    uv_poll_init_socket(loop, &c->poll, fd);
    c->poll.data = c;
    curl_multi_assign(multi, fd, c);
  }
  uv_poll_start(&c->poll, ((what & CURL_POLL_IN) ? UV_READABLE : 0) |
                              ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0), on_poll);
  return 0;
}

static void on_timeout(uv_timer_t *t) {
  (void)t;
  int running;
  curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done();
}

static int on_timer(CURLM *m, long ms, void *u) {
  (void)m, (void)u;
  if (ms < 0)
    uv_timer_stop(&curl_timer);
  else
    uv_timer_start(&curl_timer, on_timeout, (uint64_t)ms, 0);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: bench_floor BASE_URL N POLL JITTER\n");
    return 2;
  }
  base = argv[1];
  n_syncs = atol(argv[2]);
  poll_s = atof(argv[3]);
  jitter = atof(argv[4]);
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  const char *token = getenv("CENSUS_API_KEY");
  char auth[512];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token ? token : "");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  loop = uv_default_loop();
  multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, on_timer);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)n_syncs);
  uv_timer_init(loop, &curl_timer);
  sync_t *syncs = calloc((size_t)n_syncs, sizeof *syncs);
  for (long i = 0; i < n_syncs; i++) {
    sync_t *s = &syncs[i];
    s->easy = curl_easy_init();
    s->headers = curl_slist_append(NULL, auth);
    s->headers = curl_slist_append(s->headers, "Accept: application/json");
    s->headers = curl_slist_append(s->headers, "Content-Type: application/json");
    s->headers = curl_slist_append(s->headers, "Expect:");
    curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->headers);
    curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
    curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(s->easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, 30000L);
    curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "bench-floor");
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    snprintf(s->url, sizeof s->url, "%s/api/v1/syncs/%ld/trigger", base, i + 1);
    send_request(s, true);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  printf("completed %ld\n", done_count);
  return done_count == n_syncs ? 0 : 1;
}
