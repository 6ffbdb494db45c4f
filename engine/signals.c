/* signals.c: SIGINT/SIGTERM. The handler never touches Lua state beyond
 * lua_sethook (which is signal-safe by design, as in lua.c): it arms a hook
 * on the task running Lua code, so a busy loop is interrupted too, and wakes
 * the loop, which cancels every task. A second signal exits at once.
 * Signal dispositions are process-wide, so this file's state is too. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "engine.h"

static uv_async_t wakeup;
static lua_State *volatile running;
static volatile sig_atomic_t caught_signal;
static volatile sig_atomic_t signal_count;
static volatile sig_atomic_t repl_mode;

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  task *t = task_current(L);
  if (!t || (t->eng->repl && !repl_is_foreground(t->eng, t))) return;
  if (!task_take_interrupt(t)) return;
  t->ever_canceled = true;
  error_push(L, "canceled", "interrupted by %s",
             caught_signal == SIGTERM ? "SIGTERM" : "SIGINT");
  lua_error(L);
}

static void on_signal(int sig) {
  /* At the REPL every Ctrl-C is a fresh request: it cancels the running
   * line or clears the prompt, never exits. */
  if (sig == SIGINT && repl_mode) {
    caught_signal = sig;
    lua_State *L = running;
    if (L)
      lua_sethook(L, interrupt_hook,
                  LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
    uv_async_send(&wakeup);
    return;
  }
  if (signal_count++ > 0) _exit(128 + sig);
  caught_signal = sig;
  lua_State *L = running;
  if (L)
    lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                1);
  uv_async_send(&wakeup);
}

static void on_wakeup(uv_async_t *async) {
  engine *e = async->data;
  if (e->repl && caught_signal == SIGINT) {
    caught_signal = 0;
    repl_interrupt(e);
    return;
  }
  if (!caught_signal || e->interrupt_signal) return;
  e->interrupt_signal = caught_signal;
  log_msg(e, LOG_WARN,
          "interrupted by %s: cancelling %ld task(s); press Ctrl-C again to "
          "exit at once",
          caught_signal == SIGTERM ? "SIGTERM" : "SIGINT", task_live_count(e));
  task_cancel_all(e);
  if (e->repl) repl_quit(e, 128 + e->interrupt_signal);
}

void signals_set_repl(bool on) {
  repl_mode = on;
}

void signals_set_running(lua_State *thread) {
  running = thread;
}

int signals_init(engine *e) {
  int rc = uv_async_init(&e->loop, &wakeup, on_wakeup);
  if (rc) return rc;
  wakeup.data = e;
  uv_unref((uv_handle_t *)&wakeup);
  caught_signal = 0;
  signal_count = 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  return 0;
}

void signals_close(void) {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  running = NULL;
}
