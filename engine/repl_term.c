/* repl_term.c: the REPL's terminal input. libedit's blocking el_gets runs
 * in an input thread. Its read-character hook releases a mutex only while
 * it waits for a key, so every libedit call happens under that mutex: the
 * loop thread takes it (as an output observer) to write above the prompt
 * and redraw the line being typed. Lines, completion requests and EOF
 * reach the loop thread through a uv_async; only the loop thread touches
 * Lua. */
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

#include <lauxlib.h>

#include "edit_api.h"
#include "output.h"
#include "repl.h"
#include "secrets.h"

#define HISTORY_SIZE 1000

typedef struct {
  EditLine *el;
  History *hist;
  char *history_path; /* NULL: no history file */
  uv_thread_t thread;
  bool thread_started;
  uv_mutex_t lock;
  uv_cond_t cond;
  uv_async_t wake;
  int wake_pipe[2];
  output_observer observer;
  /* shared with the input thread, under lock */
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
} term;

static term *term_of(struct repl *r) { return r->in; }

/* --- output above the prompt --------------------------------------------- */

static void term_output_begin(void *data) {
  term *t = data;
  uv_mutex_lock(&t->lock);
  if (t->prompting) {
    fputs("\r\033[K", stdout);
    fflush(stdout);
  }
}

static void term_output_end(void *data) {
  term *t = data;
  fflush(stdout);
  fflush(stderr);
  if (t->prompting) el_set(t->el, EL_REFRESH);
  uv_mutex_unlock(&t->lock);
}

/* --- the input thread ---------------------------------------------------- */

static char *prompt_of(EditLine *el) {
  term *r;
  el_get(el, EL_CLIENTDATA, &r);
  return r->prompt;
}

/* libedit's read-character hook: waits for a byte without the lock, then
 * decodes one character under it. Returns 1, 0 at EOF or -1. */
static int read_char(EditLine *el, wchar_t *wc) {
  term *r;
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
static void keys_wait(term *r) {
  if (!r->saved_ok) return;
  struct termios quiet = r->saved;
  quiet.c_lflag &= ~(tcflag_t)(ECHO | ICANON);
  quiet.c_cc[VMIN] = 1;
  quiet.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
}

static void input_main(void *arg) {
  term *r = arg;
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
  term *r;
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

static void ask_line(struct repl *repl) {
  term *r = term_of(repl);
  snprintf(r->prompt, sizeof r->prompt, "%s", repl->continued ? ">> " : "> ");
  uv_mutex_lock(&r->lock);
  r->want_line = true;
  uv_cond_signal(&r->cond);
  uv_mutex_unlock(&r->lock);
}


/* A run chunk goes to the history file with known secrets hidden. */
static void remember(struct repl *repl, const char *text) {
  term *r = term_of(repl);
  if (!r->hist) return;
  char *safe = secrets_scrub(text, strlen(text), NULL);
  if (!safe) return;
  HistEvent ev;
  uv_mutex_lock(&r->lock);
  history(r->hist, &ev, H_ENTER, safe);
  free(safe);
  if (r->history_path) history(r->hist, &ev, H_SAVE, r->history_path);
  uv_mutex_unlock(&r->lock);
}

static void stop_input(struct repl *repl) {
  term *r = term_of(repl);
  if (!r->thread_started) return;
  uv_mutex_lock(&r->lock);
  r->stop = true;
  uv_cond_broadcast(&r->cond);
  uv_mutex_unlock(&r->lock);
  if (write(r->wake_pipe[1], "x", 1) < 0) { /* the thread also sees stop */
  }
  uv_thread_join(&r->thread);
  r->thread_started = false;
  output_unobserve(repl->eng, &r->observer);
  el_end(r->el);
  if (r->saved_ok) tcsetattr(STDIN_FILENO, TCSANOW, &r->saved);
  r->el = NULL;
  uv_close((uv_handle_t *)&r->wake, NULL);
}

/* Ctrl-D at an empty prompt: leave, asking once while tasks run. */
static void handle_eof(struct repl *repl) {
  long background = repl_background(repl);
  if (background > 0 && !repl->asked) {
    repl->asked = true;
    printf("\n%ld background task(s) still running: Ctrl-D again cancels them and leaves\n",
           background);
    ask_line(repl);
    return;
  }
  printf("\n");
  repl_quit(repl, 0);
}

static void on_wake(uv_async_t *async) {
  struct repl *repl = async->data;
  term *r = term_of(repl);
  uv_mutex_lock(&r->lock);
  char *word = r->complete_word;
  r->complete_word = NULL;
  bool have_line = r->line_ready;
  char *line = r->line;
  r->line_ready = false;
  r->line = NULL;
  uv_mutex_unlock(&r->lock);

  if (word) {
    char **m = repl_complete(repl, word);
    free(word);
    uv_mutex_lock(&r->lock);
    r->matches = m;
    r->complete_done = true;
    uv_cond_broadcast(&r->cond);
    uv_mutex_unlock(&r->lock);
  }
  if (!have_line || repl->quitting) {
    free(line);
    return;
  }
  if (!line) {
    handle_eof(repl);
  } else {
    repl_line(repl, line, remember);
    free(line);
    if (!repl->fg && !repl->quitting) ask_line(repl);
  }
}

/* Ctrl-C at the prompt: drop the line being typed. */
static void interrupt(struct repl *repl) {
  term *r = term_of(repl);
  repl_reset(repl);
  uv_mutex_lock(&r->lock);
  r->discard = true;
  uv_mutex_unlock(&r->lock);
  if (write(r->wake_pipe[1], "x", 1) < 0) { /* the key path also works */
  }
}

static int start(struct repl *repl) {
  term *r = calloc(1, sizeof *r);
  if (!r) return -1;
  repl->in = r;
  r->wake_pipe[0] = r->wake_pipe[1] = -1;
  setlocale(LC_CTYPE, "");
  r->saved_ok = tcgetattr(STDIN_FILENO, &r->saved) == 0;
  const char *path = getenv("ENGINE_HISTORY");
  const char *home = getenv("HOME");
  if (path && *path) {
    if (!(r->history_path = strdup(path))) return -1;
  } else if (home && *home) {
    size_t len = strlen(home) + sizeof "/.engine_history";
    if (!(r->history_path = malloc(len))) return -1;
    snprintf(r->history_path, len, "%s/.engine_history", home);
  }
  char why[256];
  if (!edit_api_load(why, sizeof why)) {
    fprintf(stderr, "engine: the prompt needs line editing: %s\n", why);
    return -1;
  }
  if (pipe(r->wake_pipe) != 0) return -1;
  uv_mutex_init(&r->lock);
  uv_cond_init(&r->cond);
  r->el = el_init("engine", stdin, stdout, stderr);
  r->hist = history_init();
  if (!r->el || !r->hist) return -1;
  HistEvent ev;
  history(r->hist, &ev, H_SETSIZE, HISTORY_SIZE);
  history(r->hist, &ev, H_SETUNIQUE, 1);
  if (r->history_path) history(r->hist, &ev, H_LOAD, r->history_path);
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
  uv_async_init(&repl->eng->loop, &r->wake, on_wake);
  r->wake.data = repl;
  printf("engine %s (%s): help() lists the modules, Tab completes, Ctrl-D leaves\n",
         ENGINE_VERSION, LUA_RELEASE);
  fflush(stdout);
  if (uv_thread_create(&r->thread, input_main, r) != 0) return -1;
  r->thread_started = true;
  r->observer = (output_observer){
      .begin = term_output_begin, .end = term_output_end, .data = r};
  output_observe(repl->eng, &r->observer);
  ask_line(repl);
  return 0;
}

static void term_free(struct repl *repl) {
  term *r = term_of(repl);
  if (!r) return;
  stop_input(repl);
  if (r->hist) history_end(r->hist);
  if (r->wake_pipe[0] >= 0) {
    close(r->wake_pipe[0]);
    close(r->wake_pipe[1]);
    uv_mutex_destroy(&r->lock);
    uv_cond_destroy(&r->cond);
  }
  for (int i = 0; r->matches && r->matches[i]; i++) free(r->matches[i]);
  free(r->matches);
  free(r->complete_word);
  free(r->line);
  free(r->history_path);
  free(r);
  repl->in = NULL;
}

const repl_input repl_terminal = {start, ask_line, interrupt, stop_input, term_free};
