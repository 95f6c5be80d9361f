/* SPDX-License-Identifier: MIT */
/*
 * Run a program as a user would from a shell: argv, an optional text on its
 * standard input, and its standard output and error collected while it
 * runs, so a test can wait for a line (muserctl monitor) or for the end
 * (muserctl create, the libvirt hook). No Check here: the benchmarks link
 * the helpers too.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

/* A growing NUL-terminated buffer of what the child wrote. */
struct tu_buf {
    char *data;
    size_t len;
};

struct tu_child {
    pid_t pid;
    int out, err; /* read ends, -1 at end of file */
    struct tu_buf stdout_, stderr_;
};

/* Start argv[0] (a path) with argv; input (may be NULL: /dev/null-like empty
 * stdin) is its whole standard input. 0 or -errno. */
int tu_child_start(struct tu_child *c, const char *const *argv, const char *input);

/* Collect output for up to timeout_ms, or until needle (if not NULL) shows
 * up on stdout (or stderr when in_stderr). Returns whether it was seen. */
bool tu_child_read(struct tu_child *c, int timeout_ms, const char *needle, bool in_stderr);

/* Collect output to the end and reap the child: its exit status, 128 +
 * signal, or -ETIMEDOUT (the child is then killed) after timeout_ms. */
int tu_child_wait(struct tu_child *c, int timeout_ms);

void tu_child_free(struct tu_child *c);

static inline const char *tu_child_stdout(const struct tu_child *c)
{
    return c->stdout_.data ? c->stdout_.data : "";
}

static inline const char *tu_child_stderr(const struct tu_child *c)
{
    return c->stderr_.data ? c->stderr_.data : "";
}
