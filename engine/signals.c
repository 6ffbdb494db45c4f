/* signals.c: SIGINT/SIGTERM. The handler never touches Lua state beyond
 * lua_sethook (which is signal-safe by design, as in lua.c): it arms a hook
 * on the thread running Lua code (engine.running), so a busy loop is
 * interrupted too, and wakes the loop, which cancels every task. A second
 * signal exits at once. A front end may take the signal first
 * (hooks.interrupted) and may keep a task running (hooks.interruptible).
 * Signal dispositions are process-wide, so the engine they reach is too. */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "log.h"
#include "signals.h"
#include "task.h"

static uv_async_t wakeup;
static engine *volatile signal_engine; /* the engine the signals reach */
static volatile sig_atomic_t signal_count;
static volatile sig_atomic_t repeatable;

#define RETRY_INSTRUCTIONS 1000

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  engine *e = signal_engine;
  task_restore_hook(L);
  if (e && !task_raise_interrupt(L, e->caught_signal)) /* in the engine's code: later */
    lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                RETRY_INSTRUCTIONS);
}

static void on_signal(int sig) {
  /* Repeatable (the REPL): every Ctrl-C is a fresh request that the front
   * end handles, never an exit at once. */
  if (!(sig == SIGINT && repeatable) && signal_count++ > 0) {
    static const char msg[] = "\nengine: second interrupt: exiting now; cleanups, "
                              "remote-job cancels and the summary are skipped\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) { /* exiting anyway */
    }
    _exit(128 + sig);
  }
  engine *e = signal_engine;
  if (!e) return;
  e->caught_signal = sig;
  lua_State *L = e->running;
  if (L)
    lua_sethook(L, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT,
                1);
  uv_async_send(&wakeup);
}

/* What a second signal of the same kind does, as the person who sent the
 * first would do it. */
static const char *again(int sig) {
  return sig == SIGTERM ? "send SIGTERM again" : "press Ctrl-C again";
}

static void on_wakeup(uv_async_t *async) {
  engine *e = async->data;
  int sig = e->caught_signal;
  if (!sig) return;
  if (engine_tell_interrupted(e, sig)) {
    e->caught_signal = 0;
    return;
  }
  if (e->stop == STOP_SIGNAL) return;
  e->stop = STOP_SIGNAL;
  engine_begin_stop(e);
  e->interrupt_signal = sig;
  log_msg(e, LOG_WARN,
          "%s: cancelling %ld task(s) and the remote jobs they wait on; %s to "
          "exit at once, leaving them running",
          engine_interrupted_by(sig), task_live_count(e), again(sig));
  task_cancel_all(e);
}

void signals_set_repeatable(bool on) {
  repeatable = on;
}

int signals_init(engine *e) {
  int rc = uv_async_init(&e->loop, &wakeup, on_wakeup);
  if (rc) return rc;
  wakeup.data = e;
  uv_unref((uv_handle_t *)&wakeup);
  e->caught_signal = 0;
  signal_count = 0;
  signal_engine = e;
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
  signal_engine = NULL;
}
