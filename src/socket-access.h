/* SPDX-License-Identifier: MIT */
/*
 * Who may connect to a device socket. connect() on a UNIX socket needs write
 * permission on its file, so a VMM running as its own user (libvirt's qemu)
 * reaches a device only if the socket is given to it. The device config
 * keys "socket_owner" and "socket_group" (names or numeric ids) and
 * "socket_mode" (an octal string such as "0660") say how.
 */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>

/*
 * Apply the socket_* keys of config to the socket file at path, which muserd
 * just bound and still owns. Everything is checked before anything changes.
 * On failure return -EINVAL (a bad value: unknown user or group, malformed
 * mode) or the -errno of chmod/chown, with *error set to a malloc()ed
 * sentence for the operator (NULL when out of memory). No key: nothing to do.
 */
int socket_access_apply(const char *path, struct json_object *config, char **error);

/* Does config carry any socket_* key? (An inherited socket's access is its
 * socket unit's business: SocketUser=, SocketGroup=, SocketMode=.) */
bool socket_access_requested(struct json_object *config);
