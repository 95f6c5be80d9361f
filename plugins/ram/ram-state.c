/* SPDX-License-Identifier: MIT */
/*
 * Save and load the ram device for migration: registers, the transfer in
 * progress and the RAM contents, in a fixed little-endian layout.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ram-dev.h"

/* Migration stream, little-endian: this header, then the RAM contents. */

/* The registers and the DMA engine, without the memory. */
static void header_fill(struct ram_dev *d, struct ram_state *s)
{
    ram_doorbell_drain(d);
    /* A chunk still on the wire is not counted in xfer_done: the destination
     * copies it again, which gives the same bytes. */
    *s = (struct ram_state){
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
}

static int header_check(const struct ram_dev *d, const struct ram_state *s)
{
    const uint32_t status_bits = RAM_DMA_STATUS_BUSY | RAM_DMA_STATUS_DONE | RAM_DMA_STATUS_ERROR |
                                 RAM_DMA_STATUS_ERRNO_MASK;
    uint32_t status = le32toh(s->dma_status), flags = le32toh(s->flags);
    uint32_t xfer_len = le32toh(s->xfer_len), xfer_done = le32toh(s->xfer_done);
    uint64_t xfer_offset = le64toh(s->xfer_offset), xfer_addr = le64toh(s->xfer_addr), end;

    if (le32toh(s->magic) != RAM_STATE_MAGIC || le32toh(s->version) != RAM_STATE_VERSION)
        return -EINVAL;
    if (le64toh(s->ram_size) != d->size)
        return -EINVAL;
    if ((status & ~status_bits) || (flags & ~(RAM_STATE_TO_GUEST | RAM_STATE_IRQ_DEFERRED)) ||
        (le32toh(s->dma_ctrl) & ~RAM_DMA_CTRL_TO_GUEST))
        return -EINVAL;
    /* A running transfer resumes here, so it gets the checks GO gives it. */
    if ((status & RAM_DMA_STATUS_BUSY) &&
        (xfer_done > xfer_len || __builtin_add_overflow(xfer_offset, (uint64_t)xfer_len, &end) ||
         end > d->size || __builtin_add_overflow(xfer_addr, (uint64_t)xfer_len, &end)))
        return -EINVAL;
    return 0;
}

static void header_apply(struct ram_dev *d, const struct ram_state *s)
{
    ram_dma_abandon(d);
    ram_doorbell_drain(d);
    d->scratch = le32toh(s->scratch);
    d->doorbell_count = le32toh(s->doorbell_count);
    d->dma_addr = le64toh(s->dma_addr);
    d->dma_offset = le64toh(s->dma_offset);
    d->dma_len = le32toh(s->dma_len);
    d->dma_ctrl = le32toh(s->dma_ctrl);
    d->dma_status = le32toh(s->dma_status);
    d->xfer_addr = le64toh(s->xfer_addr);
    d->xfer_offset = le64toh(s->xfer_offset);
    d->xfer_len = le32toh(s->xfer_len);
    d->xfer_done = le32toh(s->xfer_done);
    d->xfer_to_guest = le32toh(s->flags) & RAM_STATE_TO_GUEST;
    d->chunk = RAM_DMA_CHUNK;
    d->irq_deferred = le32toh(s->flags) & RAM_STATE_IRQ_DEFERRED;
    if (!d->quiesced) {
        if (d->irq_deferred)
            ram_raise(d);
        ram_dma_run(d);
    }
}

/*
 * The stream, all in the final phase (the client writes the BAR through its
 * own mapping, which nobody tracks, so nothing sent early would stay true):
 * first the header, then the memory in pieces of a little-endian u64 offset
 * and the bytes from there.
 */
/* All of [off, off+n) of the memory through its memfd. */
static int copy_fd(int fd, void *buf, size_t n, uint64_t off, bool write)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t k = write ? pwrite(fd, p, n, (off_t)off) : pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return k < 0 ? -errno : -EIO;
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

int ram_state_save(void *dev, enum muserd_state_phase phase, void *buf, size_t len, size_t *written)
{
    struct ram_dev *d = dev;
    uint8_t *out = buf;

    *written = 0;
    if (phase != MUSERD_STATE_FINAL)
        return 0;
    if (!d->save_header_sent) {
        if (len < sizeof(struct ram_state))
            return -ENOBUFS;
        struct ram_state s;
        header_fill(d, &s);
        memcpy(out, &s, sizeof(s));
        *written = sizeof(s);
        d->save_header_sent = true;
        d->save_offset = 0;
        return 0;
    }
    if (d->save_offset == d->size) {
        d->save_header_sent = false; /* the end; ready for another save */
        return 0;
    }
    if (len <= sizeof(uint64_t))
        return -ENOBUFS;
    uint64_t n = d->size - d->save_offset;
    if (n > len - sizeof(uint64_t))
        n = len - sizeof(uint64_t);
    uint64_t off = htole64(d->save_offset);
    memcpy(out, &off, sizeof(off));
    /* Through the memfd, not our mapping: pages nobody wrote read as zeros
     * without being faulted in (a VM's page faults are slow). */
    int r = copy_fd(d->mem_fd, out + sizeof(off), n, d->save_offset, false);
    if (r < 0)
        return r;
    d->save_offset += n;
    *written = sizeof(off) + n;
    return 0;
}

int ram_state_save_begin(void *dev)
{
    struct ram_dev *d = dev;
    d->save_header_sent = false;
    d->save_offset = 0;
    return 0;
}

int ram_state_pending(void *dev, enum muserd_state_phase phase, uint64_t *bytes)
{
    struct ram_dev *d = dev;
    *bytes = phase == MUSERD_STATE_FINAL ? sizeof(struct ram_state) + d->size : 0;
    return 0;
}

/* Chunks in order: the header (checked, kept), then the memory from offset
 * 0 up; the header is applied once all of the memory came. */
int ram_state_load(void *dev, const void *buf, size_t len)
{
    struct ram_dev *d = dev;
    const uint8_t *in = buf;

    if (!d->load_header_seen) {
        struct ram_state s;
        if (len != sizeof(s))
            return -EINVAL;
        memcpy(&s, in, sizeof(s));
        int r = header_check(d, &s);
        if (r < 0)
            return r;
        d->load_header = s;
        d->load_header_seen = true;
        d->load_offset = 0;
        return 0;
    }
    uint64_t off;
    if (len <= sizeof(off))
        return -EINVAL;
    memcpy(&off, in, sizeof(off));
    off = le64toh(off);
    uint64_t n = len - sizeof(off);
    if (off != d->load_offset || n > d->size - off)
        return -EINVAL;
    /* Through the memfd: a fresh destination's pages are filled by the
     * kernel, not faulted into our mapping one by one; whoever uses them
     * maps them when it does. */
    int r = copy_fd(d->mem_fd, (void *)(in + sizeof(off)), n, off, true);
    if (r < 0)
        return r;
    d->load_offset += n;
    return 0;
}

int ram_state_load_end(void *dev)
{
    struct ram_dev *d = dev;
    bool complete = d->load_header_seen && d->load_offset == d->size;
    if (complete)
        header_apply(d, &d->load_header);
    d->load_header_seen = false;
    d->load_offset = 0;
    return complete ? 0 : -EINVAL;
}
