/* SPDX-License-Identifier: MIT */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/macro.h"

int tu_set_socket_timeout(int fd, int timeout_ms)
{
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};

    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    return 0;
}

int tu_connect(const char *socket_path, const char *json, int timeout_ms, struct vfu_client **ret)
{
    uint64_t deadline = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int r;

    for (;;) {
        struct vfu_client *c = NULL;
        r = vfu_client_connect(socket_path, &c);
        if (r == 0) {
            r = tu_set_socket_timeout(vfu_client_fd(c), TU_RECV_TIMEOUT_MS);
            if (r == 0)
                r = vfu_client_negotiate(c, json, NULL);
            if (r == 0) {
                *ret = c;
                return 0;
            }
            vfu_client_free(c);
        }
        /* Refused: the device still has its previous client. */
        if (r != -ECONNRESET && r != -EPIPE && r != -ECONNREFUSED && r != -EAGAIN)
            return r;
        if (test_now_ns() > deadline)
            return r;
        struct timespec ts = {.tv_nsec = 5 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int tu_raw_connect(const char *socket_path, bool nonblock)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(socket_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

int tu_wait_readable(int fd, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t deadline = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;

    for (;;) {
        uint64_t now = test_now_ns();
        int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000ull);
        int r = poll(&pfd, 1, left);
        if (r > 0)
            return 1;
        if (r == 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int tu_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}

uint64_t tu_eventfd_read(int fd)
{
    uint64_t v = 0;
    if (read(fd, &v, sizeof(v)) != sizeof(v))
        return 0;
    return v;
}

int tu_eventfd_wait(int fd, int timeout_ms, uint64_t *count)
{
    int r = tu_wait_readable(fd, timeout_ms);
    if (r <= 0)
        return r;
    *count = tu_eventfd_read(fd);
    return *count > 0 ? 1 : 0;
}

int tu_wait_closed(int fd, int timeout_ms)
{
    uint64_t deadline = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    char buf[65536];

    for (;;) {
        uint64_t now = test_now_ns();
        int left = now >= deadline ? 0 : (int)((deadline - now) / 1000000ull);
        int r = tu_wait_readable(fd, left);
        if (r < 0)
            return r;
        if (r == 0)
            return 0;
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && (errno == ECONNRESET || errno == EPIPE)))
            return 1;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
    }
}

int tu_memfd(size_t size, void **map)
{
    int fd = memfd_create("muserd-test", MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0)
        goto fail;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        goto fail;
    *map = p;
    return fd;
fail:;
    int r = -errno;
    close(fd);
    return r;
}

bool tu_file_contains(const char *path, const char *needle)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *text = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&text, &cap, '\0', f);
    fclose(f);
    bool found = n > 0 && strstr(text, needle);
    free(text);
    return found;
}

bool tu_file_has_line(const char *path, const char *const *needles)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    char *line = NULL;
    size_t cap = 0;
    bool found = false;
    while (!found && getline(&line, &cap, f) > 0) {
        found = true;
        for (size_t i = 0; needles[i] && found; i++)
            found = strstr(line, needles[i]) != NULL;
    }
    free(line);
    fclose(f);
    return found;
}

int tu_count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -errno;
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));)
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

static const char *plugin_path(const char *env, const char *def, const char *name)
{
    static char buf[4096];
    const char *dir = getenv(env);
    snprintf(buf, sizeof(buf), "%s/%s.so", dir && *dir ? dir : def, name);
    return buf;
}

const char *tu_test_plugin(const char *name)
{
    return plugin_path("MUSERD_TEST_PLUGIN_DIR", "build/test-plugins", name);
}

const char *tu_plugin(const char *name)
{
    return plugin_path("MUSERD_PLUGIN_DIR", "build/plugins", name);
}

int tu_plugin_dir(struct test_daemon *d, const char *const *names)
{
    char dir[4096], link[4200];
    snprintf(dir, sizeof(dir), "%s/../plugins", test_daemon_runtime_dir(d));
    if (mkdir(dir, 0700) < 0)
        return -errno;
    for (size_t i = 0; names[i]; i++) {
        bool test = strncmp(names[i], "test:", 5) == 0;
        const char *name = test ? names[i] + 5 : names[i];
        char *target = realpath(test ? tu_test_plugin(name) : tu_plugin(name), NULL);
        if (!target)
            return -errno;
        snprintf(link, sizeof(link), "%s/%s.so", dir, name);
        int r = symlink(target, link) < 0 ? -errno : 0;
        free(target);
        if (r < 0)
            return r;
    }
    int r = test_daemon_add_arg(d, "--plugin-dir");
    return r < 0 ? r : test_daemon_add_arg(d, dir);
}

bool tu_cpu_runs(const char *bin)
{
    pid_t pid = fork();
    if (pid < 0)
        return true; /* let the real run say what is wrong */
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
        }
        execl(bin, bin, "-h", (char *)NULL);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return true;
    return !(WIFSIGNALED(status) && WTERMSIG(status) == SIGILL);
}
