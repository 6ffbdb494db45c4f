/* engine.h: the state every layer of the engine shares (one Lua state, one
 * libuv loop, the run queue, why the run is stopping) and the lists through
 * which higher layers attach to it: hooks for front ends (REPL, progress
 * view) and cleanups for bindings (the HTTP glue). Files below the front
 * ends call these lists; they never name who is on them. The lifetime
 * (start, run, shut down) is lifetime.h's. */
#ifndef ENGINE_H
#define ENGINE_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

#define ENGINE_VERSION "0.1.0"
#define EXIT_USAGE 2 /* a bad command line, or the flow's own usage error */

typedef struct engine engine;
typedef struct task task;
typedef struct output_observer output_observer;

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_QUIET };

/* What a front end may attach to (engine_hooks_add); several may. Every
 * function is optional; data is passed back unchanged. */
typedef struct engine_hooks {
  void *data;
  /* a task was spawned by parent (NULL: by the host) */
  void (*spawned)(void *data, task *parent, task *child);
  /* a watched task finished (see task_watch); its handle is on top of L,
   * where each hook leaves it */
  void (*finished)(void *data, lua_State *L, task *t);
  /* may SIGINT interrupt t while it runs Lua code? (yes unless one says no) */
  bool (*interruptible)(void *data, task *t);
  /* SIGINT/SIGTERM arrived; true when this front end handled it */
  bool (*interrupted)(void *data, int signal);
  struct engine_hooks *next;
} engine_hooks;

/* Work a binding leaves for the engine's shutdown (engine_at_shutdown):
 * run once, after every task finished, before the loop's handles close. */
typedef struct engine_cleanup {
  void (*run)(void *data);
  void *data;
  struct engine_cleanup *next;
} engine_cleanup;

/* How long the loop's turns held it (loop_watch.c). */
typedef struct loop_watch {
  uv_prepare_t prepare;
  uint64_t turn_began, idle_began; /* uv_hrtime() and idle time at the last prepare */
  uint64_t store_ns;               /* the journal's store, this turn so far */
  uint64_t longest_turn_ns, longest_store_ns;
} loop_watch;

/* Why every task is being stopped, if it is. */
enum engine_stop { STOP_NONE, STOP_SIGNAL, STOP_EXIT };

struct engine {
  lua_State *L;
  uv_loop_t loop;
  uv_idle_t runner;  /* active only while the run queue is non-empty */
  loop_watch watch;
  task *ready_head, *ready_tail;
  task *live;        /* every task not yet finished */
  task *unobserved;  /* failed tasks whose error nobody has taken yet */
  long next_task_id;
  long live_count;
  task *main_task;   /* its failure cancels every other task */
  /* the thread running Lua code now, where the signal handler arms its hook */
  lua_State *volatile running;
  _Atomic uint64_t resume_started; /* uv_hrtime() the running resume began; 0: none (watchdog.c) */
  volatile sig_atomic_t caught_signal; /* set by the handler; 0: none */
  enum log_level log_level;
  bool log_json; /* --log-format=json: a JSON object per line */
  struct log_kept *log_kept; /* lines kept for the journal (log.c), or NULL */
  enum engine_stop stop;
  int interrupt_signal; /* with STOP_SIGNAL: SIGINT or SIGTERM */
  int exit_code;        /* with STOP_EXIT: os.exit's code */
  bool exit_close;      /* with STOP_EXIT: close the running task's <close> */
  bool finishing;       /* flow.on_finish handlers run: they may still wait */
  double stop_budget;   /* ENGINE_STOP_TIMEOUT: seconds from a stop to the exit */
  uint64_t stop_began;  /* loop time (ms) the stop began; 0: not stopping */
  uv_timer_t stop_timer; /* ends the process when the stop budget is spent */
  void (*stopping)(engine *e); /* the lifetime's: arms stop_timer */
  bool no_summary;      /* a front end (the REPL) reports outcomes itself */
  const char *summary_path; /* --summary-json FILE */
  const char *metrics_path; /* --metrics FILE */
  engine_hooks *hooks;        /* front ends attached */
  engine_cleanup *cleanups;   /* bindings' shutdown work, latest first */
  output_observer *observers; /* see output.h */
};

void engine_hooks_add(engine *e, engine_hooks *h);
void engine_hooks_remove(engine *e, engine_hooks *h);
/* Each hook of that kind, in turn (see engine_hooks). */
void engine_tell_spawned(engine *e, task *parent, task *child);
void engine_tell_finished(engine *e, lua_State *L, task *t);
bool engine_interruptible(engine *e, task *t);
bool engine_tell_interrupted(engine *e, int signal);

void engine_at_shutdown(engine *e, engine_cleanup *c);
/* A stop (a signal, os.exit) began: its budget starts now (once). */
void engine_begin_stop(engine *e);
void engine_run_cleanups(engine *e); /* each once, latest first */

/* "interrupted by SIGINT": the one wording of an interrupt, for error
 * objects, log lines and the last line on stderr. */
const char *engine_interrupted_by(int signal);

/* A uv_close callback for a handle that lives inside the malloc'd block
 * its data points at: frees the block. */
void engine_free_handle_data(uv_handle_t *h);

#endif
