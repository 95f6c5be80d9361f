/* SPDX-License-Identifier: MIT */
/*
 * The ram device's DMA engine: copies between guest memory and the RAM BAR
 * in chunks, one per round of a poller. Guest memory shared with an fd is
 * held with dma_get/dma_put around each chunk's copy; memory reached over
 * the socket goes through dma_read/dma_write, which may complete later.
 * Register semantics are in ram-regs.h.
 */
#include <errno.h>
#include <string.h>

#include "ram-dev.h"

void ram_raise(struct ram_dev *d)
{
    if (d->quiesced) {
        d->irq_deferred = true;
        return;
    }
    d->irq_deferred = false;
    d->svc->irq_raise(d->host, 0);
}

static void ram_dma_complete(struct ram_dev *d, int r)
{
    d->dma_status &= ~(RAM_DMA_STATUS_BUSY | RAM_DMA_STATUS_ERRNO_MASK);
    if (r == 0) {
        d->dma_status |= RAM_DMA_STATUS_DONE;
    } else {
        uint32_t err = -r > 0xff ? 0xff : (uint32_t)-r;
        d->dma_status |= RAM_DMA_STATUS_ERROR | (err << RAM_DMA_STATUS_ERRNO_SHIFT);
    }
    ram_raise(d);
}

static void ram_dma_chunk_done(void *opaque, int status);

/*
 * One chunk of the running transfer. Returns 1 when there is more to do at
 * once, 0 when the transfer ended, waits for a chunk over the socket (then
 * ram_dma_chunk_done() moves it on), or is held by quiesce.
 */
static int ram_dma_step(struct ram_dev *d)
{
    if (!(d->dma_status & RAM_DMA_STATUS_BUSY) || d->quiesced || d->in_flight_len != 0)
        return 0;
    uint32_t left = d->xfer_len - d->xfer_done;
    uint32_t n = left < d->chunk ? left : d->chunk;
    uint64_t iova = d->xfer_addr + d->xfer_done;
    uint8_t *p = d->mem + d->xfer_offset + d->xfer_done;
    int r;

    if (left == 0) {
        ram_dma_complete(d, 0);
        return 0;
    }
    /* Memory the client shared with an fd: hold it for the copy (the host
     * answers an unmap meanwhile only after the put) and say what we wrote,
     * for dirty logging. */
    struct muserd_dma_ref ref = {
        .size = sizeof(ref),
        .prot = d->xfer_to_guest ? MUSERD_DMA_WRITE : MUSERD_DMA_READ,
        .iova = iova,
        .len = n,
    };
    r = d->svc->dma_get(d->host, &ref);
    if (r == 0) {
        if (d->xfer_to_guest)
            memcpy(ref.ptr, p, n);
        else
            memcpy(p, ref.ptr, n);
        d->svc->dma_put(d->host, &ref, d->xfer_to_guest);
        d->xfer_done += n;
        return 1;
    }
    if (r == -ENOTCONN)
        r = -ENOENT; /* nothing mapped at all: to the guest, an unmapped address */
    if (r != -EREMOTE) {
        ram_dma_complete(d, r);
        return 0;
    }
    /* Mapped without an fd: over the socket, possibly completing later. */
    if (d->xfer_to_guest)
        r = d->svc->dma_write(d->host, iova, p, n, ram_dma_chunk_done, d);
    else
        r = d->svc->dma_read(d->host, iova, p, n, ram_dma_chunk_done, d);
    if (r == 1) {
        d->in_flight_len = n;
        return 0;
    }
    if (r == -E2BIG && d->chunk > RAM_DMA_MIN_CHUNK) {
        d->chunk /= 2;
        return 1;
    }
    if (r < 0) {
        ram_dma_complete(d, r);
        return 0;
    }
    d->xfer_done += n;
    return 1;
}

/* The poller's round: a chunk, so that a 1 GiB copy never holds the loop up
 * for long; the other devices on the thread go on between chunks. */
int ram_dma_poll(void *opaque)
{
    return ram_dma_step(opaque);
}

/* Move the running transfer on: wake the poller, or, with a host that has
 * none, copy chunk after chunk here. */
void ram_dma_run(struct ram_dev *d)
{
    if (d->dma_poller)
        d->svc->poller_wake(d->dma_poller);
    else
        while (ram_dma_step(d))
            ;
}

static void ram_dma_chunk_done(void *opaque, int status)
{
    struct ram_dev *d = opaque;
    uint32_t n = d->in_flight_len;

    if (d->stale_completions > 0) {
        d->stale_completions--;
        return;
    }
    if (n == 0)
        return; /* not ours to account for: nothing was outstanding */
    d->in_flight_len = 0;
    if (status == -E2BIG && d->chunk > RAM_DMA_MIN_CHUNK) {
        d->chunk /= 2;
    } else if (status < 0) {
        ram_dma_complete(d, status);
        return;
    } else {
        d->xfer_done += n;
    }
    ram_dma_run(d);
}

/* Forget the running transfer, e.g. on reset: an outstanding chunk's
 * completion will still come and must not be taken for a new transfer's. */
void ram_dma_abandon(struct ram_dev *d)
{
    if (d->in_flight_len != 0)
        d->stale_completions++;
    d->in_flight_len = 0;
    d->dma_status &= ~RAM_DMA_STATUS_BUSY;
}

void ram_dma_go(struct ram_dev *d)
{
    uint64_t end;

    if (d->dma_status & RAM_DMA_STATUS_BUSY)
        return;
    if (d->dma_status & (RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR))
        d->svc->irq_lower(d->host);
    d->dma_status = RAM_DMA_STATUS_BUSY;
    d->xfer_addr = d->dma_addr;
    d->xfer_offset = d->dma_offset;
    d->xfer_len = d->dma_len;
    d->xfer_done = 0;
    d->xfer_to_guest = d->dma_ctrl & RAM_DMA_CTRL_TO_GUEST;
    d->chunk = RAM_DMA_CHUNK;

    /* Guest-written numbers: both ends must stay inside their spaces. */
    if (__builtin_add_overflow(d->xfer_offset, (uint64_t)d->xfer_len, &end) || end > d->size ||
        __builtin_add_overflow(d->xfer_addr, (uint64_t)d->xfer_len, &end)) {
        ram_dma_complete(d, -EINVAL);
        return;
    }
    ram_dma_run(d);
}
