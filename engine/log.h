/* log.h: log lines on stderr (see log.c). */
#ifndef LOG_H
#define LOG_H

#include <stdbool.h>
#include <stdio.h>

#include <lua.h>

#include "engine.h"

/* One line at level, when e's level lets it through. */
void log_msg(engine *e, enum log_level level, const char *fmt, ...);
/* Whether a line at level would be written: callers skip building one. */
static inline bool log_enabled(const engine *e, enum log_level level) {
  return level >= e->log_level;
}
/* One line with more JSON fields (",\"k\":v...", or NULL), when e's level
 * lets it through; the fields show only in the JSON format. */
void log_msg_with(engine *e, enum log_level level, const char *fields, const char *fmt, ...);
/* The line that ends a run, whatever the level: "engine: msg" (and the
 * traceback, or NULL) as text, or one JSON object at ERROR. */
void log_final(engine *e, const char *msg, size_t len, const char *trace);
/* log_final of the error value at idx, described as lua prints it. */
void log_final_value(engine *e, lua_State *L, int idx);
/* The context of the Lua code running now (flow, run, step, ...) and
 * name: value, as JSON fields for log_msg_with, malloc'd; NULL in the text
 * format. For lines written later from a loop callback (child output). */
char *log_context_fields(lua_State *L, engine *e, const char *name, const char *value);
/* text as it may leave the process: printable, cut at max bytes, no secret */
void log_write_safe(FILE *out, const char *text, size_t len, size_t max);
void log_open(lua_State *L, engine *e);     /* engine.log: the log.* levels */
void log_register(lua_State *L, engine *e); /* engine.c.log: levels with fields,
                                               enabled, set_context */

#endif
