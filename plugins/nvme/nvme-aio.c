/* SPDX-License-Identifier: MIT */
/*
 * The engine-independent part of nvme-aio.h: choosing an engine, counting
 * requests in flight.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "nvme-aio-engine.h"

int nvme_aio_new(enum nvme_aio_kind kind, uint32_t depth, struct nvme_aio **out)
{
    struct nvme_aio *aio = calloc(1, sizeof(*aio));
    if (!aio)
        return -ENOMEM;
    aio->event_fd = -1;
    int r = -ENOSYS;
    if (kind != NVME_AIO_THREADS) {
        aio->engine = &nvme_aio_uring_engine;
        r = aio->engine->init(aio, depth);
    }
    /* "auto": whatever kept io_uring from us, the pool does the same work. */
    if (r < 0 && kind != NVME_AIO_IO_URING) {
        aio->engine = &nvme_aio_threads_engine;
        r = aio->engine->init(aio, depth);
    }
    if (r < 0) {
        free(aio);
        return r;
    }
    *out = aio;
    return 0;
}

const char *nvme_aio_name(const struct nvme_aio *aio)
{
    return aio->engine->name;
}

int nvme_aio_event_fd(const struct nvme_aio *aio)
{
    return aio->event_fd;
}

uint32_t nvme_aio_inflight(const struct nvme_aio *aio)
{
    return aio->inflight;
}

void nvme_aio_submit(struct nvme_aio *aio, struct nvme_aio_req *req)
{
    aio->inflight++;
    aio->engine->submit(aio, req);
}

void nvme_aio_commit(struct nvme_aio *aio)
{
    aio->engine->commit(aio);
}

struct reap_ctx {
    struct nvme_aio *aio;
    nvme_aio_done_fn done;
    void *opaque;
};

static void counted_done(void *opaque, struct nvme_aio_req *req)
{
    struct reap_ctx *ctx = opaque;
    ctx->aio->inflight--;
    ctx->done(ctx->opaque, req);
}

void nvme_aio_ack(struct nvme_aio *aio)
{
    uint64_t ticks;
    if (read(aio->event_fd, &ticks, sizeof(ticks)) < 0) {
        /* EAGAIN: nothing to empty. */
    }
}

unsigned nvme_aio_reap(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque)
{
    struct reap_ctx ctx = {aio, done, opaque};
    /* A poll round looks without a syscall. The event fd is emptied before
     * the reap: what finishes after it signals again, so nothing is missed
     * (what finished in between is reaped now and leaves a spurious wake-up). */
    if (!aio->engine->ready(aio))
        return 0;
    nvme_aio_ack(aio);
    unsigned n = aio->engine->reap(aio, false, counted_done, &ctx);
    aio->engine->commit(aio); /* what done submitted */
    return n;
}

void nvme_aio_free(struct nvme_aio *aio, nvme_aio_done_fn done, void *opaque)
{
    if (!aio)
        return;
    struct reap_ctx ctx = {aio, done, opaque};
    aio->engine->commit(aio);
    /* The kernel (or a worker) may still write into a request's buffer:
     * nothing is freed before every request is back. */
    while (aio->inflight > 0)
        aio->engine->reap(aio, true, counted_done, &ctx);
    aio->engine->fini(aio);
    free(aio);
}
