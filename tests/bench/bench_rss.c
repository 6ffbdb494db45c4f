/* bench_rss.c: runs a command and prints its peak RSS (KiB) on stderr as
 * "peak_rss_kb N". A process forked from the benchmark's Python would
 * report Python's memory as its own peak (Linux keeps the largest RSS
 * from before exec); forked from this small program it reports its own.
 * Usage: bench_rss CMD [ARGS...]; exits with CMD's status. */
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_rss CMD [ARGS...]\n");
    return 2;
  }
  pid_t pid = fork();
  if (pid == 0) {
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    _exit(127);
  }
  int status;
  struct rusage ru;
  if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) return 1;
  fprintf(stderr, "peak_rss_kb %ld\n", ru.ru_maxrss);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
