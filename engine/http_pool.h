/* http_pool.h: which transfers run now and which wait (see http_pool.c).
 * A transfer is embedded in its owner's operation; the owner says how to
 * set up an easy handle for it and hears when it ends. */
#ifndef HTTP_POOL_H
#define HTTP_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "curl_api.h"

typedef struct http_pool http_pool;
typedef struct host_slot host_slot;

typedef struct transfer {
  host_slot *host;
  CURL *easy;    /* from the pool once it starts */
  bool queued;   /* waiting in its host's queue */
  bool started;  /* in curl, holding a slot */
  struct transfer *q_prev, *q_next;
} transfer;

/* Who the transfers are for; data is passed back unchanged. */
typedef struct {
  void *data;
  /* sets up easy for t (CURLOPT_PRIVATE is the pool's); false: it cannot */
  bool (*prepare)(void *data, transfer *t, CURL *easy);
  /* t ended with result; CURLE_FAILED_INIT and !t->started when a queued
   * t could not start. The owner then calls pool_release. */
  void (*finished)(void *data, transfer *t, CURLcode result);
} transfer_owner;

/* Opens libcurl's multi on loop with at most host_cap transfers per host;
 * NULL, with why, when it cannot. */
http_pool *pool_open(uv_loop_t *loop, long host_cap, const transfer_owner *owner, char *why,
                     size_t whysz);
/* Starts t (a request for url) now, or queues it behind its host's
 * transfers; false when curl refused to start it (t holds nothing but
 * perhaps an easy handle: pool_release it). */
bool pool_submit(http_pool *p, transfer *t, const char *url);
/* Takes t out of its queue or out of curl and keeps its easy handle for
 * reuse; the transfers waiting for its slot start. */
void pool_release(http_pool *p, transfer *t);
void pool_close(http_pool *p); /* once no transfer is left */

#endif
