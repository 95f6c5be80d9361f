/* SPDX-License-Identifier: MIT */
#include "util/socket-util.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "util/macro.h"

static int fill_addr(const char *path, struct sockaddr_un *sa)
{
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(sa->sun_path))
        return -ENAMETOOLONG;
    *sa = (struct sockaddr_un){.sun_family = AF_UNIX};
    memcpy(sa->sun_path, path, len + 1);
    return 0;
}

/* Is somebody accepting on the socket at path? */
static bool socket_alive(const struct sockaddr_un *sa)
{
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    int r = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    return r == 0 || errno == EAGAIN || errno == EINPROGRESS;
}

int socket_listen_unix(const char *path, int *ret_fd)
{
    struct sockaddr_un sa;
    struct stat st;
    int r = fill_addr(path, &sa);
    if (r < 0)
        return r;

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        if (socket_alive(&sa))
            return -EADDRINUSE;
        if (unlink(path) < 0 && errno != ENOENT)
            return -errno;
    }

    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    if (listen(fd, 16) < 0) {
        r = -errno;
        unlink(path);
        return r;
    }
    *ret_fd = TAKE_FD(fd);
    return 0;
}

int socket_get_path(int fd, char **ret)
{
    struct sockaddr_un sa = {0};
    socklen_t len = sizeof(sa);

    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return -errno;
    if (sa.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) ||
        sa.sun_path[0] == 0)
        return -EINVAL;
    *ret = strndup(sa.sun_path, len - offsetof(struct sockaddr_un, sun_path));
    return *ret ? 0 : -ENOMEM;
}

int fd_set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    if ((flags & O_NONBLOCK) == 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}
