/* SPDX-License-Identifier: MIT */
/*
 * The thread-pool engine, for where io_uring is not to be had: a few
 * workers make the blocking calls (pread, pwrite, fdatasync, fallocate)
 * and hand finished requests back through a list and an eventfd.
 *
 * Threads: submit, commit, reap and fini run on the device's I/O thread;
 * the workers take requests from `todo` and put them on `finished`, both
 * under `lock`, and touch nothing else but the request and its buffer.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nvme-aio-engine.h"

#define POOL_WORKERS 4

struct req_list {
    struct nvme_aio_req *head, **tail;
};

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct req_list todo, finished;
    unsigned nr_finished; /* written under lock, read without it by ready() */
    bool stopping;
    int event_fd;
    unsigned nr_workers;
    pthread_t workers[POOL_WORKERS];
};

static void list_init(struct req_list *l)
{
    l->head = NULL;
    l->tail = &l->head;
}

static void list_push(struct req_list *l, struct nvme_aio_req *req)
{
    req->next = NULL;
    *l->tail = req;
    l->tail = &req->next;
}

static struct nvme_aio_req *list_pop(struct req_list *l)
{
    struct nvme_aio_req *req = l->head;
    if (req) {
        l->head = req->next;
        if (!l->head)
            l->tail = &l->head;
    }
    return req;
}

/* Whole transfers: a short read or write goes on from where it stopped
 * (end of file: what was moved is the result). */
static int64_t transfer(const struct nvme_aio_req *req, bool write)
{
    int fd = req->fd;
    uint64_t done = 0;
    while (done < req->len) {
        ssize_t n =
            write ? pwrite(fd, (const char *)req->buf + done, req->len - done,
                           (off_t)(req->off + done))
                  : pread(fd, (char *)req->buf + done, req->len - done, (off_t)(req->off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (uint64_t)n;
    }
    return (int64_t)done;
}

static int64_t execute(const struct nvme_aio_req *req)
{
    int fd = req->fd;
    switch (req->op) {
    case NVME_AIO_READ:
        return transfer(req, false);
    case NVME_AIO_WRITE:
        return transfer(req, true);
    case NVME_AIO_FLUSH:
        return fdatasync(fd) < 0 ? -errno : 0;
    case NVME_AIO_PUNCH:
        return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)req->off,
                         (off_t)req->len) < 0
                   ? -errno
                   : 0;
    }
    return -EINVAL;
}

static void *worker(void *opaque)
{
    struct pool *p = opaque;
    static const uint64_t one = 1;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        struct nvme_aio_req *req = list_pop(&p->todo);
        if (!req) {
            if (p->stopping)
                break;
            pthread_cond_wait(&p->work, &p->lock);
            continue;
        }
        pthread_mutex_unlock(&p->lock);
        req->result = execute(req);
        pthread_mutex_lock(&p->lock);
        list_push(&p->finished, req);
        __atomic_store_n(&p->nr_finished, p->nr_finished + 1, __ATOMIC_RELEASE);
        if (write(p->event_fd, &one, sizeof(one)) < 0) {
            /* The counter cannot overflow at our rates; the request is
             * on the list either way. */
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void pool_stop(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nr_workers; i++)
        pthread_join(p->workers[i], NULL);
}

static void pool_free(struct pool *p)
{
    pool_stop(p);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    if (p->event_fd >= 0)
        close(p->event_fd);
    free(p);
}

static int pool_init(struct nvme_aio *aio, uint32_t depth)
{
    struct pool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    list_init(&p->todo);
    list_init(&p->finished);
    p->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (p->event_fd < 0) {
        int r = -errno;
        pool_free(p);
        return r;
    }
    for (; p->nr_workers < POOL_WORKERS; p->nr_workers++) {
        int r = pthread_create(&p->workers[p->nr_workers], NULL, worker, p);
        if (r != 0) {
            pool_free(p);
            return -r;
        }
    }
    aio->priv = p;
    aio->event_fd = p->event_fd;
    return 0;
}

static void pool_submit(struct nvme_aio *aio, struct nvme_aio_req *req)
{
    struct pool *p = aio->priv;
    pthread_mutex_lock(&p->lock);
    list_push(&p->todo, req);
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

static void pool_commit(struct nvme_aio *aio)
{
    /* Each submit already woke a worker. */
}

/* The workers' finished requests, as a list the caller now owns. */
static struct nvme_aio_req *take_finished(struct pool *p)
{
    pthread_mutex_lock(&p->lock);
    struct nvme_aio_req *req = p->finished.head;
    list_init(&p->finished);
    __atomic_store_n(&p->nr_finished, 0, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&p->lock);
    return req;
}

static unsigned pool_reap(struct nvme_aio *aio, bool wait, nvme_aio_done_fn done, void *opaque)
{
    struct pool *p = aio->priv;
    unsigned n = 0;

    struct nvme_aio_req *req = take_finished(p);
    if (!req && wait) {
        /* Blocking is for the end only (nvme_aio_free): a worker's next
         * hand-back writes the eventfd. */
        struct pollfd pfd = {.fd = p->event_fd, .events = POLLIN};
        while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
            ;
        eventfd_t ticks;
        if (eventfd_read(p->event_fd, &ticks) < 0) {
            /* Emptied already: the list is what counts. */
        }
        req = take_finished(p);
    }
    while (req) {
        struct nvme_aio_req *next = req->next;
        done(opaque, req);
        n++;
        req = next;
    }
    return n;
}

static void pool_cancel(struct nvme_aio *aio)
{
    struct pool *p = aio->priv;
    static const uint64_t one = 1;
    pthread_mutex_lock(&p->lock);
    for (struct nvme_aio_req *req; (req = list_pop(&p->todo));) {
        req->result = -ECANCELED;
        list_push(&p->finished, req);
        __atomic_store_n(&p->nr_finished, p->nr_finished + 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&p->lock);
    if (write(p->event_fd, &one, sizeof(one)) < 0) {
        /* The counter is far from full; the list is what counts. */
    }
}

static bool pool_ready(struct nvme_aio *aio)
{
    struct pool *p = aio->priv;
    return __atomic_load_n(&p->nr_finished, __ATOMIC_ACQUIRE) > 0;
}

static void pool_fini(struct nvme_aio *aio)
{
    pool_free(aio->priv);
}

const struct nvme_aio_engine nvme_aio_threads_engine = {
    .name = "threads",
    .init = pool_init,
    .submit = pool_submit,
    .commit = pool_commit,
    .ready = pool_ready,
    .reap = pool_reap,
    .cancel = pool_cancel,
    .fini = pool_fini,
};
