/* supervise.c: `engine --supervise CMD ARG...`, the small process that
 * stands between the engine and each child of flow.exec. The engine starts
 * it as the leader of a new process group; it runs CMD in that group and
 * exits as CMD did (same code, or killed by the same signal). If the engine
 * dies, even by kill -9, the kernel tells it (PR_SET_PDEATHSIG) and it
 * stops the whole group (SIGTERM, then SIGKILL), so no child, nor anything
 * a child started, outlives the engine. No Lua, no libuv: plain POSIX. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frontend.h"

#define ORPHAN_GRACE_MS 2000
#define EXIT_CANNOT_RUN 127

static volatile sig_atomic_t orphaned;

static void on_parent_death(int sig) {
  (void)sig;
  orphaned = 1;
}

static void on_child(int sig) {
  (void)sig; /* only wakes sigsuspend */
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* The engine is gone: stop everything in our group, ourselves last. */
static void stop_group(pid_t child) {
  kill(-getpgrp(), SIGTERM);
  for (long waited = 0; waited < ORPHAN_GRACE_MS; waited += 50) {
    if (waitpid(child, NULL, WNOHANG) == child) break;
    sleep_ms(50);
  }
  signal(SIGKILL, SIG_DFL);
  kill(-getpgrp(), SIGKILL);
  _exit(128 + SIGKILL);
}

int supervise_main(int argc, char **argv) {
  if (argc < 1) {
    fprintf(stderr, "engine: --supervise needs a command\n");
    return EXIT_CANNOT_RUN;
  }
  pid_t engine_pid = getppid();
  /* SIGUSR1 (the engine died) and SIGCHLD arrive only inside sigsuspend,
   * so neither can slip in between a check and the wait. */
  sigset_t wake, during_wait;
  sigemptyset(&wake);
  sigaddset(&wake, SIGUSR1);
  sigaddset(&wake, SIGCHLD);
  sigprocmask(SIG_BLOCK, &wake, &during_wait);
  sigdelset(&during_wait, SIGUSR1);
  sigdelset(&during_wait, SIGCHLD);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_parent_death;
  sigaction(SIGUSR1, &sa, NULL);
  sa.sa_handler = on_child;
  sigaction(SIGCHLD, &sa, NULL);
  prctl(PR_SET_PDEATHSIG, SIGUSR1);
  /* The group gets the engine's SIGTERM; the child decides what it means,
   * and we relay its end. */
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  if (getppid() != engine_pid) orphaned = 1; /* died before prctl */

  int report[2];
  if (pipe(report) != 0 || fcntl(report[0], F_SETFD, FD_CLOEXEC) != 0 ||
      fcntl(report[1], F_SETFD, FD_CLOEXEC) != 0)
    return EXIT_CANNOT_RUN;
  pid_t child = fork();
  if (child < 0) return EXIT_CANNOT_RUN;
  if (child == 0) {
    close(report[0]);
    sigprocmask(SIG_SETMASK, &during_wait, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    execvp(argv[0], argv);
    int e = errno;
    if (write(report[1], &e, sizeof e) < 0) { /* the exit code says it too */
    }
    _exit(EXIT_CANNOT_RUN);
  }
  close(report[1]);
  int e = 0;
  if (read(report[0], &e, sizeof e) == (ssize_t)sizeof e)
    fprintf(stderr, "engine: cannot run %s: %s\n", argv[0], strerror(e));
  close(report[0]);

  int status;
  for (;;) {
    pid_t got = waitpid(child, &status, WNOHANG);
    if (got == child) break;
    if (got < 0 && errno != EINTR) return EXIT_CANNOT_RUN;
    if (orphaned) stop_group(child);
    sigsuspend(&during_wait);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  sigprocmask(SIG_UNBLOCK, &set, NULL);
  raise(sig);
  return 128 + sig;
}
