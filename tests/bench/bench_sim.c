/* bench_sim.c: a Census simulator fast enough for the benchmark (10,000
 * syncs at once): one thread, libuv, HTTP/1.1 keep-alive, no TLS. It
 * answers the two requests a sync makes, POST /api/v1/syncs/ID/trigger and
 * GET /api/v1/sync_runs/ID, walking each run through queued, working and
 * completed on its 1st, 2nd and 3rd poll (so a sync is one trigger and
 * three polls). GET /_stats answers its counts as JSON:
 *   requests, connections, triggers, polls, completed, cpu_seconds,
 *   late_ms_max: the worst time a poll came after it was due, where due is
 *   the previous poll of the run plus POLL seconds times 1 + JITTER (times
 *   2 after the first poll: the engine spreads syncs started together).
 * Usage: bench_sim POLL JITTER   (prints "listening on PORT" once ready)
 * The tests' Python simulator (tests/census_sim.py) plays scenarios; this
 * one only plays the benchmark's. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <uv.h>

#define MAX_REQUEST 8192

typedef struct {
  double last_poll; /* 0: not polled yet */
  double created;
  int polls;
} sim_run;

typedef struct {
  uv_tcp_t tcp;
  char buf[MAX_REQUEST];
  size_t len;
} conn;

typedef struct {
  uv_write_t req;
  char *data;
} write_req;

static uv_loop_t *loop;
static sim_run *runs;
static long run_count, run_cap;
static long requests, connections, triggers, polls, completed, stats_asked;
static double poll_interval, jitter, late_max;

static double now(void) { return (double)uv_hrtime() / 1e9; }

static void on_written(uv_write_t *w, int status) {
  (void)status;
  write_req *r = (write_req *)w;
  free(r->data);
  free(r);
}

static void reply(conn *c, int status, const char *body) {
  write_req *r = malloc(sizeof *r);
  size_t blen = strlen(body);
  r->data = malloc(blen + 256);
  int n = snprintf(r->data, blen + 256,
                   "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                   "Content-Length: %zu\r\n\r\n%s",
                   status, status == 200 ? "OK" : "Not Found", blen, body);
  uv_buf_t buf = uv_buf_init(r->data, (unsigned)n);
  uv_write(&r->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written);
}

static long new_run(void) {
  if (run_count == run_cap) {
    run_cap = run_cap ? run_cap * 2 : 1024;
    sim_run *more = realloc(runs, (size_t)run_cap * sizeof *runs);
    if (!more) {
      fprintf(stderr, "bench_sim: out of memory\n");
      exit(1);
    }
    runs = more;
  }
  runs[run_count] = (sim_run){0, now(), 0};
  return ++run_count; /* run ids from 1 */
}

static void answer(conn *c, const char *method, const char *path) {
  char body[1024];
  long id;
  requests++;
  if (strcmp(method, "POST") == 0 && sscanf(path, "/api/v1/syncs/%ld/trigger", &id) == 1) {
    triggers++;
    snprintf(body, sizeof body, "{\"status\":\"success\",\"data\":{\"sync_run_id\":%ld}}",
             1000000 + new_run());
    reply(c, 200, body);
  } else if (strcmp(method, "GET") == 0 && sscanf(path, "/api/v1/sync_runs/%ld", &id) == 1 &&
             id > 1000000 && id - 1000000 <= run_count) {
    sim_run *r = &runs[id - 1000001];
    double t = now();
    if (r->last_poll > 0) {
      /* the engine may stretch a run's first sleep by a whole interval
       * (to spread syncs started together), later ones by JITTER */
      double late = t - (r->last_poll + poll_interval * (r->polls == 1 ? 2 : 1 + jitter));
      if (late > late_max) late_max = late;
    }
    r->last_poll = t;
    r->polls++;
    polls++;
    const char *status = r->polls == 1 ? "queued" : r->polls == 2 ? "working" : "completed";
    if (r->polls == 3) completed++;
    bool done = r->polls >= 3;
    snprintf(body, sizeof body,
             "{\"status\":\"success\",\"data\":{\"id\":%ld,\"sync_id\":%ld,\"status\":\"%s\","
             "\"canceled\":false,\"full_sync\":false,\"created_at\":\"2026-01-01T00:00:00.000Z\","
             "\"updated_at\":\"2026-01-01T00:00:01.000Z\",\"completed_at\":%s,"
             "\"scheduled_execution_time\":null,\"current_step\":null,\"error_code\":null,"
             "\"error_message\":null,\"error_detail\":null,\"source_record_count\":%s,"
             "\"records_processed\":%s,\"records_updated\":%s,\"records_failed\":%s,"
             "\"records_invalid\":%s,\"sync_trigger_reason\":{\"ui_tag\":\"API\","
             "\"ui_detail\":\"Triggered via API\"}}}",
             id, id - 1000000, status, done ? "\"2026-01-01T00:00:02.000Z\"" : "null",
             done ? "100" : "null", done ? "100" : "null", done ? "100" : "null",
             done ? "0" : "null", done ? "0" : "null");
    reply(c, 200, body);
  } else if (strcmp(method, "GET") == 0 && strcmp(path, "/_stats") == 0) {
    requests--;
    stats_asked++;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    snprintf(body, sizeof body,
             "{\"requests\":%ld,\"connections\":%ld,\"triggers\":%ld,\"polls\":%ld,"
             "\"completed\":%ld,\"cpu_seconds\":%.3f,\"late_ms_max\":%.1f}",
             requests, connections - stats_asked, triggers, polls, completed, cpu, late_max * 1000);
    reply(c, 200, body);
  } else {
    reply(c, 404, "{\"status\":404}");
  }
}

static void on_closed(uv_handle_t *h) { free(h->data); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(MAX_REQUEST - c->len));
}

/* Answers every complete request in the buffer (requests have no body but
 * the trigger's empty one, so a request ends at its blank line). */
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  (void)buf;
  conn *c = s->data;
  if (n < 0 || (size_t)n + c->len >= MAX_REQUEST) {
    uv_close((uv_handle_t *)s, on_closed);
    return;
  }
  c->len += (size_t)n;
  for (;;) {
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return;
    size_t used = (size_t)(end + 4 - c->buf);
    char method[16], path[512];
    if (sscanf(c->buf, "%15s %511s", method, path) == 2) answer(c, method, path);
    const char *cl = strstr(c->buf, "Content-Length:");
    if (cl && cl < end) used += (size_t)strtol(cl + 15, NULL, 10);
    if (used > c->len) used = c->len;
    memmove(c->buf, c->buf + used, c->len - used);
    c->len -= used;
  }
}

static void on_connection(uv_stream_t *server, int status) {
  if (status < 0) return;
  conn *c = calloc(1, sizeof *c);
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) == 0) {
    connections++;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  } else {
    uv_close((uv_handle_t *)&c->tcp, on_closed);
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: bench_sim POLL JITTER\n");
    return 2;
  }
  poll_interval = atof(argv[1]);
  jitter = atof(argv[2]);
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  loop = uv_default_loop();
  uv_tcp_t server;
  uv_tcp_init(loop, &server);
  struct sockaddr_in addr;
  uv_ip4_addr("127.0.0.1", 0, &addr);
  uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (uv_listen((uv_stream_t *)&server, 4096, on_connection) != 0) return 1;
  struct sockaddr_in bound;
  int len = sizeof bound;
  uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
  printf("listening on %d\n", ntohs(bound.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}
