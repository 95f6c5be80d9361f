/* SPDX-License-Identifier: MIT */
/*
 * File-backed namespaces: opening a "backing" file or block device
 * (O_DIRECT where the file takes it, so that guest I/O does not fill the
 * host's page cache twice), its size, and the asynchronous I/O engine
 * (one for all of a device's files) whose completions the device's loop
 * hears about on an eventfd. The
 * commands themselves are in nvme-io-file.c.
 *
 * Threads: the device's I/O thread (create and destroy: whichever thread
 * the host calls them on), as nvme-dev.h says; but for release_leftovers,
 * which the drainer of a destroyed device's engine runs (nvme-aio.c), and
 * the held-file list, which any thread may touch under its lock.
 * Create opens, probes and stats the file on that thread: storage that
 * hangs at create holds it (a destroy asks the file system nothing).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "nvme-aio.h"
#include "nvme-dev.h"

/* O_DIRECT wants the buffer, offset and length aligned to the file's
 * direct-I/O block, which may be larger than the namespace's blocks (a
 * 512-byte namespace on a 4 KiB-sector disk): one aligned read of a block
 * tells whether our blocks will do. */
static bool direct_fits(int fd, uint32_t block_size)
{
    void *buf;
    if (posix_memalign(&buf, 4096, block_size) != 0)
        return false;
    ssize_t n = pread(fd, buf, block_size, 0);
    free(buf);
    return n >= 0;
}

static int backing_size(int fd, const struct stat *st, uint64_t *size)
{
    if (S_ISREG(st->st_mode)) {
        *size = (uint64_t)st->st_size;
        return 0;
    }
    if (S_ISBLK(st->st_mode))
        return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
    return -ENOTBLK; /* neither: a directory, a FIFO, a character device */
}

/* A file in memory (tmpfs, ramfs) has no cache to bypass and no disk to
 * wait on: it is opened buffered and read and written at once, a copy as
 * for a RAM namespace (nvme-io-file.c). */
static bool in_memory(int fd)
{
    struct statfs fs;
    return fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

/* Open path for the namespace: only a regular file or a block device, and
 * without waiting (a FIFO would block the I/O thread until a writer came;
 * O_NONBLOCK makes its open return, and the type check refuses it), then
 * O_DIRECT where the file takes it and our blocks fit it (fcntl may set
 * O_DIRECT on an open file; a file system without it refuses). */
static int open_backing(const char *path, bool read_only, uint32_t block_size, uint64_t *size,
                        bool *direct, bool *memory)
{
    int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY;
    struct stat st;

    int fd = open(path, flags | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    int r = fstat(fd, &st) < 0 ? -errno : backing_size(fd, &st, size);
    if (r == 0 && fcntl(fd, F_SETFL, 0) < 0)
        r = -errno;
    if (r < 0) {
        close(fd);
        return r;
    }
    *memory = in_memory(fd);
    *direct = !*memory && fcntl(fd, F_SETFL, O_DIRECT) == 0 && direct_fits(fd, block_size);
    if (!*direct && fcntl(fd, F_SETFL, 0) < 0) {
        r = -errno;
        close(fd);
        return r;
    }
    return fd;
}

static void on_completions(void *opaque, int fd, uint32_t revents)
{
    struct nvme_dev *d = opaque;
    nvme_aio_ack(d->aio);
    if (nvme_file_reap(d) == 0)
        return;
    nvme_irq_flush(d);
    nvme_file_quiesce_check(d);
    /* A queue the in-flight limit held back may go on. */
    nvme_kick(d);
}

/* ---- files a destroyed device may still write ------------------------------------ */

/* A file (or a block device: its device number) as the kernel knows it. */
struct file_id {
    uint64_t dev, ino;
};

static int file_id_of(int fd, struct file_id *id)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    *id = S_ISBLK(st.st_mode) ? (struct file_id){st.st_rdev, 0}
                              : (struct file_id){st.st_dev, st.st_ino};
    return 0;
}

/* The files of destroyed devices whose commands were still in flight (see
 * nvme_backing_close): until those finish, a write of the old device may
 * land after the new one's, so no new namespace goes on such a file. A
 * file may be here more than once. Any thread, under held_lock. */
struct held_file {
    struct file_id id;
    struct held_file *next;
};

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static struct held_file *held_files;

static bool file_held(const struct file_id *id)
{
    bool found = false;
    pthread_mutex_lock(&held_lock);
    for (const struct held_file *h = held_files; h && !found; h = h->next)
        found = h->id.dev == id->dev && h->id.ino == id->ino;
    pthread_mutex_unlock(&held_lock);
    return found;
}

/* 0, or -ENOMEM: the file is not held then. */
static int hold_file(const struct file_id *id)
{
    struct held_file *h = malloc(sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->id = *id;
    pthread_mutex_lock(&held_lock);
    h->next = held_files;
    held_files = h;
    pthread_mutex_unlock(&held_lock);
    return 0;
}

static void unhold_file(const struct file_id *id)
{
    pthread_mutex_lock(&held_lock);
    for (struct held_file **p = &held_files; *p; p = &(*p)->next)
        if ((*p)->id.dev == id->dev && (*p)->id.ino == id->ino) {
            struct held_file *h = *p;
            *p = h->next;
            free(h);
            break;
        }
    pthread_mutex_unlock(&held_lock);
}

/* Two namespaces on one file would each overwrite the other's blocks. */
static int check_distinct(struct nvme_dev *d, const struct nvme_ns *ns, const char *path)
{
    for (uint32_t i = 0; i < NVME_MAX_NS; i++) {
        const struct nvme_ns *o = &d->ns[i];
        if (o == ns || o->fd < 0 || o->file_dev != ns->file_dev || o->file_ino != ns->file_ino)
            continue;
        d->svc->set_error(d->host,
                          "nvme: namespaces %u and %u are both on %s: give each its own file",
                          o->nsid, ns->nsid, path);
        return -EINVAL;
    }
    return 0;
}

/* The engine every backing file of the device shares, made with the first. */
static int start_engine(struct nvme_dev *d, enum nvme_aio_kind kind)
{
    const struct muserd_host_services *svc = d->svc;

    if (d->aio)
        return 0;
    int r = nvme_aio_new(kind, NVME_AIO_DEPTH, &d->aio);
    if (r < 0 && kind == NVME_AIO_IO_URING) {
        svc->set_error(d->host,
                       "nvme: \"aio\": \"io_uring\" cannot be had here (%s: seccomp, "
                       "kernel.io_uring_disabled or an old kernel); \"auto\" falls back to threads",
                       strerror(-r));
        return -EINVAL; /* the config asks for what this host does not give */
    }
    if (r < 0) {
        svc->set_error(d->host, "nvme: cannot set up asynchronous I/O for the backing file: %s",
                       strerror(-r));
        return r;
    }
    r = svc->watch_fd(d->host, nvme_aio_event_fd(d->aio), EPOLLIN, on_completions, d,
                      &d->aio_watch);
    if (r < 0) {
        svc->set_error(d->host, "nvme: cannot watch the I/O completions: %s", strerror(-r));
        return r;
    }
    return 0;
}

int nvme_backing_open(struct nvme_dev *d, struct nvme_ns *ns, const char *path, uint32_t block_size,
                      bool read_only, enum nvme_aio_kind kind)
{
    const struct muserd_host_services *svc = d->svc;
    uint32_t nsid = ns->nsid;
    uint64_t size;
    bool direct;

    bool memory;
    int fd = open_backing(path, read_only, block_size, &size, &direct, &memory);
    if (fd == -ENOTBLK) {
        svc->set_error(d->host,
                       "nvme: the backing of namespace %u, %s, must be a regular file or a block "
                       "device",
                       nsid, path);
        return -EINVAL;
    }
    if (fd < 0) {
        bool denied = fd == -EACCES || fd == -EPERM;
        svc->set_error(d->host, "nvme: cannot open the backing of namespace %u, %s,%s: %s%s", nsid,
                       path, read_only ? " for reading" : " for reading and writing", strerror(-fd),
                       denied ? " (muserd opens it as the user it runs as: give that user access)"
                              : "");
        return -EINVAL; /* the config names a path that will not do */
    }
    ns->fd = fd;
    struct file_id id = {0};
    int r = file_id_of(fd, &id);
    if (r < 0) {
        svc->set_error(d->host, "nvme: cannot fstat the backing of namespace %u, %s: %s", nsid,
                       path, strerror(-r));
        return r;
    }
    ns->file_dev = id.dev;
    ns->file_ino = id.ino;
    if (file_held(&id)) {
        svc->set_error(d->host,
                       "nvme: the backing of namespace %u, %s, still has writes in flight from a "
                       "device destroyed before they finished (its storage is slow or not "
                       "answering); create this device again once they have",
                       nsid, path);
        return -EBUSY;
    }
    r = check_distinct(d, ns, path);
    if (r < 0)
        return r;
    size -= size % block_size;
    if (size < NVME_SIZE_MIN) {
        svc->set_error(d->host,
                       "nvme: the backing of namespace %u, %s, holds %" PRIu64 " bytes of %" PRIu32
                       "-byte blocks; a namespace needs at least 1 MiB (grow it with truncate -s)",
                       nsid, path, size, block_size);
        return -EINVAL;
    }
    r = start_engine(d, kind);
    if (r < 0)
        return r;
    ns->size = size;
    ns->block_size = block_size;
    ns->lba_shift = (uint32_t)__builtin_ctz(block_size);
    ns->nr_blocks = size / block_size;
    ns->read_only = read_only;
    ns->direct = direct;
    ns->in_memory = memory;
    svc->log(d->host, MUSERD_LOG_INFO, "nvme: namespace %u on %s: %" PRIu64 " bytes, %s, %s", nsid,
             path, size,
             memory   ? "in memory (tmpfs): copied at once"
             : direct ? "O_DIRECT"
                      : "buffered",
             nvme_aio_name(d->aio));
    return 0;
}

/* What commands in flight may still use when the device goes: handed to
 * the thread that waits for them (nvme_file_abandon), released after. */
struct leftovers {
    int fds[NVME_MAX_NS];
    struct file_id ids[NVME_MAX_NS];
    bool held[NVME_MAX_NS]; /* ids[i] is in held_files */
    uint8_t *zeros;
    bool on_stack; /* no memory for it: nothing is in flight any more */
};

/* Any thread: the drainer's, once everything in flight is back. The hold
 * goes first: once the fd is closed, a create must not find it held. */
static void release_leftovers(void *arg)
{
    struct leftovers *l = arg;
    for (uint32_t i = 0; i < NVME_MAX_NS; i++) {
        if (l->held[i])
            unhold_file(&l->ids[i]);
        if (l->fds[i] >= 0)
            close(l->fds[i]);
    }
    free(l->zeros);
    if (!l->on_stack)
        free(l);
}

/* Destroy: a disk that hangs must not hold the I/O thread (and every other
 * device on it) until it answers, so the commands still in flight are
 * waited for elsewhere, and their files closed then. */
void nvme_backing_close(struct nvme_dev *d)
{
    if (d->aio_watch)
        d->svc->unwatch_fd(d->aio_watch);
    d->aio_watch = NULL;
    struct leftovers fallback = {.on_stack = true}, *l = malloc(sizeof(*l));
    if (l)
        l->on_stack = false;
    else if (d->aio)
        nvme_file_drain(d); /* no memory to hand them over: wait here */
    if (!l)
        l = &fallback;
    uint32_t inflight = nvme_file_inflight(d);
    for (uint32_t i = 0; i < NVME_MAX_NS; i++) {
        /* Only a file with writes in flight: a read cannot land on a new
         * device's data. */
        l->fds[i] = d->ns[i].fd;
        l->ids[i] = (struct file_id){d->ns[i].file_dev, d->ns[i].file_ino};
        l->held[i] = d->ns[i].writes_inflight > 0 && l->fds[i] >= 0 && hold_file(&l->ids[i]) == 0;
        d->ns[i].fd = -1;
    }
    l->zeros = d->zeros;
    d->zeros = NULL;
    if (!d->aio) {
        release_leftovers(l);
        return;
    }
    if (inflight > 0)
        d->svc->log(d->host, MUSERD_LOG_WARNING,
                    "nvme: destroyed with %u operations in flight on its backing files: those "
                    "not started are cancelled, the others finish on their own, and the files "
                    "stay open until then (a new device on one with writes among them is refused "
                    "meanwhile)",
                    inflight);
    nvme_file_abandon(d, release_leftovers, l);
}
