/* SPDX-License-Identifier: MIT */
/*
 * The io_uring engine: one ring per device (for all its backing files),
 * submitted once per poll round (nvme_aio_commit), its completions
 * announced on an eventfd the ring signals. Threads: as nvme-aio.h says.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "nvme-aio-engine.h"

struct uring {
    struct io_uring ring;
    unsigned staged;              /* SQEs written since the last submit */
    struct nvme_aio_req *refused; /* found no SQE: handed back by the next reap */
};

static int uring_init(struct nvme_aio *aio, uint32_t depth)
{
    struct uring *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    int r = io_uring_queue_init(depth, &u->ring, 0);
    if (r < 0) {
        free(u);
        return r;
    }
    aio->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (aio->event_fd < 0)
        r = -errno;
    else
        r = io_uring_register_eventfd(&u->ring, aio->event_fd);
    if (r < 0) {
        if (aio->event_fd >= 0)
            close(aio->event_fd);
        aio->event_fd = -1;
        io_uring_queue_exit(&u->ring);
        free(u);
        return r;
    }
    aio->priv = u;
    return 0;
}

static void uring_commit(struct nvme_aio *aio)
{
    struct uring *u = aio->priv;
    if (u->staged == 0)
        return;
    /* A failed submit leaves the SQEs in the ring for the next one. */
    int r = io_uring_submit(&u->ring);
    if (r > 0)
        u->staged -= (unsigned)r < u->staged ? (unsigned)r : u->staged;
}

static void uring_submit(struct nvme_aio *aio, struct nvme_aio_req *req)
{
    struct uring *u = aio->priv;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) {
        /* The SQ ring holds `depth` and the caller keeps fewer in flight,
         * so it is full only of staged entries: send them. */
        uring_commit(aio);
        sqe = io_uring_get_sqe(&u->ring);
    }
    if (!sqe) {
        /* Cannot happen while the caller keeps to depth; fail the request
         * rather than lose it. */
        static const uint64_t one = 1;
        req->result = -EAGAIN;
        req->next = u->refused;
        u->refused = req;
        if (write(aio->event_fd, &one, sizeof(one)) < 0) {
            /* The counter is far from full; the next round reaps anyway. */
        }
        return;
    }
    switch (req->op) {
    case NVME_AIO_READ:
        io_uring_prep_read(sqe, req->fd, req->buf, (unsigned)req->len, req->off);
        break;
    case NVME_AIO_WRITE:
        io_uring_prep_write(sqe, req->fd, req->buf, (unsigned)req->len, req->off);
        break;
    case NVME_AIO_FLUSH:
        io_uring_prep_fsync(sqe, req->fd, IORING_FSYNC_DATASYNC);
        break;
    case NVME_AIO_PUNCH:
        io_uring_prep_fallocate(sqe, req->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, req->off,
                                req->len);
        break;
    }
    io_uring_sqe_set_data(sqe, req);
    u->staged++;
}

static unsigned uring_reap(struct nvme_aio *aio, bool wait, nvme_aio_done_fn done, void *opaque)
{
    struct uring *u = aio->priv;
    struct io_uring_cqe *cqe;
    unsigned n = 0;

    while (u->refused) {
        struct nvme_aio_req *req = u->refused;
        u->refused = req->next;
        done(opaque, req);
        n++;
    }
    if (wait && n == 0 && io_uring_peek_cqe(&u->ring, &cqe) == -EAGAIN) {
        uring_commit(aio);
        io_uring_wait_cqe(&u->ring, &cqe);
    }
    while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        struct nvme_aio_req *req = io_uring_cqe_get_data(cqe);
        int res = cqe->res;
        io_uring_cqe_seen(&u->ring, cqe);
        if (!req)
            continue; /* the cancel's own completion (uring_cancel) */
        req->result = res;
        done(opaque, req);
        n++;
    }
    return n;
}

/* One cancel for every request of the ring: those still queued for the
 * kernel's workers come back with -ECANCELED; one a worker has started is
 * signalled, and may end early (-EINTR, a short count) or finish. Either
 * way it comes back, and its file stays held until then. A kernel without
 * IORING_ASYNC_CANCEL_ANY fails the cancel itself, and everything finishes
 * as it will. */
static void uring_cancel(struct nvme_aio *aio)
{
    struct uring *u = aio->priv;
    uring_commit(aio); /* what is staged goes first, to be cancelled too */
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data(sqe, NULL);
    u->staged++;
    uring_commit(aio);
}

static bool uring_ready(struct nvme_aio *aio)
{
    struct uring *u = aio->priv;
    return u->refused || io_uring_cq_ready(&u->ring) > 0;
}

static void uring_fini(struct nvme_aio *aio)
{
    struct uring *u = aio->priv;
    io_uring_queue_exit(&u->ring);
    close(aio->event_fd);
    free(u);
}

const struct nvme_aio_engine nvme_aio_uring_engine = {
    .name = "io_uring",
    .init = uring_init,
    .submit = uring_submit,
    .commit = uring_commit,
    .ready = uring_ready,
    .reap = uring_reap,
    .cancel = uring_cancel,
    .fini = uring_fini,
};
