/* SPDX-License-Identifier: MIT */
/*
 * Sentences for the operator: the reason a request was refused, which
 * reaches muserd's log or a D-Bus error as it is.
 */
#pragma once

#include "util/macro.h"

/* *error = the formatted sentence (malloc()ed; NULL when out of memory).
 * Returns r, so that `return sentence_set(error, -EINVAL, "...")` reads. */
int sentence_set(char **error, int r, const char *fmt, ...) _printf_(3, 4);
