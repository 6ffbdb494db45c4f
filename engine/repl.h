/* repl.h: inside the REPL front end. The core (repl.c) turns lines into
 * chunks run as the foreground task and owns quitting; an input reads the
 * lines: the terminal one (repl_term.c: libedit in an input thread) or the
 * piped one (repl_pipe.c: a uv_poll on stdin, no prompts). */
#ifndef REPL_H
#define REPL_H

#include <stdbool.h>

#include "engine.h"

struct repl;

typedef struct repl_input {
  int (*start)(struct repl *r);
  void (*next)(struct repl *r);      /* the foreground chunk ended: read on */
  void (*interrupt)(struct repl *r); /* Ctrl-C with no chunk running */
  void (*stop)(struct repl *r);      /* stop reading (may be called twice) */
  void (*free)(struct repl *r);
} repl_input;

struct repl {
  engine *eng;
  engine_hooks hooks; /* how it attaches to the engine */
  const repl_input *input;
  void *in;       /* the input's own state */
  bool continued; /* the next line continues a chunk */
  bool asked;     /* warned once that background tasks are running */
  bool quitting;
  int exit_code;
  int failures;
  task *fg;       /* the running chunk */
  char *fg_text;  /* its text, for the history once it ran */
  void (*remember)(struct repl *r, const char *text); /* the history, if any */
  int module_ref; /* lua/repl.lua */
};

extern const repl_input repl_terminal, repl_piped;

/* for the inputs (loop thread only) */
void repl_line(struct repl *r, const char *line, void (*remember)(struct repl *, const char *));
char **repl_complete(struct repl *r, const char *word); /* NULL-ended, malloc'd */
void repl_reset(struct repl *r);    /* drop an unfinished chunk */
void repl_quit(struct repl *r, int code);
long repl_background(struct repl *r); /* tasks running besides the chunk */

#endif
