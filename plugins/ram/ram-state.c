/* SPDX-License-Identifier: MIT */
/*
 * Save and load the ram device for migration: registers, the transfer in
 * progress and the RAM contents, in a fixed little-endian layout.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ram-dev.h"

/* Migration stream, little-endian: this header, then the RAM contents. */
#define RAM_STATE_MAGIC   0x54534d52u /* "RMST" */
#define RAM_STATE_VERSION 1u

#define RAM_STATE_TO_GUEST     (1u << 0)
#define RAM_STATE_IRQ_DEFERRED (1u << 1)

struct ram_state {
    uint32_t magic;
    uint32_t version;
    uint32_t scratch;
    uint32_t doorbell_count;
    uint32_t dma_len;
    uint32_t dma_ctrl;
    uint32_t dma_status;
    uint32_t xfer_len;
    uint32_t xfer_done;
    uint32_t flags; /* RAM_STATE_* */
    uint64_t dma_addr;
    uint64_t dma_offset;
    uint64_t xfer_addr;
    uint64_t xfer_offset;
    uint64_t ram_size; /* must match the destination's "size" */
};
_Static_assert(sizeof(struct ram_state) == 80, "ram state layout is fixed");

int ram_save_state(void *dev, void **buf, size_t *len)
{
    struct ram_dev *d = dev;
    struct ram_state s;
    uint8_t *out;

    out = malloc(sizeof(s) + d->size);
    if (!out)
        return -ENOMEM;
    ram_doorbell_drain(d);
    /* A chunk still on the wire is not counted in xfer_done: the destination
     * copies it again, which gives the same bytes. */
    s = (struct ram_state){
        .magic = htole32(RAM_STATE_MAGIC),
        .version = htole32(RAM_STATE_VERSION),
        .scratch = htole32(d->scratch),
        .doorbell_count = htole32(d->doorbell_count),
        .dma_len = htole32(d->dma_len),
        .dma_ctrl = htole32(d->dma_ctrl),
        .dma_status = htole32(d->dma_status),
        .xfer_len = htole32(d->xfer_len),
        .xfer_done = htole32(d->xfer_done),
        .flags = htole32((d->xfer_to_guest ? RAM_STATE_TO_GUEST : 0) |
                         (d->irq_deferred ? RAM_STATE_IRQ_DEFERRED : 0)),
        .dma_addr = htole64(d->dma_addr),
        .dma_offset = htole64(d->dma_offset),
        .xfer_addr = htole64(d->xfer_addr),
        .xfer_offset = htole64(d->xfer_offset),
        .ram_size = htole64(d->size),
    };
    memcpy(out, &s, sizeof(s));
    memcpy(out + sizeof(s), d->mem, d->size);
    *buf = out;
    *len = sizeof(s) + d->size;
    return 0;
}

int ram_load_state(void *dev, const void *buf, size_t len)
{
    const uint32_t status_bits = RAM_DMA_STATUS_BUSY | RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR |
                                 RAM_DMA_STATUS_ERRNO_MASK;
    struct ram_dev *d = dev;
    struct ram_state s;
    uint32_t status, flags, xfer_len, xfer_done;
    uint64_t xfer_offset, xfer_addr, end;

    if (!buf || len < sizeof(s))
        return -EINVAL;
    memcpy(&s, buf, sizeof(s));
    if (le32toh(s.magic) != RAM_STATE_MAGIC || le32toh(s.version) != RAM_STATE_VERSION)
        return -EINVAL;
    if (le64toh(s.ram_size) != d->size || len - sizeof(s) != d->size)
        return -EINVAL;
    status = le32toh(s.dma_status);
    flags = le32toh(s.flags);
    xfer_len = le32toh(s.xfer_len);
    xfer_done = le32toh(s.xfer_done);
    xfer_offset = le64toh(s.xfer_offset);
    xfer_addr = le64toh(s.xfer_addr);
    if ((status & ~status_bits) || (flags & ~(RAM_STATE_TO_GUEST | RAM_STATE_IRQ_DEFERRED)) ||
        (le32toh(s.dma_ctrl) & ~RAM_DMA_CTRL_TO_GUEST))
        return -EINVAL;
    /* A running transfer resumes here, so it gets the checks GO gives it. */
    if ((status & RAM_DMA_STATUS_BUSY) &&
        (xfer_done > xfer_len || __builtin_add_overflow(xfer_offset, (uint64_t)xfer_len, &end) ||
         end > d->size || __builtin_add_overflow(xfer_addr, (uint64_t)xfer_len, &end)))
        return -EINVAL;

    /* Valid: from here on nothing fails, so a bad stream changes nothing. */
    ram_dma_abandon(d);
    ram_doorbell_drain(d);
    d->scratch = le32toh(s.scratch);
    d->doorbell_count = le32toh(s.doorbell_count);
    d->dma_addr = le64toh(s.dma_addr);
    d->dma_offset = le64toh(s.dma_offset);
    d->dma_len = le32toh(s.dma_len);
    d->dma_ctrl = le32toh(s.dma_ctrl);
    d->dma_status = status;
    d->xfer_addr = xfer_addr;
    d->xfer_offset = xfer_offset;
    d->xfer_len = xfer_len;
    d->xfer_done = xfer_done;
    d->xfer_to_guest = flags & RAM_STATE_TO_GUEST;
    d->chunk = RAM_DMA_CHUNK;
    d->irq_deferred = flags & RAM_STATE_IRQ_DEFERRED;
    memcpy(d->mem, (const uint8_t *)buf + sizeof(s), d->size);
    if (!d->quiesced) {
        if (d->irq_deferred)
            ram_raise(d);
        ram_dma_run(d);
    }
    return 0;
}
