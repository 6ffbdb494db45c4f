/* edit_api.h: libedit, loaded when the interactive prompt starts on a
 * terminal (lazylib.h), not at start-up: a flow never pays for it.
 * repl_term.c includes this instead of <histedit.h>; the el_* and history
 * names it uses go through a table filled once by edit_api_load. */
#ifndef EDIT_API_H
#define EDIT_API_H

#include <stdbool.h>
#include <stddef.h>

#include <histedit.h>

typedef struct {
  EditLine *(*el_init)(const char *, FILE *, FILE *, FILE *);
  void (*el_end)(EditLine *);
  const char *(*el_gets)(EditLine *, int *);
  int (*el_get)(EditLine *, int, ...);
  int (*el_set)(EditLine *, int, ...);
  int (*el_wset)(EditLine *, int, ...);
  const LineInfo *(*el_line)(EditLine *);
  int (*el_insertstr)(EditLine *, const char *);
  History *(*history_init)(void);
  void (*history_end)(History *);
  int (*history)(History *, HistEvent *, int, ...);
} edit_api;

extern edit_api edit_fns;

/* Loads libedit once; false (with why) when it cannot. */
bool edit_api_load(char *why, size_t whysz);

#define el_init edit_fns.el_init
#define el_end edit_fns.el_end
#define el_gets edit_fns.el_gets
#define el_get edit_fns.el_get
#define el_set edit_fns.el_set
#define el_wset edit_fns.el_wset
#define el_line edit_fns.el_line
#define el_insertstr edit_fns.el_insertstr
#define history_init edit_fns.history_init
#define history_end edit_fns.history_end
#define history edit_fns.history

#endif
