/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr with syslog priorities, which journald understands when
 * muserd runs under systemd ("<3>message"). Errors are logged once, where
 * they are handled; the *_errno variants return the negative errno they got
 * so a caller can write `return log_error_errno(r, "...: %m");`.
 */
#pragma once

#include <stdarg.h>
#include <syslog.h>

#include "macro.h"

void log_set_max_level(int level);
int log_get_max_level(void);
/* When set, each line starts with "<N>" for journald. */
void log_set_prefix_priority(int on);

int log_internal(int level, int error, const char *fmt, ...) _printf_(3, 4);
int log_internalv(int level, int error, const char *fmt, va_list ap) _printf_(3, 0);

#define log_full_errno(level, error, ...) log_internal(level, error, __VA_ARGS__)
#define log_debug(...)                    log_internal(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)                     log_internal(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)                   log_internal(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...)                  log_internal(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)                    log_internal(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...)           log_internal(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)            log_internal(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...)         log_internal(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)           log_internal(LOG_ERR, e, __VA_ARGS__)
#define log_oom()                         log_internal(LOG_ERR, -ENOMEM, "Out of memory.")
