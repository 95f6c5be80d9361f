/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous I/O on backing files, for file-backed namespaces
 * (nvme-backing.c): reads, writes, fdatasync and hole punching that
 * complete later, so that the device's I/O thread never waits on a disk.
 * Two engines do the work: io_uring (nvme-aio-uring.c) and, where
 * io_uring cannot be set up (seccomp, an old kernel, io_uring_disabled),
 * a small pool of threads (nvme-aio-threads.c) that make the blocking
 * calls.
 *
 * Threads: every function here runs on the device's I/O thread, but for an
 * engine handed to nvme_aio_abandon, which a thread of its own drains from
 * then on (nobody else touches it). The pool's workers touch only the
 * requests they were handed, under the engine's lock; a request is the
 * caller's again when reap hands it back.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum nvme_aio_op {
    NVME_AIO_READ,
    NVME_AIO_WRITE,
    NVME_AIO_FLUSH, /* fdatasync */
    NVME_AIO_PUNCH, /* fallocate(PUNCH_HOLE | KEEP_SIZE): reads as zeros after */
};

enum nvme_aio_kind {
    NVME_AIO_AUTO, /* io_uring, else threads */
    NVME_AIO_IO_URING,
    NVME_AIO_THREADS,
};

/* One operation. The caller owns it (and buf) except between submit and
 * the reap that hands it back. */
struct nvme_aio_req {
    enum nvme_aio_op op;
    int fd; /* the file: one engine serves every namespace of a controller */
    void *buf;
    uint64_t off, len;         /* read and write: at most UINT32_MAX bytes */
    int64_t result;            /* bytes moved (may be short), 0, or -errno */
    struct nvme_aio_req *next; /* the engine's while in flight */
};

typedef void (*nvme_aio_done_fn)(void *opaque, struct nvme_aio_req *req);

struct nvme_aio;

/* An engine with room for `depth` requests in flight: 0 or -errno
 * (-ENOSYS, -EPERM...: io_uring asked for by name is not to be had). */
int nvme_aio_new(enum nvme_aio_kind kind, uint32_t depth, struct nvme_aio **out);
/* "io_uring" or "threads". */
const char *nvme_aio_name(const struct nvme_aio *aio);
/* Readable when finished requests wait for nvme_aio_reap. */
int nvme_aio_event_fd(const struct nvme_aio *aio);
/* Requests submitted and not yet handed back. */
uint32_t nvme_aio_inflight(const struct nvme_aio *aio);
/* Queue req (the caller keeps inflight below depth); it starts at the
 * latest at the next nvme_aio_commit. */
void nvme_aio_submit(struct nvme_aio *aio, struct nvme_aio_req *req);
void nvme_aio_commit(struct nvme_aio *aio);
/* Empty the event fd (its watch fired): call before nvme_aio_reap, so that
 * the watch does not fire again for what the reap hands back. */
void nvme_aio_ack(struct nvme_aio *aio);
/* Hand back every finished request through done(opaque, req), which may
 * submit more; the number handed back. Cheap when nothing finished. */
unsigned nvme_aio_reap(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque);
/* Wait for every request in flight (handed back through done, which must
 * not submit), then free the engine. NULL is fine. */
void nvme_aio_free(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque);
/* The same without waiting: requests not started yet are cancelled (they
 * come back with -ECANCELED), and a thread of its own waits for the rest
 * (done is called on it), frees the engine, then calls release(arg)
 * (NULL: nothing to release). With nothing in flight, or no thread to be
 * had, it is all done before this returns. The plugin's unload waits for
 * these threads. */
void nvme_aio_abandon(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque,
                      void (*release)(void *arg), void *arg);
