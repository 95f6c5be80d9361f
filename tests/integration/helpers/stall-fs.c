/* SPDX-License-Identifier: MIT */
/*
 * stall-fs.h: the test's side (mount, a socket to the child, commands
 * answered with a number) and the child's (libfuse's multithreaded loop
 * over one file in memory, and a thread that takes the commands).
 */
#define FUSE_USE_VERSION 312

#include "stall-fs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <mntent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Commands on the socket, one byte each; the child answers each with an
 * int32_t (0, a count, or -errno). End of file: release and exit. */
#define CMD_STALL   'S'
#define CMD_RELEASE 'R'
#define CMD_HOLD    'H'
#define CMD_WAITING 'W'

#define REPLY_TIMEOUT_MS 5000

struct stall_fs {
    pid_t pid;
    int sock;
    char dir[PATH_MAX];
};

/* ---- the child: the file system ------------------------------------------- */

struct server {
    pthread_mutex_t lock;
    pthread_cond_t released;
    bool stalled; /* new requests wait */
    unsigned gen; /* a release lets go of the requests that waited before it */
    int waiting;
    uint8_t *data; /* the file, under lock */
    size_t size;
    char path[NAME_MAX + 2]; /* "/name" */
    int sock;
};

static struct server *server(void)
{
    return fuse_get_context()->private_data;
}

/* Where a data request waits while the storage is stalled. */
static void stall_point(struct server *s)
{
    pthread_mutex_lock(&s->lock);
    if (s->stalled) {
        unsigned gen = s->gen;
        s->waiting++;
        while (s->gen == gen)
            pthread_cond_wait(&s->released, &s->lock);
        s->waiting--;
    }
    pthread_mutex_unlock(&s->lock);
}

static bool is_file(const struct server *s, const char *path)
{
    return strcmp(path, s->path) == 0;
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    /* Room for many async (io_uring) requests at once in the file system,
     * rather than in the kernel's queue: both wait, this way they count.
     * Past max_background FUSE blocks whoever submits the next one: with
     * io_uring that is muserd's I/O thread (FUSE takes O_DIRECT at submit),
     * so the limit is above the nvme plugin's in-flight limit (256). */
    conn->max_background = 512;
    conn->congestion_threshold = 384;
    cfg->direct_io = 1;
    /* No cached attributes: every fstat of the file asks us, and waits
     * while stalled, as on storage that hangs (NFS revalidates the same
     * way), so a destroy that stats the file would show. */
    cfg->attr_timeout = 0;
    return fuse_get_context()->private_data;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    struct server *s = server();
    memset(st, 0, sizeof(*st));
    st->st_uid = getuid();
    st->st_gid = getgid();
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    if (!is_file(s, path))
        return -ENOENT;
    stall_point(s);
    st->st_mode = S_IFREG | 0666;
    st->st_nlink = 1;
    st->st_size = (off_t)s->size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)(s->size / 512);
    return 0;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    if (strcmp(path, "/") != 0)
        return -ENOTDIR;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    fill(buf, server()->path + 1, NULL, 0, 0);
    return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi)
{
    if (!is_file(server(), path))
        return -ENOENT;
    fi->direct_io = 1; /* no page cache: every read and write reaches us */
    return 0;
}

static int fs_read(const char *path, char *buf, size_t len, off_t off, struct fuse_file_info *fi)
{
    struct server *s = server();
    stall_point(s);
    if (off < 0 || (size_t)off >= s->size)
        return 0;
    if (len > s->size - (size_t)off)
        len = s->size - (size_t)off;
    pthread_mutex_lock(&s->lock);
    memcpy(buf, s->data + off, len);
    pthread_mutex_unlock(&s->lock);
    return (int)len;
}

static int fs_write(const char *path, const char *buf, size_t len, off_t off,
                    struct fuse_file_info *fi)
{
    struct server *s = server();
    stall_point(s);
    if (off < 0 || (size_t)off >= s->size)
        return -ENOSPC;
    if (len > s->size - (size_t)off)
        len = s->size - (size_t)off;
    pthread_mutex_lock(&s->lock);
    memcpy(s->data + off, buf, len);
    pthread_mutex_unlock(&s->lock);
    return (int)len;
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
    stall_point(server());
    return 0;
}

static int fs_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi)
{
    struct server *s = server();
    stall_point(s);
    if (off < 0 || len <= 0)
        return -EINVAL;
    if (mode == 0)
        return (size_t)off + (size_t)len <= s->size ? 0 : -ENOSPC;
    if (mode != (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE))
        return -EOPNOTSUPP;
    if ((size_t)off < s->size) {
        size_t n = s->size - (size_t)off < (size_t)len ? s->size - (size_t)off : (size_t)len;
        pthread_mutex_lock(&s->lock);
        memset(s->data + off, 0, n);
        pthread_mutex_unlock(&s->lock);
    }
    return 0;
}

/* The file's size is fixed. */
static int fs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    return (size_t)size == server()->size ? 0 : -EPERM;
}

static int fs_statfs(const char *path, struct statvfs *st)
{
    memset(st, 0, sizeof(*st));
    st->f_bsize = st->f_frsize = 4096;
    st->f_blocks = server()->size / 4096;
    st->f_files = 2;
    st->f_namemax = NAME_MAX;
    return 0;
}

static const struct fuse_operations stall_ops = {
    .init = fs_init,
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .open = fs_open,
    .read = fs_read,
    .write = fs_write,
    .fsync = fs_fsync,
    .fallocate = fs_fallocate,
    .truncate = fs_truncate,
    .statfs = fs_statfs,
};

/* New requests wait or not; release: those waiting go too. */
static void set_stalled(struct server *s, bool stalled, bool release)
{
    pthread_mutex_lock(&s->lock);
    s->stalled = stalled;
    if (release) {
        s->gen++;
        pthread_cond_broadcast(&s->released);
    }
    pthread_mutex_unlock(&s->lock);
}

/* The test's commands, until it closes the socket (or dies): then what
 * waits is let go and the child exits, which ends the connection. */
static void *control(void *arg)
{
    struct server *s = arg;
    for (;;) {
        char cmd;
        ssize_t n = recv(s->sock, &cmd, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        int32_t reply = 0;
        if (cmd == CMD_STALL || cmd == CMD_RELEASE || cmd == CMD_HOLD) {
            set_stalled(s, cmd == CMD_STALL, cmd == CMD_RELEASE);
        } else if (cmd == CMD_WAITING) {
            pthread_mutex_lock(&s->lock);
            reply = s->waiting;
            pthread_mutex_unlock(&s->lock);
        } else {
            reply = -EINVAL;
        }
        if (send(s->sock, &reply, sizeof(reply), MSG_NOSIGNAL) < 0)
            break;
    }
    set_stalled(s, false, true);
    _exit(0);
}

static int32_t serve(int fuse_fd, int sock, const char *name, size_t size)
{
    static struct server s = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .released = PTHREAD_COND_INITIALIZER,
    };
    char mountpoint[32];
    char *argv[] = {"stall-fs", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(1, argv);
    pthread_t thread;

    s.sock = sock;
    s.size = size;
    s.data = calloc(1, size);
    if (!s.data || snprintf(s.path, sizeof(s.path), "/%s", name) >= (int)sizeof(s.path))
        return -ENOMEM;
    struct fuse *f = fuse_new(&args, &stall_ops, sizeof(stall_ops), &s);
    if (!f)
        return -EINVAL;
    /* The test mounted it: libfuse takes the connection's fd as /dev/fd/N. */
    snprintf(mountpoint, sizeof(mountpoint), "/dev/fd/%d", fuse_fd);
    if (fuse_mount(f, mountpoint) < 0)
        return -EIO;
    if (pthread_create(&thread, NULL, control, &s) != 0)
        return -EAGAIN;
    int32_t ready = 0;
    if (send(sock, &ready, sizeof(ready), MSG_NOSIGNAL) < 0)
        _exit(1);
    /* Threads enough for every request the tests stall, and then some. */
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg) {
        fuse_loop_cfg_set_max_threads(cfg, 256);
        fuse_loop_cfg_set_idle_threads(cfg, 16);
    }
    fuse_loop_mt(f, cfg);
    _exit(0); /* unmounted, or the connection aborted */
}

/* Close every fd above stderr but the two the child keeps. */
static void close_all_but(int a, int b)
{
    unsigned lo = a < b ? (unsigned)a : (unsigned)b, hi = a < b ? (unsigned)b : (unsigned)a;
    if (lo > 3)
        close_range(3, lo - 1, 0);
    if (hi > lo + 1)
        close_range(lo + 1, hi - 1, 0);
    close_range(hi + 1, ~0u, 0);
}

/* ---- the test's side ---------------------------------------------------------- */

static int call(struct stall_fs *fs, char cmd)
{
    int32_t reply;
    struct pollfd p = {.fd = fs->sock, .events = POLLIN};

    if (send(fs->sock, &cmd, 1, MSG_NOSIGNAL) != 1)
        return -errno;
    int r = poll(&p, 1, REPLY_TIMEOUT_MS);
    if (r < 0)
        return -errno;
    if (r == 0)
        return -ETIMEDOUT;
    ssize_t n = recv(fs->sock, &reply, sizeof(reply), 0);
    if (n < 0)
        return -errno;
    return n == sizeof(reply) ? reply : -ECONNRESET;
}

int stall_fs_stall(struct stall_fs *fs)
{
    return call(fs, CMD_STALL);
}

int stall_fs_release(struct stall_fs *fs)
{
    return call(fs, CMD_RELEASE);
}

int stall_fs_hold(struct stall_fs *fs)
{
    return call(fs, CMD_HOLD);
}

int stall_fs_waiting(struct stall_fs *fs)
{
    return call(fs, CMD_WAITING);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int stall_fs_wait_for(struct stall_fs *fs, int n, int timeout_ms)
{
    uint64_t end = now_ms() + (uint64_t)timeout_ms;
    int waiting;
    while ((waiting = stall_fs_waiting(fs)) >= 0 && waiting < n && now_ms() < end)
        usleep(10000);
    return waiting;
}

/* Reap the child, killing it when it does not go in a few seconds. */
static void reap(pid_t pid)
{
    for (int i = 0; i < 500; i++) {
        if (waitpid(pid, NULL, WNOHANG) != 0)
            return;
        usleep(10000);
    }
    kill(pid, SIGKILL);
    (void)waitpid(pid, NULL, 0);
}

int stall_fs_start(const char *dir, const char *name, size_t size, struct stall_fs **ret)
{
    char opts[128], path[PATH_MAX];
    int sv[2];
    struct stat st;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    struct stall_fs *fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    snprintf(fs->dir, sizeof(fs->dir), "%s", dir);
    int fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fuse_fd < 0) {
        int r = -errno;
        free(fs);
        return r;
    }
    /* allow_other: muserd may run as another user than the test. */
    snprintf(opts, sizeof(opts), "fd=%d,rootmode=40000,user_id=%u,group_id=%u,allow_other", fuse_fd,
             (unsigned)getuid(), (unsigned)getgid());
    if (mount("stall-fs", dir, "fuse.stall-fs", MS_NOSUID | MS_NODEV, opts) < 0) {
        int r = -errno;
        close(fuse_fd);
        free(fs);
        return r;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        int r = -errno;
        close(fuse_fd);
        umount2(dir, MNT_DETACH);
        free(fs);
        return r;
    }
    pid_t parent = getpid();
    fs->pid = fork();
    if (fs->pid == 0) {
        /* The child goes with the test's process, whatever ends it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        close_all_but(fuse_fd, sv[1]);
        int32_t r = serve(fuse_fd, sv[1], name, size);
        (void)send(sv[1], &r, sizeof(r), MSG_NOSIGNAL);
        _exit(1);
    }
    /* The connection is the child's alone: when it exits, the file system
     * answers ENOTCONN instead of hanging whoever uses it. */
    close(fuse_fd);
    close(sv[1]);
    fs->sock = sv[0];
    if (fs->pid < 0) {
        int r = -errno;
        close(fs->sock);
        umount2(dir, MNT_DETACH);
        free(fs);
        return r;
    }
    struct pollfd p = {.fd = fs->sock, .events = POLLIN};
    int32_t ready = -ETIMEDOUT;
    if (poll(&p, 1, REPLY_TIMEOUT_MS) == 1 && recv(fs->sock, &ready, sizeof(ready), 0) <= 0)
        ready = -ECONNRESET;
    /* The kernel's INIT and a lookup answered: the file is there. */
    if (ready == 0 && stat(path, &st) < 0)
        ready = -errno;
    if (ready < 0) {
        stall_fs_stop(fs);
        return ready;
    }
    *ret = fs;
    return 0;
}

void stall_fs_stop(struct stall_fs *fs)
{
    if (!fs)
        return;
    (void)stall_fs_release(fs);
    (void)umount2(fs->dir, MNT_DETACH);
    close(fs->sock); /* the child exits at the end of file */
    reap(fs->pid);
    free(fs);
}

void stall_fs_unmount_under(const char *path)
{
    char *found[64];
    size_t n = 0, len = strlen(path);
    FILE *f = setmntent("/proc/self/mounts", "re");
    struct mntent *m;

    while (f && n < 64 && (m = getmntent(f)))
        if (strncmp(m->mnt_dir, path, len) == 0 && (m->mnt_dir[len] == '/' || !m->mnt_dir[len]))
            found[n++] = strdup(m->mnt_dir);
    if (f)
        endmntent(f);
    /* The deepest first. */
    while (n > 0) {
        char *dir = found[--n];
        if (dir)
            (void)umount2(dir, MNT_DETACH);
        free(dir);
    }
}
