/* exec.c: child processes for tasks (flow.exec). The child runs in its own
 * process group, under a supervisor (supervise.c) that stops the group if
 * the engine dies; its stdout and stderr stream to the log
 * line by line, prefixed with the step name, and are captured up to a bound
 * (the tail is kept: that is where errors are). A timeout or a cancelled
 * task terminates the whole group (SIGTERM, then SIGKILL after a grace
 * period); the operation keeps its handles until the child is reaped. */
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "bindings.h"
#include "errors.h"
#include "log.h"
#include "options.h"
#include "secrets.h"
#include "task.h"

#define DEFAULT_CAPTURE (1024 * 1024) /* bytes of each stream kept */
#define KILL_GRACE_MS 5000            /* SIGTERM, then SIGKILL after this */
#define LOG_LINE_MAX 2048             /* one logged line of output */

extern char **environ;

typedef struct exec_op exec_op;

typedef struct {
  uv_pipe_t pipe;
  exec_op *x;
  bool is_stderr;
  bool open;
  char *line; /* partial line not yet logged */
  size_t line_len;
  char *capture; /* the last `capacity` bytes of output */
  size_t len, dropped;
} stream;

struct exec_op {
  op base;
  engine *eng;
  uv_process_t process;
  uv_timer_t timer; /* timeout, then the SIGKILL grace period */
  uv_pipe_t in;
  uv_write_t write_req;
  stream out, err;
  char *input;
  size_t capacity;
  int handles; /* open libuv handles; freed when the last one closes */
  bool exited, timed_out, orphaned, killing, in_open;
  bool inherit_stdio; /* the child writes to the engine's own stdout and stderr */
  int64_t code;
  int signal;
  char *name;    /* the log lines' prefix */
  char *command; /* redacted, for messages and the result */
  /* JSON log fields of each stream's lines: the stream, then the context of
   * the code that started the child (flow, run, step); NULL as text */
  char *fields[2];
};

static void maybe_complete(exec_op *x);

static void op_free(exec_op *x) {
  free(x->name);
  free(x->command);
  free(x->fields[0]);
  free(x->fields[1]);
  free(x->out.line);
  free(x->err.line);
  free(x->out.capture);
  free(x->err.capture);
  free(x->input);
  free(x);
}

static void handle_closed(uv_handle_t *h) {
  exec_op *x = h->data;
  if (--x->handles == 0) op_free(x);
}

static void close_handle(exec_op *x, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = x; /* pipes carried their stream until now */
  uv_close(h, handle_closed);
}

/* One line of the child's output to the log, which escapes and redacts;
 * in the JSON format it carries the stream and the context of the code
 * that started the child (flow, run, step). */
static void log_line(exec_op *x, bool is_stderr, const char *text, size_t len) {
  log_msg_with(x->eng, is_stderr ? LOG_WARN : LOG_INFO, x->fields[is_stderr], "[%s] %.*s", x->name,
               (int)len, text);
}

/* The JSON fields of a stream's lines: ",\"stream\":\"NAME\"" and the
 * context; NULL as text, or without memory. */
static char *stream_fields(const char *context, const char *name) {
  if (!context) return NULL;
  size_t n = strlen(context) + strlen(name) + 16;
  char *fields = malloc(n);
  if (fields) snprintf(fields, n, ",\"stream\":\"%s\"%s", name, context);
  return fields;
}

static void keep(stream *s, const char *data, size_t n) {
  size_t cap = s->x->capacity;
  if (n >= cap) { /* only the tail of this chunk fits */
    s->dropped += s->len + (n - cap);
    memcpy(s->capture, data + (n - cap), cap);
    s->len = cap;
    return;
  }
  if (s->len + n > cap) {
    size_t drop = s->len + n - cap;
    memmove(s->capture, s->capture + drop, s->len - drop);
    s->len -= drop;
    s->dropped += drop;
  }
  memcpy(s->capture + s->len, data, n);
  s->len += n;
}

static void emit_lines(stream *s, const char *data, size_t n, bool flush) {
  for (size_t i = 0; i < n; i++) {
    if (data[i] == '\n') {
      log_line(s->x, s->is_stderr, s->line, s->line_len);
      s->line_len = 0;
    } else if (s->line_len < LOG_LINE_MAX - 1) {
      s->line[s->line_len++] = data[i];
    }
  }
  if (flush && s->line_len) {
    log_line(s->x, s->is_stderr, s->line, s->line_len);
    s->line_len = 0;
  }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf) {
  stream *s = h->data;
  if (n > 0) {
    keep(s, buf->base, (size_t)n);
    if (!s->x->orphaned) emit_lines(s, buf->base, (size_t)n, false);
  }
  free(buf->base);
  if (n < 0) {
    if (!s->x->orphaned) emit_lines(s, NULL, 0, true);
    s->open = false;
    uv_read_stop(h);
    maybe_complete(s->x);
  }
}

static void kill_group(exec_op *x, int sig) {
  if (!x->exited && x->process.pid > 0) {
    uv_kill(-x->process.pid, sig);
  }
}

static void on_grace_over(uv_timer_t *t) {
  kill_group(t->data, SIGKILL);
}

/* SIGTERM to the whole group now, SIGKILL if it lingers. */
static void terminate(exec_op *x) {
  if (x->killing) return;
  x->killing = true;
  kill_group(x, SIGTERM);
  uv_timer_stop(&x->timer);
  uv_timer_start(&x->timer, on_grace_over, KILL_GRACE_MS, 0);
}

static void on_timeout(uv_timer_t *t) {
  exec_op *x = t->data;
  x->timed_out = true;
  terminate(x);
}

static void on_exit_cb(uv_process_t *p, int64_t code, int sig) {
  exec_op *x = p->data;
  x->exited = true;
  x->code = code;
  x->signal = sig;
  maybe_complete(x);
}

/* The captured output handed to Lua, with known secrets hidden. */
static void push_capture(lua_State *T, stream *s) {
  size_t len;
  char *safe = secrets_scrub(s->capture, s->len, &len);
  if (s->dropped) lua_pushfstring(T, "[... %d bytes dropped ...]\n", (int)s->dropped);
  lua_pushlstring(T, safe ? safe : "", safe ? len : 0);
  if (s->dropped) lua_concat(T, 2);
  free(safe);
}

static void release(exec_op *x) {
  close_handle(x, (uv_handle_t *)&x->timer);
  close_handle(x, (uv_handle_t *)&x->process);
  if (!x->inherit_stdio) {
    close_handle(x, (uv_handle_t *)&x->out.pipe);
    close_handle(x, (uv_handle_t *)&x->err.pipe);
  }
  if (x->in_open) close_handle(x, (uv_handle_t *)&x->in);
}

/* The child has exited and both streams are drained: hand the outcome to
 * the task, or just free everything when nobody waits any more. */
static void maybe_complete(exec_op *x) {
  if (!x->exited || x->out.open || x->err.open) return;
  if (x->orphaned) {
    release(x);
    return;
  }
  task *t = x->base.owner;
  lua_State *T = task_wake_begin(t);
  lua_pushboolean(T, 1);
  lua_createtable(T, 0, 6);
  lua_pushinteger(T, x->code);
  lua_setfield(T, -2, "code");
  if (x->signal) {
    lua_pushinteger(T, x->signal);
    lua_setfield(T, -2, "signal");
  }
  push_capture(T, &x->out);
  lua_setfield(T, -2, "stdout");
  push_capture(T, &x->err);
  lua_setfield(T, -2, "stderr");
  lua_pushboolean(T, x->timed_out);
  lua_setfield(T, -2, "timed_out");
  lua_pushstring(T, x->command);
  lua_setfield(T, -2, "command");
  release(x);
  task_wake(t, 2);
}

/* Cancelled task: stop the child; the op frees itself once it is reaped. */
static void exec_cancel(op *o) {
  exec_op *x = (exec_op *)o;
  x->orphaned = true;
  terminate(x);
  if (x->exited && !x->out.open && !x->err.open) release(x);
}

static void on_written(uv_write_t *req, int status) {
  exec_op *x = req->data;
  (void)status;
  close_handle(x, (uv_handle_t *)&x->in);
  x->in_open = false;
}

/* The child's environment: ours (none when inherit is false) with the
 * overrides of the table at idx (a false value removes a variable). Pushes
 * a userdata owning it. */
static char **build_env(lua_State *L, int idx, bool inherit) {
  static char *const nothing[] = {NULL};
  char *const *base = inherit ? environ : nothing;
  size_t n = 0;
  while (base[n]) n++;
  size_t extra = 0;
  if (idx) lua_pushnil(L);
  while (idx && lua_next(L, idx)) {
    extra++;
    lua_pop(L, 1);
  }
  char **env = lua_newuserdatauv(L, (n + extra + 1) * sizeof *env, 0);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *eq = strchr(base[i], '=');
    size_t name_len = eq ? (size_t)(eq - base[i]) : strlen(base[i]);
    bool overridden = false;
    if (idx) {
      lua_pushlstring(L, base[i], name_len);
      overridden = lua_rawget(L, idx) != LUA_TNIL;
      lua_pop(L, 1);
    }
    if (!overridden) env[k++] = base[i];
  }
  if (idx) lua_pushnil(L);
  while (idx && lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "flow.exec: env keys must be variable names");
    if (lua_toboolean(L, -1)) {
      if (!lua_isstring(L, -1)) luaL_error(L, "flow.exec: env values must be strings");
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -2), lua_tostring(L, -1));
      env[k++] = (char *)lua_tostring(L, -1);
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, env[k - 1]); /* keep the string alive */
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  env[k] = NULL;
  return env;
}

static void forget_env(lua_State *L, char **env) {
  for (size_t i = 0; env[i]; i++) {
    lua_pushnil(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, env[i]);
  }
}

static const char *const exec_fields[] = {"env", "inherit_env", "cwd", "timeout", "stdin",
                                          "check", "name", "max_output", "stdio", NULL};

/* What a command asks for; its strings live in the options table (1) and
 * in the userdata parse_command leaves on the stack. */
typedef struct {
  char **args;
  const char *command; /* as given, before redaction */
  const char *cwd, *input, *name;
  size_t input_len;
  double timeout;
  lua_Integer capacity;
  int env_index; /* the env table's stack index, or 0 */
  bool inherit_env; /* start from our environment (true by default) */
  bool inherit_stdio; /* stdio = "inherit": nothing captured or logged */
} command_spec;

/* Reads {cmd, arg..., options} at 1 into spec; raises on misuse. */
static void parse_command(lua_State *L, command_spec *spec) {
  options_check(L, 1, "flow.exec", exec_fields, true);
  lua_Integer argc = luaL_len(L, 1);
  if (argc < 1 || lua_geti(L, 1, 1) != LUA_TSTRING)
    luaL_error(L, "flow.exec: expected {\"command\", \"arg\", ...} with the command first");
  lua_pop(L, 1);
  spec->args = lua_newuserdatauv(L, ((size_t)argc + 1) * sizeof *spec->args, 0);
  for (lua_Integer i = 1; i <= argc; i++) {
    if (lua_geti(L, 1, i) != LUA_TSTRING)
      luaL_error(L, "flow.exec: argument %d must be a string", (int)i);
    spec->args[i - 1] = (char *)lua_tostring(L, -1); /* table 1 keeps it alive */
    lua_pop(L, 1);
  }
  spec->args[argc] = NULL;
  luaL_Buffer b; /* the command line, left on the stack */
  luaL_buffinit(L, &b);
  for (lua_Integer i = 0; i < argc; i++) {
    if (i) luaL_addchar(&b, ' ');
    luaL_addstring(&b, spec->args[i]);
  }
  luaL_pushresult(&b);
  spec->command = lua_tostring(L, -1);
  lua_getfield(L, 1, "cwd");
  spec->cwd = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "timeout");
  spec->timeout = luaL_optnumber(L, -1, 0);
  if (!isfinite(spec->timeout) || spec->timeout < 0)
    luaL_error(L, "flow.exec: timeout must be a number of seconds > 0");
  lua_getfield(L, 1, "stdin");
  spec->input_len = 0;
  spec->input = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, &spec->input_len);
  lua_getfield(L, 1, "name");
  spec->name = luaL_optstring(L, -1, NULL);
  lua_getfield(L, 1, "max_output");
  spec->capacity = luaL_optinteger(L, -1, DEFAULT_CAPTURE);
  if (spec->capacity < 1) luaL_error(L, "flow.exec: max_output must be bytes >= 1");
  lua_getfield(L, 1, "inherit_env");
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
    luaL_error(L, "flow.exec: inherit_env must be true or false, got a %s", luaL_typename(L, -1));
  spec->inherit_env = lua_isnil(L, -1) || lua_toboolean(L, -1);
  lua_getfield(L, 1, "stdio");
  if (!lua_isnil(L, -1) && (!lua_isstring(L, -1) || strcmp(lua_tostring(L, -1), "inherit") != 0))
    luaL_error(L, "flow.exec: stdio must be \"inherit\" (the child writes to the engine's own "
                  "stdout and stderr), or left out");
  spec->inherit_stdio = !lua_isnil(L, -1);
  if (spec->inherit_stdio && spec->input)
    luaL_error(L, "flow.exec: stdio = \"inherit\" and stdin exclude each other");
  spec->env_index = 0;
  if (lua_getfield(L, 1, "env") != LUA_TNIL) {
    luaL_argexpected(L, lua_istable(L, -1), 1, "env as a table");
    spec->env_index = lua_gettop(L);
  }
}

/* Whether execvp would find cmd: a path (relative to cwd) that is
 * executable, or a name on PATH. With a PATH of the child's own (env), the
 * supervisor finds out instead. */
static bool command_found(const char *cmd, const char *cwd, bool own_path) {
  char path[PATH_MAX];
  if (strchr(cmd, '/')) {
    if (cmd[0] != '/' && cwd) {
      snprintf(path, sizeof path, "%s/%s", cwd, cmd);
      cmd = path;
    }
    return access(cmd, X_OK) == 0;
  }
  const char *dirs = getenv("PATH");
  if (own_path || !dirs) return true;
  while (*dirs) {
    size_t n = strcspn(dirs, ":");
    if (snprintf(path, sizeof path, "%.*s/%s", (int)n, n ? dirs : ".", cmd) < (int)sizeof path &&
        access(path, X_OK) == 0)
      return true;
    dirs += n + (dirs[n] == ':');
  }
  return false;
}

/* Raises the "exec" error object on top, located in the flow. */
static int raise_exec(lua_State *L) {
  error_locate(L, -1);
  return lua_error(L);
}

static int spawn_failed(lua_State *L, const char *cmd, int rc) {
  error_push(L, "exec", "flow.exec: cannot run %s: %s%s", cmd, uv_strerror(rc),
             rc == UV_ENOENT ? " (is it installed and on PATH?)" : "");
  return raise_exec(L);
}

/* Raises when the command cannot be found (before anything is started). */
static void check_found(lua_State *L, const command_spec *spec) {
  bool own_path = !spec->inherit_env;
  if (spec->env_index) {
    own_path = lua_getfield(L, spec->env_index, "PATH") != LUA_TNIL;
    lua_pop(L, 1);
  }
  if (!command_found(spec->args[0], spec->cwd, own_path))
    spawn_failed(L, spec->args[0], UV_ENOENT);
}

/* The child runs under `engine --supervise`, which leads its process group
 * and stops the group if the engine dies (supervise.c): the argument list
 * for that, in a userdata left on the stack (with the binary's path). */
static char **supervised_args(lua_State *L, const command_spec *spec) {
  size_t argc = 0;
  while (spec->args[argc]) argc++;
  char **argv = lua_newuserdatauv(L, (argc + 3) * sizeof *argv + PATH_MAX, 0);
  char *self = (char *)(argv + argc + 3);
  size_t self_len = PATH_MAX;
  if (uv_exepath(self, &self_len) != 0) {
    error_push(L, "exec", "flow.exec: cannot find the engine binary");
    raise_exec(L);
  }
  argv[0] = self;
  argv[1] = "--supervise";
  memcpy(argv + 2, spec->args, (argc + 1) * sizeof *argv);
  return argv;
}

/* An op for spec, before anything is started; raises without memory. */
static exec_op *op_new(lua_State *L, engine *e, const command_spec *spec) {
  exec_op *x = calloc(1, sizeof *x);
  if (!x) luaL_error(L, "out of memory");
  x->eng = e;
  x->base.cancel = exec_cancel;
  x->capacity = (size_t)spec->capacity;
  x->out.capture = malloc(x->capacity);
  x->err.capture = malloc(x->capacity);
  x->out.line = malloc(LOG_LINE_MAX);
  x->err.line = malloc(LOG_LINE_MAX);
  if (spec->input && (x->input = malloc(spec->input_len ? spec->input_len : 1)))
    memcpy(x->input, spec->input, spec->input_len);
  x->command = secrets_scrub(spec->command, strlen(spec->command), NULL);
  const char *base = strrchr(spec->args[0], '/');
  x->name = strdup(spec->name ? spec->name : (base ? base + 1 : spec->args[0]));
  char *context = log_context_fields(L, e, "command", x->name);
  x->fields[0] = stream_fields(context, "stdout");
  x->fields[1] = stream_fields(context, "stderr");
  free(context);
  if (!x->out.capture || !x->err.capture || !x->out.line || !x->err.line ||
      (spec->input && !x->input) || !x->command || !x->name) {
    op_free(x);
    luaL_error(L, "out of memory");
  }
  x->out.x = x->err.x = x;
  x->err.is_stderr = true;
  x->inherit_stdio = spec->inherit_stdio;
  return x;
}

/* Starts the child with x's pipes (stdin only with input); a libuv error
 * code when it cannot, after which x is released. */
static int spawn_child(exec_op *x, char **argv, char **env, const char *cwd) {
  uv_loop_t *loop = &x->eng->loop;
  uv_timer_init(loop, &x->timer);
  x->handles = 1;
  x->timer.data = x;
  x->process.data = x;
  uv_stdio_container_t stdio[3] = {
      {.flags = UV_IGNORE},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&x->out.pipe},
      {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&x->err.pipe}};
  if (x->inherit_stdio) { /* as os.execute's child: the engine's own stdin, stdout, stderr */
    fflush(stdout); /* what the flow printed comes first */
    for (int fd = 0; fd < 3; fd++) stdio[fd] = (uv_stdio_container_t){.flags = UV_INHERIT_FD, .data.fd = fd};
  } else {
    uv_pipe_init(loop, &x->out.pipe, 0);
    uv_pipe_init(loop, &x->err.pipe, 0);
    x->handles += 2;
    x->out.pipe.data = &x->out;
    x->err.pipe.data = &x->err;
  }
  if (x->input) {
    uv_pipe_init(loop, &x->in, 0);
    x->in.data = x;
    x->handles++;
    x->in_open = true;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&x->in;
  }
  uv_process_options_t options = {
      .exit_cb = on_exit_cb, .file = argv[0], .args = argv, .env = env, .cwd = cwd,
      .flags = UV_PROCESS_DETACHED, /* its own process group, killed as one */
      .stdio_count = 3, .stdio = stdio};
  int rc = uv_spawn(loop, &x->process, &options);
  x->handles++; /* the process handle is closed too, spawned or not */
  if (rc != 0) {
    x->orphaned = true;
    x->exited = true;
    release(x);
  }
  return rc;
}

/* The child runs: read its output, feed its input, arm its timeout. */
static void start_io(exec_op *x, size_t input_len, double timeout) {
  if (!x->inherit_stdio) {
    x->out.open = x->err.open = true;
    uv_read_start((uv_stream_t *)&x->out.pipe, on_alloc, on_read);
    uv_read_start((uv_stream_t *)&x->err.pipe, on_alloc, on_read);
  }
  if (x->input) {
    uv_buf_t buf = uv_buf_init(x->input, (unsigned)input_len);
    x->write_req.data = x;
    uv_write(&x->write_req, (uv_stream_t *)&x->in, &buf, 1, on_written);
  }
  if (timeout > 0) uv_timer_start(&x->timer, on_timeout, (uint64_t)(timeout * 1000), 0);
}

/* run{cmd, arg..., env=, cwd=, timeout=, stdin=, name=, max_output=}
 * -> {code, signal, stdout, stderr, timed_out, command}. `check` is the Lua
 * wrapper's business. */
static int exec_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  command_spec spec;
  parse_command(L, &spec);
  task *t = task_require_waitable(L, "flow.exec");
  check_found(L, &spec);
  char **argv = supervised_args(L, &spec);
  /* built last: its strings are anchored until the spawn */
  char **env = spec.env_index || !spec.inherit_env
                   ? build_env(L, spec.env_index, spec.inherit_env) : NULL;
  exec_op *x = op_new(L, task_engine(t), &spec);
  int rc = spawn_child(x, argv, env, spec.cwd);
  if (env) forget_env(L, env);
  if (rc != 0) return spawn_failed(L, spec.args[0], rc);
  start_io(x, spec.input_len, spec.timeout);
  log_msg(x->eng, LOG_DEBUG, "[%s] started: %s (pid %d)", x->name, x->command, x->process.pid);
  lua_settop(L, 1);
  return task_wait_op(L, t, &x->base);
}

void exec_register(lua_State *L) {
  lua_pushcfunction(L, exec_run);
  lua_setfield(L, -2, "run");
}
