/* lifetime.h: the engine from start to shutdown (see lifetime.c), for the
 * command line and the tests. */
#ifndef LIFETIME_H
#define LIFETIME_H

#include <stdbool.h>

#include "engine.h"

int engine_init(engine *e, enum log_level level, bool ignore_env);
int engine_run(engine *e, int nargs); /* main function + args on e->L */
void engine_shutdown(engine *e);

#endif
