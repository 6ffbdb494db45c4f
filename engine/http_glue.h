/* http_glue.h: libcurl's multi interface driven by the libuv loop (see
 * http_glue.c). It knows easy handles, not requests. */
#ifndef HTTP_GLUE_H
#define HTTP_GLUE_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "curl_api.h"

typedef struct http_glue http_glue;

/* A transfer curl finished (its easy handle is still in the multi). */
typedef void (*glue_done_fn)(void *data, CURL *easy, CURLcode result);

/* Loads libcurl on first use and opens a multi on loop; NULL, with why,
 * when it cannot. done hears of every finished transfer. */
http_glue *glue_open(uv_loop_t *loop, glue_done_fn done, void *data, char *why, size_t whysz);
void glue_keep_connections(http_glue *g, long idle); /* idle connections cached */
bool glue_add(http_glue *g, CURL *easy); /* false: curl refused it */
void glue_remove(http_glue *g, CURL *easy);
/* Once no transfer is left: the multi, its cached connections, the timer
 * (freed in its close callback) and libcurl's global state. */
void glue_close(http_glue *g);

#endif
