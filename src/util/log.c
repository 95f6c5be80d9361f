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
    if (prefix_priority)
        fprintf(stderr, "<%d>", level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
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
