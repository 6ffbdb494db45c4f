/* signals.h: SIGINT/SIGTERM for the engine (see signals.c). */
#ifndef SIGNALS_H
#define SIGNALS_H

#include <stdbool.h>

#include "engine.h"

int signals_init(engine *e);
void signals_set_repeatable(bool on); /* every SIGINT is a fresh request */
void signals_close(void);

#endif
