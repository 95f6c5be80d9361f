/* SPDX-License-Identifier: MIT */
/*
 * Data pointers: PRP1, PRP2 and PRP lists (NVMe 1.4 section 4.3), walked
 * for one command and copied through the host's dma_get/dma_put, so that a
 * pointer outside the memory the client mapped fails the command (Data
 * Transfer Error) instead of touching anything else. Pages the walk finds
 * adjacent are copied in one piece.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "nvme-dev.h"

#define PAGE_MASK ((uint64_t)NVME_PAGE_SIZE - 1)

int nvme_dma_copy(struct nvme_dev *d, uint64_t iova, void *buf, uint64_t len, bool to_guest)
{
    struct muserd_dma_ref ref = {
        .size = sizeof(ref),
        .prot = to_guest ? MUSERD_DMA_WRITE : MUSERD_DMA_READ,
        .iova = iova,
        .len = len,
    };
    uint64_t end;

    if (__builtin_add_overflow(iova, len, &end))
        return -EINVAL;
    int r = d->svc->dma_get(d->host, &ref);
    if (r < 0)
        return r; /* -EREMOTE too: memory without an fd is not served yet */
    if (to_guest)
        memcpy(ref.ptr, buf, len);
    else
        memcpy(buf, ref.ptr, len);
    d->svc->dma_put(d->host, &ref, to_guest);
    return 0;
}

/* A run of guest memory adjacent pages make, copied when the next page is
 * elsewhere or the walk ends. */
struct run {
    uint64_t iova, len;
    uint8_t *buf;
};

/* Copy a run: in one piece, or page by page when it crosses from one DMA
 * mapping into the next (adjacent addresses need not be one mapping). */
static int run_copy(struct nvme_dev *d, const struct run *run, bool to_guest)
{
    int r = nvme_dma_copy(d, run->iova, run->buf, run->len, to_guest);
    if (r != -ENOENT || run->len <= NVME_PAGE_SIZE - (run->iova & PAGE_MASK))
        return r;
    for (uint64_t done = 0; done < run->len;) {
        uint64_t iova = run->iova + done;
        uint64_t n = NVME_PAGE_SIZE - (iova & PAGE_MASK);
        if (n > run->len - done)
            n = run->len - done;
        r = nvme_dma_copy(d, iova, run->buf + done, n, to_guest);
        if (r < 0)
            return r;
        done += n;
    }
    return 0;
}

static int run_add(struct nvme_dev *d, struct run *run, uint64_t iova, uint64_t len, uint8_t **buf,
                   bool to_guest)
{
    if (run->len > 0 && run->iova + run->len == iova) {
        run->len += len;
    } else {
        if (run->len > 0 && run_copy(d, run, to_guest) < 0)
            return -EIO;
        *run = (struct run){iova, len, *buf};
    }
    *buf += len;
    return 0;
}

uint16_t nvme_prp_copy(struct nvme_dev *d, uint64_t prp1, uint64_t prp2, void *buf, uint64_t len,
                       bool to_guest)
{
    struct run run = {0};
    uint8_t *p = buf;

    if (len == 0)
        return NVME_SC_SUCCESS;
    if (len > NVME_MAX_XFER)
        return NVME_SC_INVALID_FIELD;
    if (prp1 & 3)
        return NVME_SC_PRP_OFFSET_INVALID; /* dword aligned at least */
    uint64_t first = NVME_PAGE_SIZE - (prp1 & PAGE_MASK);
    if (first > len)
        first = len;
    if (run_add(d, &run, prp1, first, &p, to_guest) < 0)
        return NVME_SC_DATA_XFER_ERROR;
    len -= first;

    if (len > 0 && len <= NVME_PAGE_SIZE) {
        /* PRP2 is the second page itself. */
        if (prp2 & PAGE_MASK)
            return NVME_SC_PRP_OFFSET_INVALID;
        if (run_add(d, &run, prp2, len, &p, to_guest) < 0)
            return NVME_SC_DATA_XFER_ERROR;
        len = 0;
    }
    /* PRP2 points at a list; a list page's last entry chains to the next
     * list when more entries follow than the page holds. */
    uint64_t list = prp2;
    while (len > 0) {
        uint64_t entries[NVME_PAGE_SIZE / 8];
        if (list & 7)
            return NVME_SC_PRP_OFFSET_INVALID;
        uint64_t room = (NVME_PAGE_SIZE - (list & PAGE_MASK)) / 8;
        uint64_t need = (len + NVME_PAGE_SIZE - 1) / NVME_PAGE_SIZE;
        bool chain = need > room;
        uint64_t n = chain ? room - 1 : need;
        if (n == 0)
            return NVME_SC_INVALID_FIELD; /* a list page with room for the chain pointer alone */
        if (nvme_dma_copy(d, list, entries, (n + chain) * 8, false) < 0)
            return NVME_SC_DATA_XFER_ERROR;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t page = le64toh(entries[i]);
            uint64_t chunk = len < NVME_PAGE_SIZE ? len : NVME_PAGE_SIZE;
            if (page & PAGE_MASK)
                return NVME_SC_PRP_OFFSET_INVALID;
            if (run_add(d, &run, page, chunk, &p, to_guest) < 0)
                return NVME_SC_DATA_XFER_ERROR;
            len -= chunk;
        }
        if (chain)
            list = le64toh(entries[n]);
    }
    if (run_copy(d, &run, to_guest) < 0)
        return NVME_SC_DATA_XFER_ERROR;
    return NVME_SC_SUCCESS;
}
