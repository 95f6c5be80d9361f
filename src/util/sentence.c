/* SPDX-License-Identifier: MIT */
#include "util/sentence.h"

#include <stdarg.h>
#include <stdio.h>

int sentence_set(char **error, int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(error, fmt, ap) < 0)
        *error = NULL;
    va_end(ap);
    return r;
}
