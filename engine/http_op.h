/* http_op.h: one http.request in flight, shared by the binding that starts
 * it (http.c) and the answer it becomes (http_answer.c). */
#ifndef HTTP_OP_H
#define HTTP_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "curl_api.h"
#include "http_pool.h"
#include "http_spec.h"
#include "task.h"

typedef struct {
  char *data;
  size_t len, cap;
} http_buffer;

/* Answer bytes held by all transfers in flight, and the most they may
 * hold (ENGINE_HTTP_MAX_BUFFERED). */
typedef struct {
  size_t held, max;
} http_budget;

typedef struct http_op {
  op base;       /* first: what the task waits on */
  transfer xfer; /* its place among the transfers */
  engine *eng;
  http_pool *pool;
  http_budget *budget;
  /* what was asked */
  char method[HTTP_METHOD_MAX];
  char *url;
  struct curl_slist *req_headers;
  char *post; /* the body to send, or NULL; the op owns it until the end */
  size_t post_len;
  double timeout;
  bool follow, compressed, nobody;
  uint64_t asked_ns; /* uv_hrtime() when asked, with -v only */
  /* the answer as it arrives */
  http_buffer body, headers;
  size_t max_bytes;
  bool headers_done; /* the blank line after the last response's headers */
  bool too_large;    /* the body passed max_bytes */
  bool over_budget;  /* all answers together passed the budget */
  char *errbuf;      /* curl's message, while the transfer runs */
} http_op;

#endif
