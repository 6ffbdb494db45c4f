/* engine.h: the shared types of the host: the engine (one Lua state, one
 * libuv loop, one curl multi), tasks (engine-owned coroutines) and the
 * pending operations a task can wait on. */
#ifndef ENGINE_H
#define ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include <lua.h>
#include <uv.h>

#define ENGINE_VERSION "0.1.0"

typedef struct engine engine;
typedef struct task task;
typedef struct op op;
typedef struct http_glue http_glue;
struct repl;
struct progress;

/* A pending operation: whatever a suspended task waits on. Exactly one
 * cleanup path exists for it: either the operation completes and calls
 * task_wake(), or the task is cancelled (or the engine shuts down) and
 * cancel() runs. cancel() releases the operation's resources; it never
 * touches the task's Lua state. */
struct op {
  void (*cancel)(op *o);
  task *owner;
};

enum task_state {
  TASK_NEW,     /* spawned, not yet resumed */
  TASK_READY,   /* in the run queue with resume values pushed */
  TASK_RUNNING, /* currently executing Lua code */
  TASK_WAITING, /* suspended on an op */
  TASK_DONE,    /* returned normally; results stay on its thread's stack */
  TASK_FAILED,  /* raised; the error value stays on its thread's stack */
};

/* A task lives inside its Lua handle userdata. While it has not finished,
 * the handle is anchored in the registry (ref) so Lua cannot collect it;
 * afterwards the handle lives as long as Lua code holds it. */
struct task {
  engine *eng;
  lua_State *thread;
  int ref;
  long id;
  enum task_state state;
  op *op;
  int nresume;           /* values pushed on thread for the next resume */
  int nresults;          /* results kept on a finished thread's stack */
  bool cancel_requested; /* deliver a cancel error at the next wait */
  bool ever_canceled;    /* a cancel was requested at some point */
  bool observed;         /* someone has taken its outcome */
  bool canceled;         /* finished because it was cancelled */
  bool interrupted;      /* has been handed the SIGINT/SIGTERM cancel */
  bool report;           /* started at the REPL prompt: report its end */
  bool in_unobserved;    /* linked in engine.unobserved */
  struct join_op *waiters;
  task *ready_next;
  task *live_prev, *live_next; /* in engine.live, later engine.unobserved */
};

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_QUIET };

struct engine {
  lua_State *L;
  uv_loop_t loop;
  uv_idle_t runner; /* active only while the run queue is non-empty */
  task *ready_head, *ready_tail;
  task *live;       /* every task not yet finished */
  task *unobserved; /* failed tasks whose error nobody has taken yet */
  long next_task_id;
  long live_count;
  http_glue *http;
  enum log_level log_level;
  int interrupt_signal; /* set once SIGINT/SIGTERM arrived */
  task *main_task;      /* its failure cancels every other task */
  struct repl *repl;    /* the interactive prompt, when running */
  const char *summary_path; /* --summary-json FILE */
  struct progress *progress; /* the live progress view, when shown */
};

/* engine.c */
int engine_init(engine *e, enum log_level level);
int engine_run(engine *e, int nargs); /* main function + args on e->L */
void engine_shutdown(engine *e);
engine *engine_from(lua_State *L);

/* task.c */
task *task_spawn(engine *e, lua_State *L, int nargs); /* fn + args on top */
task *task_current(lua_State *L);
task *task_require_waitable(lua_State *L, const char *what);
int task_wait_op(lua_State *L, task *t, op *o);
int task_yield(lua_State *L, task *t, op *o, lua_KFunction k);
/* Completing an op: T = task_wake_begin(t); push ok flag and values on T;
 * task_wake(t, count). An ok flag of false is followed by the error. */
lua_State *task_wake_begin(task *t);
void task_wake(task *t, int nvalues);
void task_runner_init(engine *e);
long task_live_count(engine *e);
void task_cancel(task *t);
void task_cancel_all(engine *e);
bool task_take_interrupt(task *t);
void task_abandon_all(engine *e);
int task_report_unobserved(engine *e);
void task_open(lua_State *L); /* handle metatable */
int task_join(lua_State *L);  /* handle[, timeout]: true when done */
int task_push_outcome(lua_State *L, task *t); /* results, or raises */
int task_await_nested(lua_State *L);
int task_adopt(lua_State *L);
task *task_check(lua_State *L, int idx);

/* errors.c */
void error_push(lua_State *L, const char *kind, const char *fmt, ...);
void error_open(lua_State *L);
int error_new_lua(lua_State *L);
int error_is_lua(lua_State *L);
void error_locate(lua_State *L, int idx);
bool error_is_kind(lua_State *L, int idx, const char *kind);

/* timer.c */
int timer_sleep(lua_State *L);

/* exec.c */
int exec_run(lua_State *L);

/* http.c */
void http_shutdown(engine *e);
int http_request(lua_State *L);

/* log.c */
void log_msg(engine *e, enum log_level level, const char *fmt, ...);
void log_open(lua_State *L, engine *e);

/* rules_lua.c: adds the pure rules to the table on top */
void rules_open(lua_State *L);

/* output.c */
void output_begin(engine *e);
void output_end(engine *e);
void output_guard_print(lua_State *L);
int progress_start(engine *e, const char *mode);
void progress_stop(engine *e);

/* repl.c */
int repl_start(lua_State *L);
void repl_output_begin(engine *e);
void repl_output_end(engine *e);
void repl_chunk_done(engine *e);
void repl_report(engine *e); /* the finished task's handle on e->L */
bool repl_is_foreground(engine *e, task *t);
void repl_interrupt(engine *e);
void repl_quit(engine *e, int code);
int repl_exit_code(engine *e);
bool repl_quitting(engine *e);
void repl_free(engine *e);

/* signals.c */
int signals_init(engine *e);
void signals_set_running(lua_State *thread);
void signals_close(void);
void signals_set_repl(bool on);

/* embedded_lua.c, generated by lua/embed.c: the Lua library as bytecode */
struct embedded_file {
  const char *name;
  const char *source;
  unsigned long size;
};
extern const struct embedded_file embedded_lua[];

#endif
