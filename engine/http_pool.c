/* http_pool.c: the transfers of the HTTP binding. Requests to one host run
 * at most a few at a time (the rest wait in a FIFO per host, O(1) per
 * event), and no more at once than the descriptor limit allows; a transfer
 * takes an easy handle from a small pool only when it starts, so ten
 * thousand waiting requests hold no curl state. Connections are kept alive
 * and reused through the multi's cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "http_glue.h"
#include "http_pool.h"
#include "text.h"

#define EASY_POOL_MAX 64 /* idle easy handles kept for reuse */
#define FD_RESERVE 32    /* descriptors kept for the loop, logs, journal, children */
#define MIN_ACTIVE 4

/* A host (scheme://host:port): its transfers and the requests waiting. */
struct host_slot {
  char *key;
  long active;
  transfer *queue_head, *queue_tail; /* waiting for a transfer slot */
  host_slot *next;
};

struct http_pool {
  http_glue *glue;
  transfer_owner owner;
  CURL *idle[EASY_POOL_MAX];
  int idle_count;
  long active;      /* transfers in curl */
  long max_active;  /* what the descriptor limit allows */
  long host_active; /* per host */
  host_slot *hosts;
};

/* The host's queue: requests beyond its cap (or beyond max_active) wait
 * here, first in first out, and start as transfers end. */
static void queue_push(host_slot *q, transfer *t) {
  t->queued = true;
  t->q_next = NULL;
  t->q_prev = q->queue_tail;
  if (q->queue_tail)
    q->queue_tail->q_next = t;
  else
    q->queue_head = t;
  q->queue_tail = t;
}

static void queue_remove(host_slot *q, transfer *t) {
  if (t->q_prev)
    t->q_prev->q_next = t->q_next;
  else
    q->queue_head = t->q_next;
  if (t->q_next)
    t->q_next->q_prev = t->q_prev;
  else
    q->queue_tail = t->q_prev;
  t->queued = false;
}

/* The slot of the URL's scheme://host:port (few hosts: a list). */
static host_slot *host_of(http_pool *p, const char *url) {
  url_parts u = url_split(url);
  size_t scheme_len = (size_t)(u.authority - url);
  for (host_slot *q = p->hosts; q; q = q->next)
    if (strlen(q->key) == scheme_len + u.hostport_len && memcmp(q->key, url, scheme_len) == 0 &&
        memcmp(q->key + scheme_len, u.hostport, u.hostport_len) == 0)
      return q;
  host_slot *q = calloc(1, sizeof *q);
  if (!q || !(q->key = malloc(scheme_len + u.hostport_len + 1))) {
    free(q);
    return NULL;
  }
  memcpy(q->key, url, scheme_len);
  memcpy(q->key + scheme_len, u.hostport, u.hostport_len);
  q->key[scheme_len + u.hostport_len] = '\0';
  q->next = p->hosts;
  p->hosts = q;
  return q;
}

static bool may_start(const http_pool *p, const host_slot *q) {
  return p->active < p->max_active && q->active < p->host_active;
}

/* Hands t to curl with an easy handle set up for it; false when refused. */
static bool start(http_pool *p, transfer *t) {
  if (!t->easy) t->easy = p->idle_count ? p->idle[--p->idle_count] : curl_easy_init();
  if (!t->easy || !p->owner.prepare(p->owner.data, t, t->easy)) return false;
  curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
  if (!glue_add(p->glue, t->easy)) return false;
  t->started = true;
  p->active++;
  t->host->active++;
  return true;
}

/* From the loop (a transfer of host q ended): its next waiting requests
 * start; one curl refuses ends at once with an error for its owner. */
static void start_queued(http_pool *p, host_slot *q) {
  while (q->queue_head && may_start(p, q)) {
    transfer *next = q->queue_head;
    queue_remove(q, next);
    if (!start(p, next)) p->owner.finished(p->owner.data, next, CURLE_FAILED_INIT);
  }
}

bool pool_submit(http_pool *p, transfer *t, const char *url) {
  if (!(t->host = host_of(p, url))) return false;
  if (may_start(p, t->host)) return start(p, t);
  queue_push(t->host, t); /* its turn comes as the host's transfers end */
  return true;
}

void pool_release(http_pool *p, transfer *t) {
  host_slot *q = t->host;
  bool held_slot = t->started;
  if (t->queued) queue_remove(q, t);
  if (t->started) {
    glue_remove(p->glue, t->easy);
    t->started = false;
    p->active--;
    q->active--;
  }
  if (t->easy) {
    if (p->idle_count < EASY_POOL_MAX) {
      curl_easy_reset(t->easy);
      p->idle[p->idle_count++] = t->easy;
    } else {
      curl_easy_cleanup(t->easy);
    }
    t->easy = NULL;
  }
  if (held_slot) start_queued(p, q);
}

static void on_done(void *data, CURL *easy, CURLcode result) {
  http_pool *p = data;
  transfer *t = NULL;
  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
  p->owner.finished(p->owner.data, t, result);
}

http_pool *pool_open(uv_loop_t *loop, long host_cap, const transfer_owner *owner, char *why,
                     size_t whysz) {
  http_pool *p = calloc(1, sizeof *p);
  if (!p) {
    snprintf(why, whysz, "out of memory");
    return NULL;
  }
  if (!(p->glue = glue_open(loop, on_done, p, why, whysz))) {
    free(p);
    return NULL;
  }
  p->owner = *owner;
  /* Each transfer holds a socket and curl may keep as many idle ones for
   * reuse: beyond what the descriptor limit allows, requests queue. */
  struct rlimit nofile;
  long fds = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                 ? (long)nofile.rlim_cur : 1L << 20;
  p->max_active = (fds - FD_RESERVE) / 2;
  if (p->max_active < MIN_ACTIVE) p->max_active = MIN_ACTIVE;
  p->host_active = host_cap;
  /* idle connections kept for reuse: a few hosts' worth */
  glue_keep_connections(p->glue, p->max_active < 4 * host_cap ? p->max_active : 4 * host_cap);
  return p;
}

void pool_close(http_pool *p) {
  for (int i = 0; i < p->idle_count; i++) curl_easy_cleanup(p->idle[i]);
  glue_close(p->glue); /* after the easy handles: it ends libcurl's global state */
  while (p->hosts) {
    host_slot *next = p->hosts->next;
    free(p->hosts->key);
    free(p->hosts);
    p->hosts = next;
  }
  free(p);
}
