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
#include "rules.h"
#include "secrets.h"
#include "task.h"

#define DEFAULT_CAPTURE (1024 * 1024) /* bytes of each stream kept */
#define KILL_GRACE_MS 5000            /* SIGTERM, then SIGKILL after this */
#define LOG_LINE_MAX 2048             /* one logged line of output */
#define NAME_MAX_LEN 64
#define COMMAND_MAX 256

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
  int64_t code;
  int signal;
  double timeout;
  char name[NAME_MAX_LEN];
  char command[COMMAND_MAX]; /* redacted, for messages */
};

static void maybe_complete(exec_op *x);

static void handle_closed(uv_handle_t *h) {
  exec_op *x = h->data;
  if (--x->handles > 0) return;
  free(x->out.line);
  free(x->err.line);
  free(x->out.capture);
  free(x->err.capture);
  free(x->input);
  free(x);
}

static void close_handle(exec_op *x, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  h->data = x; /* pipes carried their stream until now */
  uv_close(h, handle_closed);
}

/* One line of the child's output to the log, which escapes and redacts. */
static void log_line(exec_op *x, bool is_stderr, const char *text, size_t len) {
  log_msg(x->eng, is_stderr ? LOG_WARN : LOG_INFO, "[%s] %.*s", x->name, (int)len, text);
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
  close_handle(x, (uv_handle_t *)&x->out.pipe);
  close_handle(x, (uv_handle_t *)&x->err.pipe);
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
                                          "check", "name", "max_output", NULL};

/* What a command asks for; its strings live in the options table (1) and
 * in the userdata parse_command leaves on the stack. */
typedef struct {
  char **args;
  char command[COMMAND_MAX]; /* as given, before redaction */
  const char *cwd, *input, *name;
  size_t input_len;
  double timeout;
  lua_Integer capacity;
  int env_index; /* the env table's stack index, or 0 */
  bool inherit_env; /* start from our environment (true by default) */
} command_spec;

/* Reads {cmd, arg..., options} at 1 into spec; raises on misuse. */
static void parse_command(lua_State *L, command_spec *spec) {
  options_check(L, 1, "flow.exec", exec_fields, true);
  lua_Integer argc = luaL_len(L, 1);
  if (argc < 1 || lua_geti(L, 1, 1) != LUA_TSTRING)
    luaL_error(L, "flow.exec: expected {\"command\", \"arg\", ...} with the command first");
  lua_pop(L, 1);
  spec->args = lua_newuserdatauv(L, ((size_t)argc + 1) * sizeof *spec->args, 0);
  spec->command[0] = '\0';
  for (lua_Integer i = 1; i <= argc; i++) {
    if (lua_geti(L, 1, i) != LUA_TSTRING)
      luaL_error(L, "flow.exec: argument %d must be a string", (int)i);
    spec->args[i - 1] = (char *)lua_tostring(L, -1); /* table 1 keeps it alive */
    lua_pop(L, 1);
    size_t used = strlen(spec->command);
    snprintf(spec->command + used, sizeof spec->command - used, "%s%s",
             i > 1 ? " " : "", spec->args[i - 1]);
  }
  spec->args[argc] = NULL;
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

static int cannot_run(lua_State *L, const char *cmd, int rc) {
  error_push(L, "exec", "flow.exec: cannot run %s: %s%s", cmd, uv_strerror(rc),
             rc == UV_ENOENT ? " (is it installed and on PATH?)" : "");
  error_locate(L, -1);
  return lua_error(L);
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
  engine *e = task_engine(t);
  bool own_path = !spec.inherit_env;
  if (spec.env_index) {
    own_path = lua_getfield(L, spec.env_index, "PATH") != LUA_TNIL;
    lua_pop(L, 1);
  }
  if (!command_found(spec.args[0], spec.cwd, own_path))
    return cannot_run(L, spec.args[0], UV_ENOENT);
  /* The child runs under `engine --supervise`, which leads its process
   * group and stops the group if the engine dies (supervise.c). */
  char self[PATH_MAX];
  size_t self_len = sizeof self;
  if (uv_exepath(self, &self_len) != 0) return luaL_error(L, "flow.exec: cannot find the engine binary");
  size_t argc = 0;
  while (spec.args[argc]) argc++;
  char **supervised = lua_newuserdatauv(L, (argc + 3) * sizeof *supervised, 0);
  supervised[0] = self;
  supervised[1] = "--supervise";
  memcpy(supervised + 2, spec.args, (argc + 1) * sizeof *supervised);
  /* built last: its strings are anchored until the spawn */
  char **env = spec.env_index || !spec.inherit_env
                   ? build_env(L, spec.env_index, spec.inherit_env) : NULL;
  char **args = spec.args;
  const char *input = spec.input, *name = spec.name, *cwd = spec.cwd;
  size_t input_len = spec.input_len;
  double timeout = spec.timeout;
  lua_Integer capacity = spec.capacity;

  exec_op *x = calloc(1, sizeof *x);
  if (!x) return luaL_error(L, "out of memory");
  x->eng = e;
  x->base.cancel = exec_cancel;
  x->capacity = (size_t)capacity;
  x->timeout = timeout;
  x->out.capture = malloc(x->capacity);
  x->err.capture = malloc(x->capacity);
  x->out.line = malloc(LOG_LINE_MAX);
  x->err.line = malloc(LOG_LINE_MAX);
  if (input) x->input = malloc(input_len ? input_len : 1);
  if (!x->out.capture || !x->err.capture || !x->out.line || !x->err.line ||
      (input && !x->input)) {
    free(x->out.capture), free(x->err.capture), free(x->out.line), free(x->err.line);
    free(x->input), free(x);
    return luaL_error(L, "out of memory");
  }
  if (input) memcpy(x->input, input, input_len);
  char *safe_command = secrets_scrub(spec.command, strlen(spec.command), NULL);
  snprintf(x->command, sizeof x->command, "%s", safe_command ? safe_command : "(command)");
  free(safe_command);
  const char *base = strrchr(args[0], '/');
  snprintf(x->name, sizeof x->name, "%s", name ? name : (base ? base + 1 : args[0]));
  x->out.x = x->err.x = x;
  x->err.is_stderr = true;

  uv_loop_t *loop = &e->loop;
  uv_pipe_init(loop, &x->out.pipe, 0);
  uv_pipe_init(loop, &x->err.pipe, 0);
  uv_timer_init(loop, &x->timer);
  x->handles = 3;
  x->out.pipe.data = &x->out;
  x->err.pipe.data = &x->err;
  x->timer.data = x;
  x->process.data = x;
  uv_stdio_container_t stdio[3];
  if (input) {
    uv_pipe_init(loop, &x->in, 0);
    x->in.data = x;
    x->handles++;
    x->in_open = true;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&x->in;
  } else {
    stdio[0].flags = UV_IGNORE;
  }
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&x->out.pipe;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&x->err.pipe;
  uv_process_options_t options = {
      .exit_cb = on_exit_cb, .file = self, .args = supervised, .env = env, .cwd = cwd,
      .flags = UV_PROCESS_DETACHED, /* its own process group, killed as one */
      .stdio_count = 3, .stdio = stdio};
  int rc = uv_spawn(loop, &x->process, &options);
  if (env) forget_env(L, env);
  if (rc != 0) {
    x->handles++; /* the process handle must be closed too */
    x->orphaned = true;
    x->exited = true;
    release(x);
    return cannot_run(L, args[0], rc);
  }
  x->handles++;
  x->out.open = x->err.open = true;
  uv_read_start((uv_stream_t *)&x->out.pipe, on_alloc, on_read);
  uv_read_start((uv_stream_t *)&x->err.pipe, on_alloc, on_read);
  if (input) {
    uv_buf_t buf = uv_buf_init(x->input, (unsigned)input_len);
    x->write_req.data = x;
    uv_write(&x->write_req, (uv_stream_t *)&x->in, &buf, 1, on_written);
  }
  if (timeout > 0) uv_timer_start(&x->timer, on_timeout, (uint64_t)(timeout * 1000), 0);
  log_msg(e, LOG_DEBUG, "[%s] started: %s (pid %d)", x->name, x->command, x->process.pid);
  lua_settop(L, 1);
  return task_wait_op(L, t, &x->base);
}

void exec_register(lua_State *L) {
  lua_pushcfunction(L, exec_run);
  lua_setfield(L, -2, "run");
}
