/* SPDX-License-Identifier: MIT */
#include "activation.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include <systemd/sd-daemon.h>

#include "util/log.h"

struct activation {
    size_t n;
    int *fds;
    char **names;
};

int activation_new(struct activation **ret)
{
    _cleanup_(activation_freep) struct activation *a = calloc(1, sizeof(*a));
    char **names = NULL;

    if (!a)
        return -ENOMEM;
    int n = sd_listen_fds_with_names(true, &names);
    if (n < 0)
        return log_error_errno(n, "Failed to read the sockets systemd passed: %m");
    a->fds = calloc((size_t)n + 1, sizeof(*a->fds));
    a->names = calloc((size_t)n + 1, sizeof(*a->names));
    if (!a->fds || !a->names) {
        for (int i = 0; i < n; i++) {
            safe_close(SD_LISTEN_FDS_START + i);
            free(names ? names[i] : NULL);
        }
        free(names);
        return -ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        char *name = names ? names[i] : NULL;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) <= 0) {
            log_warning("Ignoring fd %d (%s) from systemd: not a listening UNIX stream socket.", fd,
                        name ? name : "unnamed");
            safe_close(fd);
            free(name);
            continue;
        }
        /* Device sockets are served non-blocking from the loop. */
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0)
            (void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        a->fds[a->n] = fd;
        a->names[a->n++] = name;
    }
    free(names);
    if (a->n > 0)
        log_info("Inherited %zu socket(s) from systemd.", a->n);
    *ret = TAKE_PTR(a);
    return 0;
}

void activation_free(struct activation *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++) {
        safe_close(a->fds[i]);
        free(a->names[i]);
    }
    free(a->fds);
    free(a->names);
    free(a);
}

int activation_get(const struct activation *a, const char *name)
{
    for (size_t i = 0; a && i < a->n; i++)
        if (a->names[i] && strcmp(a->names[i], name) == 0) {
            int fd = fcntl(a->fds[i], F_DUPFD_CLOEXEC, 3);
            return fd < 0 ? -errno : fd;
        }
    return -ENOENT;
}

size_t activation_count(const struct activation *a)
{
    return a ? a->n : 0;
}
