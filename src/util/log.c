/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static int max_level = LOG_INFO;
static int prefix_priority;

void log_set_max_level(int level)
{
    max_level = level;
}
int log_get_max_level(void)
{
    return max_level;
}
void log_set_prefix_priority(int on)
{
    prefix_priority = on;
}

int log_internalv(int level, int error, const char *fmt, va_list ap)
{
    int e = error < 0 ? -error : error;

    if (level > max_level)
        return error < 0 ? error : -e;

    /* %m in fmt prints strerror(errno): point it at the error we were given. */
    int saved = errno;
    errno = e;
    /* One write per line: stderr is unbuffered, and journald (or a pipe
     * shared with other writers) should never see half a line. */
    char line[2048];
    int n = prefix_priority ? snprintf(line, sizeof(line), "<%d>", level) : 0;
    int k = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (k < 0)
        k = 0;
    size_t len =
        (size_t)n +
        ((size_t)k < sizeof(line) - (size_t)n - 1 ? (size_t)k : sizeof(line) - (size_t)n - 2);
    line[len++] = '\n';
    fwrite(line, 1, len, stderr);
    errno = saved;
    return -e;
}

int log_internal(int level, int error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = log_internalv(level, error, fmt, ap);
    va_end(ap);
    return r;
}
