/* watchdog.c: tells when the flow holds the loop. One resume of a task
 * should last microseconds; a blocking call in a flow (io.popen, a C
 * module, a long computation) stops every other wait meanwhile: timers
 * fire late, polls stall. A thread looks four times a second at how long
 * the current resume has run; past HOLD_LIMIT, with other tasks waiting,
 * it signals the loop's thread, whose handler arms a count hook (the
 * signal-safe way lua.c interrupts, never a lua_sethook from another
 * thread); the hook logs one WARN naming the flow's source line (the
 * line running when the hold is seen: a loop's own, or the one after a
 * blocking call), then puts the task's own hook back. One WARN per hold. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

#include "log.h"
#include "task.h"
#include "watchdog.h"

#define HOLD_LIMIT_NS 1000000000ULL /* one second */
#define LOOK_EVERY_NS 250000000L

static engine *watched;          /* the engine whose loop is watched */
static pthread_t watcher, loop_thread;
static atomic_bool running_watch;
static atomic_ullong warned_resume; /* the resume already told of */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

static void hold_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  engine *e = watched;
  task_restore_hook(L);
  uint64_t began = e ? atomic_load_explicit(&e->resume_started, memory_order_relaxed) : 0;
  if (!began || task_live_count(e) <= 1) return; /* it ended, or nothing waited */
  double held = (double)(uv_hrtime() - began) / 1e9;
  lua_Debug where;
  char place[256] = "the flow";
  for (int level = 0; lua_getstack(L, level, &where); level++) {
    lua_getinfo(L, "Sl", &where);
    if (where.currentline > 0) {
      snprintf(place, sizeof place, "%s:%d", where.short_src, where.currentline);
      break;
    }
  }
  log_msg(e, LOG_WARN,
          "the flow held the loop for %.1f s near %s while %ld other task(s) waited: a blocking call "
          "(io.popen, a C module, a long loop) stops every wait; use flow.exec or flow.sh for "
          "commands (docs/api.md)",
          held, place, task_live_count(e) - 1);
}

static void on_hold_signal(int sig) {
  (void)sig;
  engine *e = watched;
  lua_State *L = e ? e->running : NULL;
  if (L) lua_sethook(L, hold_hook, LUA_MASKCOUNT, 1);
}

static void *watch(void *arg) {
  (void)arg;
  pthread_mutex_lock(&lock);
  while (atomic_load(&running_watch)) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += LOOK_EVERY_NS;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&wake, &lock, &until);
    engine *e = watched;
    uint64_t began = e ? atomic_load_explicit(&e->resume_started, memory_order_relaxed) : 0;
    if (began && uv_hrtime() - began > HOLD_LIMIT_NS && atomic_load(&warned_resume) != began) {
      atomic_store(&warned_resume, began);
      pthread_kill(loop_thread, SIGURG);
    }
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

int watchdog_start(engine *e) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_hold_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGURG, &sa, NULL);
  watched = e;
  loop_thread = pthread_self();
  atomic_store(&running_watch, true);
  /* the watcher takes no signal: they are the loop thread's */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&watcher, NULL, watch, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) atomic_store(&running_watch, false);
  return rc;
}

void watchdog_stop(void) {
  if (!atomic_load(&running_watch)) return;
  pthread_mutex_lock(&lock);
  atomic_store(&running_watch, false);
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&lock);
  pthread_join(watcher, NULL);
  signal(SIGURG, SIG_IGN);
  watched = NULL;
}
