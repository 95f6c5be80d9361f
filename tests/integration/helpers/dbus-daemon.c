/* SPDX-License-Identifier: MIT */
#include "dbus-daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/macro.h"

struct test_bus {
    char *dir;
    char *config_path;
    char *socket_path;
    char *address;
    pid_t pid;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static int write_config(const struct test_bus *b, const char *extra)
{
    FILE *f = fopen(b->config_path, "we");
    if (!f)
        return -errno;
    fprintf(f,
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n"
            " \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n"
            "<busconfig>\n"
            "  <type>session</type>\n"
            "  <listen>unix:path=%s</listen>\n"
            "  <auth>EXTERNAL</auth>\n"
            "  <policy context=\"default\">\n"
            "    <allow user=\"*\"/>\n"
            "    <allow own=\"*\"/>\n"
            "    <allow send_destination=\"*\" eavesdrop=\"true\"/>\n"
            "    <allow eavesdrop=\"true\"/>\n"
            "  </policy>\n"
            "  <limit name=\"max_replies_per_connection\">50000</limit>\n"
            "  %s\n"
            "</busconfig>\n",
            b->socket_path, extra ? extra : "");
    return fclose(f) == 0 ? 0 : -errno;
}

/* dbus-daemon prints its address once it listens: read that line. */
static int read_address(int fd, char **ret)
{
    char buf[512];
    size_t len = 0;
    uint64_t deadline = now_ms() + 10000;

    while (len < sizeof(buf) - 1) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int left = (int)(deadline - now_ms());
        if (left <= 0)
            return -ETIMEDOUT;
        if (poll(&pfd, 1, left) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            return n == 0 ? -ECHILD : -errno;
        len += (size_t)n;
        buf[len] = 0;
        char *nl = strchr(buf, '\n');
        if (nl) {
            *nl = 0;
            *ret = strdup(buf);
            return *ret ? 0 : -ENOMEM;
        }
    }
    return -E2BIG;
}

/* Fork and exec dbus-daemon; its stderr goes to DIR/dbus-daemon.log. */
static int spawn(struct test_bus *b, int print_fd)
{
    _cleanup_free_ char *config_arg = NULL, *fd_arg = NULL, *log_path = NULL;

    if (asprintf(&config_arg, "--config-file=%s", b->config_path) < 0 ||
        asprintf(&log_path, "%s/dbus-daemon.log", b->dir) < 0 ||
        asprintf(&fd_arg, "--print-address=%d", print_fd) < 0)
        return -ENOMEM;
    pid_t parent = getpid();
    b->pid = fork();
    if (b->pid < 0)
        return -errno;
    if (b->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd >= 0)
            dup2(log_fd, STDERR_FILENO);
        execlp("dbus-daemon", "dbus-daemon", "--nofork", "--nopidfile", "--nosyslog", config_arg,
               fd_arg, (char *)NULL);
        _exit(127);
    }
    return 0;
}

int test_bus_start(const char *extra_config, struct test_bus **ret)
{
    const char *tmp = getenv("TMPDIR");
    _cleanup_(test_bus_freep) struct test_bus *b = calloc(1, sizeof(*b));
    _cleanup_close_ int rfd = -1, wfd = -1;
    int pipefd[2], r;

    if (!b)
        return -ENOMEM;
    b->pid = -1;
    if (asprintf(&b->dir, "%s/muserd-bus.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0) {
        b->dir = NULL;
        return -ENOMEM;
    }
    if (!mkdtemp(b->dir)) {
        free(b->dir);
        b->dir = NULL;
        return -errno;
    }
    /* Others may connect (tests of the bus policy run clients as nobody). */
    if (chmod(b->dir, 0755) < 0)
        return -errno;
    if (asprintf(&b->config_path, "%s/bus.conf", b->dir) < 0 ||
        asprintf(&b->socket_path, "%s/bus", b->dir) < 0)
        return -ENOMEM;
    r = write_config(b, extra_config);
    if (r < 0)
        return r;
    /* The write end stays open across exec: dbus-daemon prints to it. */
    if (pipe2(pipefd, 0) < 0)
        return -errno;
    rfd = pipefd[0];
    wfd = pipefd[1];
    if (fcntl(rfd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    r = spawn(b, wfd);
    if (r < 0)
        return r;
    wfd = safe_close(wfd); /* EOF on rfd when dbus-daemon dies */
    r = read_address(rfd, &b->address);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(b);
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    remove(path);
    return 0;
}

void test_bus_free(struct test_bus *b)
{
    if (!b)
        return;
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        uint64_t deadline = now_ms() + 1000;
        while (waitpid(b->pid, NULL, WNOHANG) == 0) {
            if (now_ms() > deadline) {
                kill(b->pid, SIGKILL);
                waitpid(b->pid, NULL, 0);
                break;
            }
            sleep_ms(5);
        }
    }
    if (b->dir)
        nftw(b->dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
    free(b->dir);
    free(b->config_path);
    free(b->socket_path);
    free(b->address);
    free(b);
}

const char *test_bus_address(const struct test_bus *b)
{
    return b->address;
}

const char *test_bus_dir(const struct test_bus *b)
{
    return b->dir;
}

int test_bus_connect(const char *address, sd_bus **ret)
{
    sd_bus *bus = NULL;
    int r = sd_bus_new(&bus);
    if (r < 0)
        return r;
    r = sd_bus_set_address(bus, address);
    if (r >= 0)
        r = sd_bus_set_bus_client(bus, true);
    if (r >= 0)
        r = sd_bus_start(bus);
    if (r < 0) {
        sd_bus_unref(bus);
        return r;
    }
    *ret = bus;
    return 0;
}

int test_bus_name_has_owner(sd_bus *bus, const char *name)
{
    sd_bus_error error = SD_BUS_ERROR_NULL;
    sd_bus_message *reply = NULL;
    int has = 0;

    int r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                               "org.freedesktop.DBus", "NameHasOwner", &error, &reply, "s", name);
    if (r >= 0)
        r = sd_bus_message_read(reply, "b", &has);
    sd_bus_error_free(&error);
    sd_bus_message_unref(reply);
    return r < 0 ? r : !!has;
}

int test_bus_wait_name(const char *address, const char *name, int timeout_ms)
{
    sd_bus *bus = NULL;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;

    int r = test_bus_connect(address, &bus);
    if (r < 0)
        return r;
    while ((r = test_bus_name_has_owner(bus, name)) == 0) {
        if (now_ms() > deadline) {
            r = -ETIMEDOUT;
            break;
        }
        sleep_ms(10);
    }
    sd_bus_flush_close_unref(bus);
    return r < 0 ? r : 0;
}
