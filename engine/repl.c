/* repl.c: the interactive prompt's core. Each entered chunk runs as the
 * foreground task (lua/repl.lua holds the rules); background tasks keep
 * running while the user types and report their end; Ctrl-C cancels the
 * running chunk or goes to the input (drop the line being typed); Ctrl-D or
 * os.exit() leaves. It attaches to the engine through hooks and reads its
 * lines through an input: the terminal (repl_term.c) or a pipe
 * (repl_pipe.c). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "errors.h"
#include "frontend.h"
#include "modules.h"
#include "output.h"
#include "repl.h"
#include "signals.h"
#include "task.h"

static void on_finished(void *data, lua_State *L, task *t);

/* The REPL attached to e, found among e's hooks by its own. */
static struct repl *repl_of(engine *e) {
  for (engine_hooks *h = e->hooks; h; h = h->next)
    if (h->finished == on_finished) return h->data;
  return NULL;
}

static int call_repl(struct repl *r, const char *fn, int nargs, int nresults) {
  lua_State *L = r->eng->L;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_getfield(L, -1, fn);
  lua_remove(L, -2);
  lua_insert(L, -nargs - 1);
  int status = lua_pcall(L, nargs, nresults, 0);
  if (status != LUA_OK) {
    fprintf(stderr, "engine: repl: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return status;
}

long repl_background(struct repl *r) {
  return task_live_count(r->eng) - (r->fg ? 1 : 0);
}

void repl_reset(struct repl *r) {
  call_repl(r, "reset", 0, 0);
  r->continued = false;
}

static void run_chunk(struct repl *r) {
  lua_State *L = r->eng->L; /* stack: fn */
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_getfield(L, -1, "eval");
  lua_remove(L, -2);
  lua_insert(L, -2);
  r->fg = task_spawn(r->eng, L, 1);
  task_watch(r->fg);
  lua_pop(L, 1);
}

/* One line of input; starts a chunk when it completes one. Its text goes
 * to remember (the history), if any, once it ran, so that a token it
 * passed to a provider is known and hidden by then. */
void repl_line(struct repl *r, const char *line,
               void (*remember)(struct repl *, const char *)) {
  lua_State *L = r->eng->L;
  lua_pushstring(L, line);
  if (call_repl(r, "feed", 1, 3) != LUA_OK) return;
  const char *action = lua_tostring(L, -3);
  r->continued = strcmp(action, "incomplete") == 0;
  if (strcmp(action, "error") == 0) {
    output_begin(r->eng);
    fprintf(stderr, "%s\n", lua_tostring(L, -2));
    output_end(r->eng);
    r->failures++;
  } else if (strcmp(action, "run") == 0) {
    free(r->fg_text);
    r->fg_text = remember ? strdup(lua_tostring(L, -1)) : NULL;
    r->remember = remember;
    lua_pushvalue(L, -2);
    lua_replace(L, -4);
    lua_pop(L, 2);
    run_chunk(r);
    return;
  }
  lua_pop(L, 3);
}

char **repl_complete(struct repl *r, const char *word) {
  lua_State *L = r->eng->L;
  lua_pushstring(L, word);
  if (call_repl(r, "complete", 1, 1) != LUA_OK) return NULL;
  int n = (int)luaL_len(L, -1);
  char **m = calloc((size_t)n + 1, sizeof *m);
  for (int i = 0; m && i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    m[i] = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return m;
}

static void quit(struct repl *r, int code, bool cancel) {
  if (r->quitting) return;
  r->quitting = true;
  r->exit_code = code;
  r->input->stop(r);
  if (cancel) task_cancel_all(r->eng);
}

void repl_quit(struct repl *r, int code) {
  quit(r, code, true);
}

/* --- engine hooks -------------------------------------------------------- */

/* Tasks a chunk's own code starts (flow.spawn) are background tasks:
 * their end is reported. Those the engine starts for itself (a journal
 * commit, flow.parallel's workers) are not the user's business. */
static void on_spawned(void *data, task *parent, task *child) {
  struct repl *r = data;
  if (parent && parent == r->fg && task_visible(child)) task_watch(child);
}

static void on_finished(void *data, lua_State *L, task *t) {
  struct repl *r = data;
  if (t != r->fg) {
    lua_pushvalue(L, -1);
    call_repl(r, "report", 1, 0);
    return;
  }
  r->fg = NULL;
  fflush(stdout);
  if (r->fg_text && r->remember) r->remember(r, r->fg_text);
  free(r->fg_text);
  r->fg_text = NULL;
  if (!r->quitting) r->input->next(r);
}

static bool on_interruptible(void *data, task *t) {
  return ((struct repl *)data)->fg == t;
}

/* SIGINT cancels the running chunk, or goes to the input; SIGTERM leaves
 * (the engine cancels every task). */
static bool on_interrupted(void *data, int sig) {
  struct repl *r = data;
  if (sig != SIGINT) {
    quit(r, 128 + sig, false);
    return false;
  }
  if (r->fg) {
    if (task_take_interrupt(r->fg)) task_cancel(r->fg);
  } else {
    r->input->interrupt(r);
  }
  return true;
}

/* --- functions the REPL adds --------------------------------------------- */

/* os.exit: leave cleanly (history saved, tasks cancelled, terminal
 * restored), asking once when background tasks are still running. The
 * upvalue is the engine: the REPL may be gone (a __gc at lua_close). */
static int repl_os_exit(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  struct repl *r = repl_of(e);
  if (!r) return 0;
  int code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_optinteger(L, 1, 0);
  long others = task_live_count(e) - (task_owner(L) ? 1 : 0);
  if (others > 0 && !r->asked) {
    r->asked = true;
    output_begin(e);
    printf("%ld background task(s) still running: os.exit() again cancels them and leaves\n",
           others);
    output_end(e);
    return 0;
  }
  repl_quit(r, code);
  error_push(L, "canceled", "leaving the REPL");
  return lua_error(L);
}

static int help_fn(lua_State *L) {
  lua_settop(L, 1);
  modules_require(L, "engine.help");
  lua_getfield(L, -1, "text");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_getglobal(L, "print");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/* quitting(): true once the REPL is leaving (lua/repl.lua stays quiet). */
static int repl_quitting(lua_State *L) {
  struct repl *r = repl_of(lua_touserdata(L, lua_upvalueindex(1)));
  lua_pushboolean(L, r && r->quitting);
  return 1;
}

/* --- start and end ------------------------------------------------------- */

/* Runs as the last chunk of the main task; upvalue 1 is the engine. */
int repl_start(lua_State *L) {
  engine *e = lua_touserdata(L, lua_upvalueindex(1));
  if (repl_of(e)) return 0;
  struct repl *r = calloc(1, sizeof *r);
  if (!r) return luaL_error(L, "out of memory");
  r->eng = e;
  r->input = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO) ? &repl_terminal
                                                           : &repl_piped;
  modules_require(L, "engine.repl");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, repl_quitting, 1);
  lua_setfield(L, -2, "quitting");
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "globals");
  r->module_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->hooks = (engine_hooks){.data = r,
                            .spawned = on_spawned,
                            .finished = on_finished,
                            .interruptible = on_interruptible,
                            .interrupted = on_interrupted};
  engine_hooks_add(e, &r->hooks);
  e->no_summary = true;
  signals_set_repeatable(true);

  output_guard_print(L, e);
  lua_getglobal(L, "os");
  lua_pushlightuserdata(L, e);
  lua_pushcclosure(L, repl_os_exit, 1);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_pushcfunction(L, help_fn);
  lua_setglobal(L, "help");

  if (r->input->start(r) != 0)
    return luaL_error(L, "cannot start the terminal prompt");
  return 0;
}

int repl_exit_code(engine *e) {
  struct repl *r = repl_of(e);
  if (!r) return -1;
  if (r->quitting) return r->exit_code;
  return r->failures ? 1 : 0;
}

void repl_free(engine *e) {
  struct repl *r = repl_of(e);
  if (!r) return;
  engine_hooks_remove(e, &r->hooks);
  r->input->free(r);
  free(r->fg_text);
  free(r);
  signals_set_repeatable(false);
}
