/* SPDX-License-Identifier: MIT */
#include "child.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon.h"

/* Read what is there; false at end of file (or on an error). */
static bool buf_read(struct tu_buf *b, int fd)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    if (n <= 0)
        return false;
    char *grown = realloc(b->data, b->len + (size_t)n + 1);
    if (!grown)
        return false;
    b->data = grown;
    memcpy(b->data + b->len, chunk, (size_t)n);
    b->len += (size_t)n;
    b->data[b->len] = 0;
    return true;
}

static void close_pair(int p[2])
{
    if (p[0] >= 0)
        close(p[0]);
    if (p[1] >= 0)
        close(p[1]);
}

/* The input goes into a pipe before the fork: tests pass a few KiB at
 * most, well within a pipe's buffer, so writing cannot block. */
static int input_pipe(const char *input, int p[2])
{
    size_t len = input ? strlen(input) : 0;

    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    if (len && write(p[1], input, len) != (ssize_t)len) {
        int r = errno ? -errno : -EIO;
        close_pair(p);
        return r;
    }
    close(p[1]);
    p[1] = -1;
    return 0;
}

int tu_child_start(struct tu_child *c, const char *const *argv, const char *input)
{
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int r;

    *c = (struct tu_child){.pid = -1, .out = -1, .err = -1};
    if ((r = input_pipe(input, in)) < 0)
        return r;
    if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
        r = -errno;
        close_pair(in);
        close_pair(out);
        close_pair(err);
        return r;
    }
    c->pid = fork();
    if (c->pid < 0) {
        r = -errno;
        close_pair(in);
        close_pair(out);
        close_pair(err);
        return r;
    }
    if (c->pid == 0) {
        dup2(in[0], STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execv(argv[0], (char **)argv);
        dprintf(err[1], "exec %s: %m\n", argv[0]);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    c->out = out[0];
    c->err = err[0];
    fcntl(c->out, F_SETFL, O_NONBLOCK);
    fcntl(c->err, F_SETFL, O_NONBLOCK);
    return 0;
}

bool tu_child_read(struct tu_child *c, int timeout_ms, const char *needle, bool in_stderr)
{
    uint64_t deadline = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;

    for (;;) {
        const char *watched = in_stderr ? tu_child_stderr(c) : tu_child_stdout(c);
        if (needle && strstr(watched, needle))
            return true;
        if (c->out < 0 && c->err < 0)
            return false;
        uint64_t now = test_now_ns();
        if (now >= deadline)
            return false;
        struct pollfd p[2] = {{.fd = c->out, .events = POLLIN}, {.fd = c->err, .events = POLLIN}};
        if (poll(p, 2, (int)((deadline - now) / 1000000ull) + 1) < 0 && errno != EINTR)
            return false;
        if (p[0].revents && !buf_read(&c->stdout_, c->out)) {
            close(c->out);
            c->out = -1;
        }
        if (p[1].revents && !buf_read(&c->stderr_, c->err)) {
            close(c->err);
            c->err = -1;
        }
    }
}

int tu_child_wait(struct tu_child *c, int timeout_ms)
{
    int status;

    tu_child_read(c, timeout_ms, NULL, false);
    bool finished = c->out < 0 && c->err < 0;
    if (!finished)
        kill(c->pid, SIGKILL);
    if (waitpid(c->pid, &status, 0) != c->pid)
        return -errno;
    c->pid = -1;
    if (!finished)
        return -ETIMEDOUT;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void tu_child_free(struct tu_child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    free(c->stdout_.data);
    free(c->stderr_.data);
    if (c->out >= 0)
        close(c->out);
    if (c->err >= 0)
        close(c->err);
}
