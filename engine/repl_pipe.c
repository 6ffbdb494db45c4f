/* repl_pipe.c: the REPL's piped input. Lines are read on the loop with a
 * uv_poll on stdin (or all at once from a regular file), without prompts
 * or editing; the next line is taken only once the previous chunk ended.
 * At the end of input, background tasks finish as they would in a
 * script. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "repl.h"

#define READ_CHUNK 4096
#define FIRST_CAP 8192

typedef struct {
  uv_poll_t input;
  bool polling, reading, eof;
  char *buf;
  size_t len, cap;
} piped;

static piped *piped_of(struct repl *r) { return r->in; }

static void stop_input(struct repl *r) {
  piped *p = piped_of(r);
  if (p->reading) uv_poll_stop(&p->input);
  p->reading = false;
  if (p->polling) uv_close((uv_handle_t *)&p->input, NULL);
  p->polling = false;
}

static void handle_eof(struct repl *r) {
  piped_of(r)->eof = true;
  stop_input(r);
  if (r->continued) {
    fprintf(stderr, "engine: unexpected end of input in an unfinished statement\n");
    r->failures++;
  }
}

static void drain_buffer(struct repl *r) {
  piped *p = piped_of(r);
  while (!r->fg && !r->quitting) {
    char *nl = p->len ? memchr(p->buf, '\n', p->len) : NULL;
    if (!nl && !(p->eof && p->len)) break;
    size_t n = nl ? (size_t)(nl - p->buf) : p->len;
    char *line = strndup(p->buf, n);
    size_t used = nl ? n + 1 : n;
    memmove(p->buf, p->buf + used, p->len - used);
    p->len -= used;
    if (!line) break;
    repl_line(r, line, NULL);
    free(line);
  }
}

static bool buffer_read(piped *p) {
  if (p->cap - p->len < READ_CHUNK) {
    size_t cap = p->cap ? p->cap * 2 : FIRST_CAP;
    char *grown = realloc(p->buf, cap);
    if (!grown) return false;
    p->buf = grown;
    p->cap = cap;
  }
  ssize_t n = read(STDIN_FILENO, p->buf + p->len, p->cap - p->len);
  if (n > 0) p->len += (size_t)n;
  return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

static void on_readable(uv_poll_t *h, int status, int events) {
  struct repl *r = h->data;
  piped *p = piped_of(r);
  (void)events;
  bool more = status >= 0 && buffer_read(p);
  if (!more) p->eof = true;
  drain_buffer(r);
  if (p->eof && !r->fg) handle_eof(r);
}

static void read_on(struct repl *r) {
  piped *p = piped_of(r);
  if (!r->fg && !p->eof && !r->quitting && p->polling && !p->reading) {
    uv_poll_start(&p->input, UV_READABLE, on_readable);
    p->reading = true;
  }
}

/* The foreground chunk ended: run what is buffered, then read on. */
static void next(struct repl *r) {
  piped *p = piped_of(r);
  drain_buffer(r);
  if (r->fg) return;
  if (p->eof)
    handle_eof(r);
  else
    read_on(r);
}

/* Ctrl-C with no chunk running: there is no line to drop, so leave. */
static void interrupt(struct repl *r) {
  repl_quit(r, 130);
}

static int start(struct repl *r) {
  piped *p = calloc(1, sizeof *p);
  if (!p) return -1;
  r->in = p;
  if (uv_poll_init(&r->eng->loop, &p->input, STDIN_FILENO) == 0) {
    p->input.data = r;
    p->polling = true;
    read_on(r);
    return 0;
  }
  while (buffer_read(p)) { /* a regular file or /dev/null never blocks long */
  }
  p->eof = true;
  drain_buffer(r);
  if (!r->fg) handle_eof(r);
  return 0;
}

static void piped_free(struct repl *r) {
  piped *p = piped_of(r);
  if (!p) return;
  stop_input(r);
  free(p->buf);
  free(p);
  r->in = NULL;
}

const repl_input repl_piped = {start, next, interrupt, stop_input, piped_free};
