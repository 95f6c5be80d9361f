/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Bind and listen on a UNIX stream socket at path. A socket file left behind
 * by a dead process is replaced; one that a live process answers on is
 * -EADDRINUSE, and a file that is not a socket is -EEXIST (never removed).
 */
int socket_listen_unix(const char *path, int *ret_fd);

/* The filesystem path a UNIX socket is bound to (malloc()ed); -EINVAL when
 * it has none (abstract or unbound). */
int socket_get_path(int fd, char **ret);

/* Set O_NONBLOCK on fd (on its open file description, which a peer that
 * passed it to us shares). 0 or -errno. */
int fd_set_nonblock(int fd);
