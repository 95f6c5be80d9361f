/* SPDX-License-Identifier: MIT */
/*
 * A command's data moved between guest memory and a buffer: the data
 * pointer (PRPs or an SGL) turned into segments by nvme-dptr.c, each copied
 * through the host's dma_get/dma_put, so that a pointer outside the memory
 * the client mapped fails the command (Data Transfer Error) instead of
 * touching anything else. Adjacent pages come as one segment and are
 * copied in one piece.
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

/* Copy [iova, iova+len): in one piece, or page by page when it crosses
 * from one DMA mapping into the next (adjacent addresses need not be one
 * mapping). */
static int run_copy(struct nvme_dev *d, uint64_t iova, uint8_t *buf, uint64_t len, bool to_guest)
{
    int r = nvme_dma_copy(d, iova, buf, len, to_guest);
    if (r != -ENOENT || len <= NVME_PAGE_SIZE - (iova & PAGE_MASK))
        return r;
    for (uint64_t done = 0; done < len;) {
        uint64_t n = NVME_PAGE_SIZE - ((iova + done) & PAGE_MASK);
        if (n > len - done)
            n = len - done;
        r = nvme_dma_copy(d, iova + done, buf + done, n, to_guest);
        if (r < 0)
            return r;
        done += n;
    }
    return 0;
}

/* How nvme_dptr_parse reads PRP lists and SGL segments. */
static int fetch(void *opaque, uint64_t iova, void *buf, size_t len)
{
    return run_copy(opaque, iova, buf, len, false);
}

uint16_t nvme_data_copy(struct nvme_dev *d, const struct nvme_sqe *cmd, void *buf, uint64_t len,
                        bool to_guest)
{
    struct nvme_dptr dptr;
    uint8_t *p = buf;

    uint16_t sc = nvme_dptr_parse(cmd, len, to_guest, fetch, d, &dptr);
    if (sc)
        return sc;
    for (uint32_t i = 0; i < dptr.nr; i++) {
        const struct nvme_dptr_seg *seg = &dptr.seg[i];
        if (!seg->bit_bucket && run_copy(d, seg->iova, p, seg->len, to_guest) < 0)
            return NVME_SC_DATA_XFER_ERROR;
        p += seg->len;
    }
    return NVME_SC_SUCCESS;
}
