/* frontend.h: what the command line (main.c) starts on top of the engine:
 * the REPL and the live progress view. They attach through engine hooks
 * and output observers; nothing below them names them. */
#ifndef FRONTEND_H
#define FRONTEND_H

#include "engine.h"

/* repl.c */
int repl_start(lua_State *L); /* the last chunk of the main task; upvalue: the engine */
int repl_exit_code(engine *e); /* -1 when no REPL ran */
void repl_free(engine *e);

/* progress.c: mode "auto" (stderr is a terminal), "always" or "never";
 * it stops itself through output_close when the run's output ends */
int progress_start(engine *e, const char *mode);

/* supervise.c: engine --supervise CMD ARG... (see exec.c) */
int supervise_main(int argc, char **argv);

#endif
