/* SPDX-License-Identifier: MIT */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/macro.h"

/* A growing, NULL-terminated string array, as execv() wants it. */
struct strv {
    char **v;
    size_t n, cap;
};

struct test_daemon {
    char *base_dir; /* mkdtemp: run/ and muserd.log */
    char *runtime_dir;
    char *log_path;
    char *notify_path; /* our NOTIFY_SOCKET: the daemon says READY=1 here */
    int notify_fd;
    bool got_ready;
    uint64_t ready_ns; /* when we read READY=1 */
    struct strv args;  /* user arguments */
    struct strv ids;   /* devices whose sockets mean "ready" */
    /* A command muserd runs under (argv[0] from PATH), or none. */
    struct strv wrapper;
    bool log_to_stderr;
    pid_t pid;
    bool exited;
    int status;
    uint64_t start_ns;
    char path_buf[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

uint64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ns};
    nanosleep(&ts, NULL);
}

static int strv_push(struct strv *s, const char *str)
{
    if (s->n + 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        char **a = reallocarray(s->v, ncap, sizeof(char *));
        if (!a)
            return -ENOMEM;
        s->v = a;
        s->cap = ncap;
    }
    char *copy = strdup(str);
    if (!copy)
        return -ENOMEM;
    s->v[s->n++] = copy;
    s->v[s->n] = NULL;
    return 0;
}

static void strv_done(struct strv *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    *s = (struct strv){0};
}

static int notify_listen(struct test_daemon *d)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(d->notify_path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, d->notify_path);
    d->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (d->notify_fd < 0)
        return -errno;
    if (bind(d->notify_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    return 0;
}

/* Read what the daemon told systemd so far; remembers READY=1. */
static void notify_drain(struct test_daemon *d)
{
    char buf[4096];
    ssize_t n;

    while ((n = recv(d->notify_fd, buf, sizeof(buf) - 1, 0)) > 0) {
        buf[n] = 0;
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
            if (strcmp(line, "READY=1") == 0 && !d->got_ready) {
                d->got_ready = true;
                d->ready_ns = test_now_ns();
            }
    }
}

int test_daemon_new(struct test_daemon **ret)
{
    const char *tmp = getenv("TMPDIR");
    _cleanup_free_ char *base = NULL;

    if (asprintf(&base, "%s/muserd-test.XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
        return -ENOMEM;
    if (!mkdtemp(base))
        return -errno;

    struct test_daemon *d = calloc(1, sizeof(*d));
    if (!d) {
        rmdir(base);
        return -ENOMEM;
    }
    d->pid = -1;
    d->notify_fd = -1;
    d->base_dir = TAKE_PTR(base);
    if (asprintf(&d->runtime_dir, "%s/run", d->base_dir) < 0 ||
        asprintf(&d->log_path, "%s/muserd.log", d->base_dir) < 0 ||
        asprintf(&d->notify_path, "%s/notify", d->base_dir) < 0) {
        d->runtime_dir = d->log_path = d->notify_path = NULL;
        test_daemon_free(d);
        return -ENOMEM;
    }
    int r = mkdir(d->runtime_dir, 0700) < 0 ? -errno : notify_listen(d);
    if (r < 0) {
        test_daemon_free(d);
        return r;
    }
    *ret = d;
    return 0;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    remove(path);
    return 0;
}

void test_daemon_free(struct test_daemon *d)
{
    if (!d)
        return;
    if (d->pid > 0 && !d->exited) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, NULL, 0);
    }
    if (d->base_dir)
        nftw(d->base_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    strv_done(&d->args);
    strv_done(&d->ids);
    strv_done(&d->wrapper);
    free(d->base_dir);
    free(d->runtime_dir);
    free(d->log_path);
    free(d->notify_path);
    safe_close(d->notify_fd);
    free(d);
}

int test_daemon_add_arg(struct test_daemon *d, const char *arg)
{
    return strv_push(&d->args, arg);
}

int test_daemon_add_device(struct test_daemon *d, const char *type, const char *id,
                           const char *json)
{
    _cleanup_free_ char *spec = NULL;

    if (strchr(id, '/') || strchr(id, ':'))
        return -EINVAL;
    if (asprintf(&spec, json ? "%s:%s:%s" : "%s:%s", type, id, json) < 0)
        return -ENOMEM;
    int r = test_daemon_add_arg(d, "--device");
    if (r < 0)
        return r;
    r = test_daemon_add_arg(d, spec);
    if (r < 0)
        return r;
    return strv_push(&d->ids, id);
}

void test_daemon_set_log_to_stderr(struct test_daemon *d, bool on)
{
    d->log_to_stderr = on;
}

int test_daemon_set_wrapper(struct test_daemon *d, const char *const *argv)
{
    strv_done(&d->wrapper);
    for (size_t i = 0; argv && argv[i]; i++) {
        int r = strv_push(&d->wrapper, argv[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

int test_daemon_share(struct test_daemon *d)
{
    /* Traverse only: the base directory's names stay private. */
    if (chmod(d->base_dir, 0711) < 0 || chmod(d->notify_path, 0666) < 0)
        return -errno;
    return 0;
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

int test_daemon_start(struct test_daemon *d)
{
    const char *bin = env_or("MUSERD_BIN", "build/muserd");
    const char *plugins = env_or("MUSERD_PLUGIN_DIR", "build/plugins");
    _cleanup_(strv_done) struct strv argv = {0};
    int r;

    if (d->pid > 0)
        return -EBUSY;
    if (access(bin, X_OK) < 0)
        return -errno;

    /* Everything the child needs is built before fork(). */
    for (size_t i = 0; i < d->wrapper.n; i++)
        if ((r = strv_push(&argv, d->wrapper.v[i])) < 0)
            return r;
    const char *fixed[] = {bin, "--plugin-dir", plugins, "--runtime-dir", d->runtime_dir};
    for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
        if ((r = strv_push(&argv, fixed[i])) < 0)
            return r;
    /* As root, muserd would become user "muserd" where one exists (an
     * installed host), which cannot enter our private directory. A test
     * that wants another user says --user-name itself (the last one wins). */
    if (geteuid() == 0 &&
        ((r = strv_push(&argv, "--user-name")) < 0 || (r = strv_push(&argv, "root")) < 0))
        return r;
    for (size_t i = 0; i < d->args.n; i++)
        if ((r = strv_push(&argv, d->args.v[i])) < 0)
            return r;

    /* Our environment plus NOTIFY_SOCKET, so that READY=1 reaches us. */
    _cleanup_(strv_done) struct strv envp = {0};
    _cleanup_free_ char *notify = NULL;
    if (asprintf(&notify, "NOTIFY_SOCKET=%s", d->notify_path) < 0)
        return -ENOMEM;
    if ((r = strv_push(&envp, notify)) < 0)
        return r;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 && (r = strv_push(&envp, *e)) < 0)
            return r;

    _cleanup_close_ int log_fd = -1;
    if (!d->log_to_stderr) {
        log_fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (log_fd < 0)
            return -errno;
    }

    pid_t parent = getpid();
    d->start_ns = test_now_ns();
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        /* Never leave a daemon behind when a test crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (log_fd >= 0 && dup2(log_fd, STDERR_FILENO) < 0)
            _exit(127);
        if (d->wrapper.n > 0)
            execvpe(argv.v[0], argv.v, envp.v);
        else
            execve(bin, argv.v, envp.v);
        fprintf(stderr, "exec %s: %m\n", argv.v[0]);
        _exit(127);
    }
    d->pid = pid;
    d->exited = false;
    d->got_ready = false;
    return 0;
}

/* Has the daemon exited? Reaps it if so. */
static bool daemon_gone(struct test_daemon *d)
{
    if (d->pid <= 0 || d->exited)
        return true;
    if (waitpid(d->pid, &d->status, WNOHANG) == d->pid)
        d->exited = true;
    return d->exited;
}

static bool socket_accepts(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(path) >= sizeof(sa.sun_path))
        return false;
    strcpy(sa.sun_path, path);
    /* Non-blocking, so a full backlog means "not yet" rather than a hang. */
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
}

static bool socket_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* Wait for READY=1, then until check() holds for every device socket. */
static int wait_sockets(struct test_daemon *d, int timeout_ms, bool (*check)(const char *))
{
    uint64_t deadline = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    size_t next = 0;

    if (d->pid <= 0)
        return -ESRCH;
    while (!d->got_ready) {
        struct pollfd pfd = {.fd = d->notify_fd, .events = POLLIN};
        if (daemon_gone(d))
            return -ECHILD;
        if (test_now_ns() > deadline)
            return -ETIMEDOUT;
        if (poll(&pfd, 1, 10) > 0)
            notify_drain(d);
    }
    while (next < d->ids.n) {
        if (check(test_daemon_socket(d, d->ids.v[next]))) {
            next++;
            continue;
        }
        if (daemon_gone(d))
            return -ECHILD;
        if (test_now_ns() > deadline)
            return -ETIMEDOUT;
        sleep_ns(100000);
    }
    return daemon_gone(d) ? -ECHILD : 0;
}

int test_daemon_wait_ready(struct test_daemon *d, int timeout_ms)
{
    return wait_sockets(d, timeout_ms, socket_exists);
}

int test_daemon_wait_accepting(struct test_daemon *d, int timeout_ms)
{
    return wait_sockets(d, timeout_ms, socket_accepts);
}

int test_daemon_stop(struct test_daemon *d, int timeout_ms, int *status)
{
    int r = 0;

    if (d->pid <= 0)
        return -ESRCH;
    if (!daemon_gone(d)) {
        kill(d->pid, SIGTERM);
        uint64_t deadline = test_now_ns() + (uint64_t)timeout_ms * 1000000ull;
        while (!daemon_gone(d)) {
            if (test_now_ns() > deadline) {
                kill(d->pid, SIGKILL);
                waitpid(d->pid, &d->status, 0);
                d->exited = true;
                r = -ETIMEDOUT;
                break;
            }
            sleep_ns(1000000);
        }
    }
    if (status)
        *status = d->status;
    return r;
}

int test_daemon_stop_clean(struct test_daemon *d, int timeout_ms, const char *who)
{
    int status = 0;
    int r = test_daemon_stop(d, timeout_ms, &status);
    if (r >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    fprintf(stderr, "%s: muserd did not exit cleanly on SIGTERM (%s, status %#x)\n", who,
            r < 0 ? strerror(-r) : "exited", status);
    test_daemon_dump_log(d, 8192);
    return r < 0 ? r : -EIO;
}

pid_t test_daemon_pid(const struct test_daemon *d)
{
    return d->pid;
}
const char *test_daemon_runtime_dir(const struct test_daemon *d)
{
    return d->runtime_dir;
}
const char *test_daemon_log_path(const struct test_daemon *d)
{
    return d->log_path;
}
uint64_t test_daemon_start_time(const struct test_daemon *d)
{
    return d->start_ns;
}
uint64_t test_daemon_ready_time(const struct test_daemon *d)
{
    return d->ready_ns;
}

const char *test_daemon_socket(struct test_daemon *d, const char *id)
{
    snprintf(d->path_buf, sizeof(d->path_buf), "%s/%s.sock", d->runtime_dir, id);
    return d->path_buf;
}

int test_daemon_rss_kib(const struct test_daemon *d, uint64_t *ret)
{
    char path[64], line[256];

    if (d->pid <= 0 || d->exited)
        return -ESRCH;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    int r = -ENOENT;
    while (fgets(line, sizeof(line), f)) {
        unsigned long long kib;
        if (sscanf(line, "VmRSS: %llu kB", &kib) == 1) {
            *ret = kib;
            r = 0;
            break;
        }
    }
    fclose(f);
    return r;
}

void test_daemon_dump_log(const struct test_daemon *d, size_t bytes)
{
    char buf[4096];

    _cleanup_close_ int fd = open(d->log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t end = lseek(fd, 0, SEEK_END);
    off_t from = end > (off_t)bytes ? end - (off_t)bytes : 0;
    if (lseek(fd, from, SEEK_SET) < 0)
        return;
    fprintf(stderr, "---- %s (last %zu bytes) ----\n", d->log_path, bytes);
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        fwrite(buf, 1, (size_t)n, stderr);
    fprintf(stderr, "---- end of log ----\n");
}

void test_raise_nofile(size_t want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want) {
        struct rlimit more = {.rlim_cur = (rlim_t)want, .rlim_max = (rlim_t)want};
        if (setrlimit(RLIMIT_NOFILE, &more) == 0)
            return;
    }
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
}
