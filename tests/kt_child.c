/* kt_child.c — kt_child (kt_child.h). */
#include "kt_child.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child: env applied, then this executable with args. Never returns. */
static void become_child(const char *const *args, const char *const *env) {
  for (size_t i = 0; env && env[i]; i++) {
    const char *eq = strchr(env[i], '=');
    if (!eq) {
      unsetenv(env[i]);
      continue;
    }
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(eq - env[i]), env[i]);
    setenv(name, eq + 1, 1);
  }
  size_t n = 0;
  while (args && args[n]) n++;
  char **argv = calloc(n + 2, sizeof *argv);
  if (!argv) _exit(127);
  argv[0] = (char *)"kt-child";
  for (size_t i = 0; i < n; i++) argv[i + 1] = (char *)args[i];
  execv("/proc/self/exe", argv);
  _exit(127);
}

int kt_child(const char *const *args, const char *const *env, char *out, size_t out_n) {
  int fd[2] = {-1, -1};
  if (out && (out_n == 0 || pipe(fd) != 0)) return -1;
  fflush(NULL); /* nothing buffered twice */
  pid_t pid = fork();
  if (pid < 0) {
    if (out) {
      close(fd[0]);
      close(fd[1]);
    }
    return -1;
  }
  if (pid == 0) {
    if (out) {
      dup2(fd[1], 1);
      close(fd[0]);
    }
    become_child(args, env);
  }
  if (out) {
    close(fd[1]);
    size_t n = 0;
    ssize_t k;
    while (n < out_n - 1 && (k = read(fd[0], out + n, out_n - 1 - n)) > 0) n += (size_t)k;
    out[n] = '\0';
    close(fd[0]);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}
