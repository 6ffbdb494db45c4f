/* watchdog.h: a WARN when the flow holds the loop (see watchdog.c). */
#ifndef WATCHDOG_H
#define WATCHDOG_H

#include "engine.h"

int watchdog_start(engine *e); /* from the loop's thread; 0 or an errno */
void watchdog_stop(void);

#endif
