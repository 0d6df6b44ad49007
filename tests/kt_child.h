/* kt_child.h — runs this test binary again in a child process (/proc/self/exe) with some
 * environment set, for cases whose state is once per process (a library opened on first
 * use, then kept): what the child prints on stdout comes back. Tests only; libc only. */
#ifndef KT_CHILD_H
#define KT_CHILD_H

#include <stddef.h>

/* args: the child's arguments after argv[0], NULL-terminated. env: "NAME=VALUE" sets,
 * "NAME" unsets, NULL-terminated (or NULL). out: the child's stdout, NUL-terminated and
 * cut to out_n (NULL: the child writes to this process's stdout). Returns the child's
 * exit status, or -1 when it could not be run or did not exit normally. */
int kt_child(const char *const *args, const char *const *env, char *out, size_t out_n);

#endif
