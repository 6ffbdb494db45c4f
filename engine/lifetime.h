/* lifetime.h: the engine from start to shutdown (see lifetime.c), for the
 * command line and the tests. */
#ifndef LIFETIME_H
#define LIFETIME_H

#include <stdbool.h>

#include "engine.h"

int engine_init(engine *e, enum log_level level, bool ignore_env);
int engine_run(engine *e, int nargs); /* main function + args on e->L */
/* The function below its nargs arguments on e->L, run as a task with the
 * loop turning until it ends (before the flow: the journal's store may
 * wait on the loop). LUA_OK and its *nresults results on the stack, or an
 * error status and the error on top. */
int engine_call_task(engine *e, int nargs, int *nresults);
void engine_shutdown(engine *e);

#endif
