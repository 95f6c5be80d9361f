/* SPDX-License-Identifier: MIT */
/*
 * What an asynchronous I/O engine implements (nvme-aio.c dispatches to it):
 * the io_uring one and the thread pool. Same thread rules as nvme-aio.h.
 */
#pragma once

#include "nvme-aio.h"

struct nvme_aio_engine {
    const char *name;
    /* Set up aio->priv and aio->event_fd: 0 or -errno. */
    int (*init)(struct nvme_aio *aio, uint32_t depth);
    void (*submit)(struct nvme_aio *aio, struct nvme_aio_req *req);
    void (*commit)(struct nvme_aio *aio);
    /* Something finished waits to be handed back: a cheap look, no syscall. */
    bool (*ready)(struct nvme_aio *aio);
    /* Hand back what finished; with wait, block until one has (if any is in
     * flight). The event fd is the caller's to empty, before it calls this. */
    unsigned (*reap)(struct nvme_aio *aio, bool wait, nvme_aio_done_fn done, void *opaque);
    /* Requests not started yet come back (reap) with -ECANCELED, as soon
     * as the engine can tell; those started finish as they will. */
    void (*cancel)(struct nvme_aio *aio);
    /* Nothing is in flight: free priv and the event fd. */
    void (*fini)(struct nvme_aio *aio);
};

struct nvme_aio {
    const struct nvme_aio_engine *engine;
    int event_fd;
    uint32_t inflight;
    void *priv;
};

extern const struct nvme_aio_engine nvme_aio_uring_engine;
extern const struct nvme_aio_engine nvme_aio_threads_engine;
