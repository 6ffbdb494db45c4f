/* signals.c: SIGINT/SIGTERM. The handler never touches Lua state beyond
 * lua_sethook (which is signal-safe by design, as in lua.c): it arms a hook
 * on the task running Lua code, so a busy loop is interrupted too, and wakes
 * the loop, which cancels every task. A second signal exits at once. A
 * front end may take the signal first (hooks.interrupted) and may keep a
 * task running (hooks.interruptible). Signal dispositions are
 * process-wide, so this file's state is too. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "signals.h"
#include "task.h"

static uv_async_t wakeup;
static lua_State *volatile running;
static volatile sig_atomic_t caught_signal;
static volatile sig_atomic_t signal_count;
static volatile sig_atomic_t repeatable;

#define RETRY_INSTRUCTIONS 1000

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  task_restore_hook(L);
  if (!task_raise_interrupt(L, caught_signal)) /* in the engine's code: later */
    lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                RETRY_INSTRUCTIONS);
}

static void on_signal(int sig) {
  /* Repeatable (the REPL): every Ctrl-C is a fresh request that the front
   * end handles, never an exit at once. */
  if (!(sig == SIGINT && repeatable) && signal_count++ > 0) {
    static const char msg[] = "\nengine: second interrupt: exiting now; cleanups, "
                              "Census cancels and the summary are skipped\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* exiting anyway */
    }
    _exit(128 + sig);
  }
  caught_signal = sig;
  lua_State *L = running;
  if (L)
    lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                1);
  uv_async_send(&wakeup);
}

static void on_wakeup(uv_async_t *async) {
  engine *e = async->data;
  int sig = caught_signal;
  if (!sig) return;
  if (e->hooks.interrupted && e->hooks.interrupted(e->hooks.data, sig)) {
    caught_signal = 0;
    return;
  }
  if (e->stop == STOP_SIGNAL) return;
  e->stop = STOP_SIGNAL;
  e->interrupt_signal = sig;
  log_msg(e, LOG_WARN,
          "interrupted by %s: cancelling %ld task(s) and the Census runs they "
          "wait on; press Ctrl-C again to exit at once, leaving them running",
          sig == SIGTERM ? "SIGTERM" : "SIGINT", task_live_count(e));
  task_cancel_all(e);
}

int signals_caught(void) {
  return caught_signal;
}

void signals_set_repeatable(bool on) {
  repeatable = on;
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
