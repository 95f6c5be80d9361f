/* SPDX-License-Identifier: MIT */
/*
 * Least privilege: muserd starts as root only to hand its runtime directory
 * to an unprivileged user and to keep the one capability it needs later
 * (CAP_CHOWN, to give device sockets to a VM's user and group, see
 * socket-access.h). Everything else, plugins included, runs without root.
 */
#pragma once

/* The user muserd switches to when started as root and no --user-name is given. */
#define PRIVILEGES_DEFAULT_USER "muserd"

/*
 * Started as root: create runtime_dir if missing, give it to user_name
 * (a user name; NULL means PRIVILEGES_DEFAULT_USER), then become that user
 * and its groups with only CAP_CHOWN left, the bounding set cleared and
 * no_new_privs set. user_name "root" (or uid 0) keeps uid 0 but still drops
 * to CAP_CHOWN. When user_name is NULL and the default user does not exist,
 * stay root with the minimal set and warn; a user named explicitly must
 * exist (-ESRCH, with a message saying how to create it).
 *
 * Started as another user: drop every capability we may hold and set
 * no_new_privs; user_name must then be NULL or our own user (-EPERM).
 *
 * Logs its own errors. Returns 0 or -errno. Call it once, before any plugin
 * is loaded.
 */
int privileges_drop(const char *user_name, const char *runtime_dir);
