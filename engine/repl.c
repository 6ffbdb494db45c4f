/* repl.c: the interactive prompt. Each entered chunk runs as the
 * foreground task (lua/repl.lua holds the rules); background tasks keep
 * running while the user types; Ctrl-C cancels the running chunk or drops
 * the line being typed; Ctrl-D or os.exit() leaves.
 *
 * On a terminal, libedit's blocking el_gets runs in an input thread. Its
 * read-character hook releases a mutex only while it waits for a key, so
 * every libedit call happens under that mutex: the loop thread takes it to
 * write output above the prompt and redraw the line being typed. Lines,
 * completion requests and EOF reach the loop thread through a uv_async;
 * only the loop thread touches Lua. Piped input is read on the loop with a
 * uv_poll, without prompts or editing. */
#include <errno.h>
#include <locale.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include <histedit.h>
#include <lauxlib.h>

#include "engine.h"

struct repl {
  engine *eng;
  bool tty;
  bool continued; /* the next prompt continues a chunk */
  bool asked;     /* warned once that background tasks are running */
  bool quitting;
  int exit_code;
  int failures;
  task *fg;
  int module_ref; /* lua/repl.lua */

  /* terminal: the input thread and what it shares (under lock) */
  EditLine *el;
  History *hist;
  char history[1024];
  uv_thread_t thread;
  bool thread_started;
  uv_mutex_t lock;
  uv_cond_t cond;
  uv_async_t wake;
  int wake_pipe[2];
  bool want_line;  /* loop -> thread: read the next line */
  bool prompting;  /* el_gets is running: a prompt is on screen */
  bool discard;    /* Ctrl-C: drop the line being typed */
  bool stop;       /* thread must leave */
  bool line_ready; /* thread -> loop: line (NULL at EOF) */
  char *line;
  char *complete_word; /* thread -> loop: a completion request */
  char **matches;      /* loop -> thread: its answer */
  bool complete_done;
  char prompt[8];
  struct termios saved; /* the terminal's modes before the REPL */
  bool saved_ok;

  /* piped input */
  uv_poll_t input;
  bool polling, reading, eof;
  char *buf;
  size_t len, cap;
};

/* --- Lua side (loop thread only) ----------------------------------------- */

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

/* --- output above the prompt --------------------------------------------- */

void repl_output_begin(engine *e) {
  struct repl *r = e->repl;
  if (!r || !r->thread_started) return;
  uv_mutex_lock(&r->lock);
  if (r->prompting) {
    fputs("\r\033[K", stdout);
    fflush(stdout);
  }
}

void repl_output_end(engine *e) {
  struct repl *r = e->repl;
  if (!r || !r->thread_started) return;
  fflush(stdout);
  fflush(stderr);
  if (r->prompting) el_set(r->el, EL_REFRESH);
  uv_mutex_unlock(&r->lock);
}

/* --- the input thread ---------------------------------------------------- */

static char *prompt_of(EditLine *el) {
  struct repl *r;
  el_get(el, EL_CLIENTDATA, &r);
  return r->prompt;
}

/* libedit's read-character hook: waits for a byte without the lock, then
 * decodes one character under it. Returns 1, 0 at EOF or -1. */
static int read_char(EditLine *el, wchar_t *wc) {
  struct repl *r;
  el_get(el, EL_CLIENTDATA, &r);
  mbstate_t state;
  memset(&state, 0, sizeof state);
  for (;;) {
    uv_mutex_unlock(&r->lock);
    struct pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {r->wake_pipe[0], POLLIN, 0}};
    int n = poll(fds, 2, -1);
    char c = 0;
    ssize_t got = 0;
    if (n > 0 && (fds[1].revents & POLLIN)) {
      char drain[16];
      if (read(r->wake_pipe[0], drain, sizeof drain) < 0) { /* nothing to do */
      }
    } else if (n > 0) {
      got = read(STDIN_FILENO, &c, 1);
    }
    uv_mutex_lock(&r->lock);
    if (r->stop) return 0;
    if (r->discard || (got == 1 && c == 3)) { /* Ctrl-C: end this line */
      r->discard = true;
      *wc = L'\n';
      return 1;
    }
    if (got == 0 && n > 0 && !(fds[1].revents & POLLIN)) return 0;
    if (got < 0 && errno != EINTR && errno != EAGAIN) return -1;
    if (got != 1) continue;
    size_t k = mbrtowc(wc, &c, 1, &state);
    if (k == (size_t)-2) continue; /* more bytes of this character */
    if (k == (size_t)-1) {
      *wc = (unsigned char)c;
      memset(&state, 0, sizeof state);
    }
    return 1;
  }
}

/* Between lines (while a chunk runs, and before libedit, which draws the
 * prompt before it sets its own modes, reads again) keys wait as plain
 * bytes: no echo (libedit draws them once, later) and no line discipline
 * (a Ctrl-D is a key, not an end-of-file marker that the mode switch would
 * lose). Ctrl-C still raises SIGINT. The original modes come back when the
 * REPL ends. */
static void keys_wait(struct repl *r) {
  if (!r->saved_ok) return;
  struct termios quiet = r->saved;
  quiet.c_lflag &= ~(tcflag_t)(ECHO | ICANON);
  quiet.c_cc[VMIN] = 1;
  quiet.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
}

static void input_main(void *arg) {
  struct repl *r = arg;
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* signals go to the loop thread */
  uv_mutex_lock(&r->lock);
  for (;;) {
    while (!r->want_line && !r->stop) uv_cond_wait(&r->cond, &r->lock);
    if (r->stop) break;
    r->want_line = false;
    r->prompting = true;
    int count = 0;
    const char *s = el_gets(r->el, &count);
    keys_wait(r);
    r->prompting = false;
    if (r->stop) break;
    if (r->discard) {
      r->discard = false;
      r->line = strdup("");
    } else if (s && count > 0) {
      r->line = strndup(s, (size_t)count - (s[count - 1] == '\n'));
    } else {
      r->line = NULL; /* EOF */
    }
    r->line_ready = true;
    uv_async_send(&r->wake);
  }
  uv_mutex_unlock(&r->lock);
}

static size_t common_prefix(char **m) {
  size_t n = strlen(m[0]);
  for (int i = 1; m[i]; i++) {
    size_t k = 0;
    while (k < n && m[i][k] == m[0][k]) k++;
    n = k;
  }
  return n;
}

static void free_matches(char **m) {
  for (int i = 0; m && m[i]; i++) free(m[i]);
  free(m);
}

/* Tab, in the input thread: asks the loop thread for candidates. */
static unsigned char complete_key(EditLine *el, int ch) {
  (void)ch;
  struct repl *r;
  el_get(el, EL_CLIENTDATA, &r);
  const LineInfo *li = el_line(el);
  const char *start = li->cursor;
  while (start > li->buffer && (strchr("_.:", start[-1]) ||
                                (start[-1] >= 'a' && start[-1] <= 'z') ||
                                (start[-1] >= 'A' && start[-1] <= 'Z') ||
                                (start[-1] >= '0' && start[-1] <= '9')))
    start--;
  size_t word_len = (size_t)(li->cursor - start);
  r->complete_word = strndup(start, word_len);
  r->complete_done = false;
  uv_async_send(&r->wake);
  while (!r->complete_done && !r->stop) uv_cond_wait(&r->cond, &r->lock);
  char **m = r->matches;
  r->matches = NULL;
  if (!m || !m[0]) {
    free_matches(m);
    return CC_REFRESH_BEEP;
  }
  size_t prefix = common_prefix(m);
  unsigned char rc = CC_REFRESH;
  if (prefix > word_len) {
    char *rest = strndup(m[0] + word_len, prefix - word_len);
    if (rest) el_insertstr(el, rest);
    free(rest);
  } else if (m[1]) { /* nothing to add: list the candidates */
    fputs("\n", stdout);
    for (int i = 0; m[i]; i++) printf("%s%s", m[i], m[i + 1] ? "  " : "\n");
    rc = CC_REDISPLAY;
  }
  free_matches(m);
  return rc;
}

static void ask_line(struct repl *r) {
  snprintf(r->prompt, sizeof r->prompt, "%s", r->continued ? ">> " : "> ");
  uv_mutex_lock(&r->lock);
  r->want_line = true;
  uv_cond_signal(&r->cond);
  uv_mutex_unlock(&r->lock);
}

/* --- chunks ------------------------------------------------------------- */

static void run_chunk(struct repl *r) {
  lua_State *L = r->eng->L; /* stack: fn */
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->module_ref);
  lua_getfield(L, -1, "eval");
  lua_remove(L, -2);
  lua_insert(L, -2);
  r->fg = task_spawn(r->eng, L, 1);
  lua_pop(L, 1);
}

static void remember(struct repl *r, const char *text) {
  if (!r->hist) return;
  HistEvent ev;
  uv_mutex_lock(&r->lock);
  history(r->hist, &ev, H_ENTER, text);
  if (r->history[0]) history(r->hist, &ev, H_SAVE, r->history);
  uv_mutex_unlock(&r->lock);
}

/* One line of input; starts a chunk when it completes one. */
static void handle_line(struct repl *r, const char *line) {
  lua_State *L = r->eng->L;
  lua_pushstring(L, line);
  if (call_repl(r, "feed", 1, 3) != LUA_OK) return;
  const char *action = lua_tostring(L, -3);
  r->continued = strcmp(action, "incomplete") == 0;
  if (strcmp(action, "error") == 0) {
    repl_output_begin(r->eng);
    fprintf(stderr, "%s\n", lua_tostring(L, -2));
    repl_output_end(r->eng);
    r->failures++;
  } else if (strcmp(action, "run") == 0) {
    remember(r, lua_tostring(L, -1));
    lua_pushvalue(L, -2);
    lua_replace(L, -4);
    lua_pop(L, 2);
    run_chunk(r);
    return;
  }
  lua_pop(L, 3);
}

static void stop_input(struct repl *r) {
  if (r->thread_started) {
    uv_mutex_lock(&r->lock);
    r->stop = true;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->lock);
    if (write(r->wake_pipe[1], "x", 1) < 0) { /* the thread also sees stop */
    }
    uv_thread_join(&r->thread);
    r->thread_started = false;
    el_end(r->el);
    if (r->saved_ok) tcsetattr(STDIN_FILENO, TCSANOW, &r->saved);
    r->el = NULL;
    uv_close((uv_handle_t *)&r->wake, NULL);
  }
  if (r->reading) uv_poll_stop(&r->input);
  r->reading = false;
  if (r->polling) uv_close((uv_handle_t *)&r->input, NULL);
  r->polling = false;
}

static void quit(struct repl *r, int code) {
  if (r->quitting) return;
  r->quitting = true;
  r->exit_code = code;
  stop_input(r);
  task_cancel_all(r->eng);
}

/* Ctrl-D at an empty prompt, or the end of piped input. */
static void handle_eof(struct repl *r) {
  long background = task_live_count(r->eng) - (r->fg ? 1 : 0);
  if (r->tty) {
    if (background > 0 && !r->asked) {
      r->asked = true;
      printf("\n%ld background task(s) still running: Ctrl-D again cancels them and leaves\n",
             background);
      ask_line(r);
      return;
    }
    printf("\n");
    quit(r, 0);
    return;
  }
  /* Piped input: background tasks finish as they would in a script. */
  r->eof = true;
  stop_input(r);
  if (r->continued) {
    fprintf(stderr, "engine: unexpected end of input in an unfinished statement\n");
    r->failures++;
  }
}

static void on_wake(uv_async_t *async) {
  struct repl *r = async->data;
  uv_mutex_lock(&r->lock);
  char *word = r->complete_word;
  r->complete_word = NULL;
  bool have_line = r->line_ready;
  char *line = r->line;
  r->line_ready = false;
  r->line = NULL;
  uv_mutex_unlock(&r->lock);

  if (word) {
    lua_State *L = r->eng->L;
    lua_pushstring(L, word);
    char **m = NULL;
    if (call_repl(r, "complete", 1, 1) == LUA_OK) {
      int n = (int)luaL_len(L, -1);
      m = calloc((size_t)n + 1, sizeof *m);
      for (int i = 0; m && i < n; i++) {
        lua_rawgeti(L, -1, i + 1);
        m[i] = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    free(word);
    uv_mutex_lock(&r->lock);
    r->matches = m;
    r->complete_done = true;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->lock);
  }
  if (!have_line || r->quitting) {
    free(line);
    return;
  }
  if (!line) {
    handle_eof(r);
  } else {
    handle_line(r, line);
    free(line);
    if (!r->fg && !r->quitting) ask_line(r);
  }
}

/* --- piped input --------------------------------------------------------- */

static void drain_buffer(struct repl *r) {
  while (!r->fg && !r->quitting) {
    char *nl = r->len ? memchr(r->buf, '\n', r->len) : NULL;
    if (!nl && !(r->eof && r->len)) break;
    size_t n = nl ? (size_t)(nl - r->buf) : r->len;
    char *line = strndup(r->buf, n);
    size_t used = nl ? n + 1 : n;
    memmove(r->buf, r->buf + used, r->len - used);
    r->len -= used;
    if (!line) break;
    handle_line(r, line);
    free(line);
  }
}

static bool buffer_read(struct repl *r) {
  if (r->cap - r->len < 4096) {
    size_t cap = r->cap ? r->cap * 2 : 8192;
    char *grown = realloc(r->buf, cap);
    if (!grown) return false;
    r->buf = grown;
    r->cap = cap;
  }
  ssize_t n = read(STDIN_FILENO, r->buf + r->len, r->cap - r->len);
  if (n > 0) r->len += (size_t)n;
  return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

static void on_readable(uv_poll_t *h, int status, int events) {
  struct repl *r = h->data;
  (void)events;
  bool more = status >= 0 && buffer_read(r);
  if (!more) r->eof = true;
  drain_buffer(r);
  if (r->eof && !r->fg) handle_eof(r);
}

static void read_piped(struct repl *r) {
  if (!r->fg && !r->eof && !r->quitting && r->polling && !r->reading) {
    uv_poll_start(&r->input, UV_READABLE, on_readable);
    r->reading = true;
  }
}

/* --- the scheduler and signals call these -------------------------------- */

void repl_chunk_done(engine *e) {
  struct repl *r = e->repl;
  r->fg = NULL;
  fflush(stdout);
  if (r->quitting) return;
  if (r->tty) {
    ask_line(r);
    return;
  }
  drain_buffer(r);
  if (r->fg) return;
  if (r->eof) handle_eof(r);
  else read_piped(r);
}

bool repl_is_foreground(engine *e, task *t) {
  return e->repl && e->repl->fg == t;
}

bool repl_quitting(engine *e) {
  return e->repl && e->repl->quitting;
}

void repl_report(engine *e) {
  call_repl(e->repl, "report", 1, 0);
}

/* SIGINT: cancel the running chunk, or drop the line being typed. */
void repl_interrupt(engine *e) {
  struct repl *r = e->repl;
  if (r->fg) {
    if (task_take_interrupt(r->fg)) task_cancel(r->fg);
    return;
  }
  if (!r->tty) {
    quit(r, 130);
    return;
  }
  call_repl(r, "reset", 0, 0);
  r->continued = false;
  uv_mutex_lock(&r->lock);
  r->discard = true;
  uv_mutex_unlock(&r->lock);
  if (write(r->wake_pipe[1], "x", 1) < 0) { /* the key path also works */
  }
}

void repl_quit(engine *e, int code) {
  quit(e->repl, code);
}

int repl_exit_code(engine *e) {
  struct repl *r = e->repl;
  if (r->quitting) return r->exit_code;
  return r->failures ? 1 : 0;
}

/* --- globals the REPL replaces ------------------------------------------- */

/* os.exit: leave cleanly (history saved, tasks cancelled, terminal
 * restored), asking once when background tasks are still running. */
static int repl_os_exit(lua_State *L) {
  engine *e = engine_from(L);
  struct repl *r = e->repl;
  int code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_optinteger(L, 1, 0);
  long others = task_live_count(e) - (task_current(L) ? 1 : 0);
  if (others > 0 && !r->asked) {
    r->asked = true;
    repl_output_begin(e);
    printf("%ld background task(s) still running: os.exit() again cancels them and leaves\n",
           others);
    repl_output_end(e);
    return 0;
  }
  quit(r, code);
  error_push(L, "canceled", "leaving the REPL");
  return lua_error(L);
}

static int help_fn(lua_State *L) {
  lua_settop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "engine.help");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "text");
  lua_pushvalue(L, 1);
  lua_call(L, 1, 1);
  lua_getglobal(L, "print");
  lua_insert(L, -2);
  lua_call(L, 1, 0);
  return 0;
}

/* --- start and end ------------------------------------------------------- */

static int start_terminal(struct repl *r) {
  setlocale(LC_CTYPE, "");
  r->saved_ok = tcgetattr(STDIN_FILENO, &r->saved) == 0;
  const char *path = getenv("ENGINE_HISTORY");
  const char *home = getenv("HOME");
  if (path && *path)
    snprintf(r->history, sizeof r->history, "%s", path);
  else if (home && *home)
    snprintf(r->history, sizeof r->history, "%s/.engine_history", home);
  if (pipe(r->wake_pipe) != 0) return -1;
  r->el = el_init("engine", stdin, stdout, stderr);
  r->hist = history_init();
  if (!r->el || !r->hist) return -1;
  HistEvent ev;
  history(r->hist, &ev, H_SETSIZE, 1000);
  history(r->hist, &ev, H_SETUNIQUE, 1);
  if (r->history[0]) history(r->hist, &ev, H_LOAD, r->history);
  el_set(r->el, EL_CLIENTDATA, r);
  el_set(r->el, EL_EDITOR, "emacs");
  el_set(r->el, EL_SIGNAL, 0);
  el_set(r->el, EL_PROMPT, prompt_of);
  el_set(r->el, EL_HIST, history, r->hist);
  el_set(r->el, EL_GETCFN, read_char);
  /* the narrow EL_ADDFN copies its strings and never frees them */
  el_wset(r->el, EL_ADDFN, L"engine-complete", L"complete a name", complete_key);
  el_set(r->el, EL_BIND, "^I", "engine-complete", NULL);
  el_set(r->el, EL_BIND, "^R", "em-inc-search-prev", NULL);
  uv_mutex_init(&r->lock);
  uv_cond_init(&r->cond);
  uv_async_init(&r->eng->loop, &r->wake, on_wake);
  r->wake.data = r;
  printf("engine %s (%s): help() lists the modules, Tab completes, Ctrl-D leaves\n",
         ENGINE_VERSION, LUA_RELEASE);
  fflush(stdout);
  if (uv_thread_create(&r->thread, input_main, r) != 0) return -1;
  r->thread_started = true;
  ask_line(r);
  return 0;
}

static void start_piped(struct repl *r) {
  if (uv_poll_init(&r->eng->loop, &r->input, STDIN_FILENO) == 0) {
    r->input.data = r;
    r->polling = true;
    read_piped(r);
    return;
  }
  while (buffer_read(r)) { /* a regular file or /dev/null never blocks long */
  }
  r->eof = true;
  drain_buffer(r);
  if (!r->fg) handle_eof(r);
}

/* core.repl_start(): runs as the last chunk of the main task. */
int repl_start(lua_State *L) {
  engine *e = engine_from(L);
  if (e->repl) return 0;
  struct repl *r = calloc(1, sizeof *r);
  if (!r) return luaL_error(L, "out of memory");
  r->eng = e;
  r->wake_pipe[0] = r->wake_pipe[1] = -1;
  r->tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "engine.repl");
  lua_call(L, 1, 1);
  r->module_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  e->repl = r;
  signals_set_repl(true);

  output_guard_print(L);
  lua_getglobal(L, "os");
  lua_pushcfunction(L, repl_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_pushcfunction(L, help_fn);
  lua_setglobal(L, "help");

  if (!r->tty) {
    start_piped(r);
  } else if (start_terminal(r) != 0) {
    return luaL_error(L, "cannot start the terminal prompt");
  }
  return 0;
}

void repl_free(engine *e) {
  struct repl *r = e->repl;
  if (!r) return;
  stop_input(r);
  if (r->hist) history_end(r->hist);
  if (r->wake_pipe[0] >= 0) {
    close(r->wake_pipe[0]);
    close(r->wake_pipe[1]);
    uv_mutex_destroy(&r->lock);
    uv_cond_destroy(&r->cond);
  }
  free_matches(r->matches);
  free(r->complete_word);
  free(r->line);
  free(r->buf);
  free(r);
  e->repl = NULL;
  signals_set_repl(false);
}
