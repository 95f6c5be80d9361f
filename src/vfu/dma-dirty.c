/* SPDX-License-Identifier: MIT */
/*
 * Dirty-page logging over the DMA table: one bitmap per mapping, bits set
 * with atomic ORs from whichever thread wrote guest memory, read and cleared
 * by the device's thread for DMA_LOGGING_REPORT.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/macro.h"
#include "vfu/dma-internal.h"

static uint64_t pages_of(const struct vfu_dma_region *r, uint64_t pgsize)
{
    /* Pages the mapping touches: it need not start on a page boundary. */
    uint64_t first = r->iova / pgsize;
    uint64_t last = (r->iova + r->size - 1) / pgsize;
    return last - first + 1;
}

int dma_dirty_alloc(struct vfu_dma_region *r, uint64_t pgsize)
{
    uint64_t words = (pages_of(r, pgsize) + 63) / 64;
    if (words > SIZE_MAX / sizeof(uint64_t))
        return -ENOMEM;
    r->dirty = calloc((size_t)words, sizeof(uint64_t));
    return r->dirty ? 0 : -ENOMEM;
}

void dma_dirty_mark(struct vfu_dma_region *r, uint64_t pgsize, uint64_t iova, uint64_t len)
{
    if (!r->dirty || len == 0)
        return;
    uint64_t start = iova > r->iova ? iova : r->iova;
    uint64_t end = iova + len < r->iova + r->size ? iova + len : r->iova + r->size;
    if (start >= end)
        return;
    uint64_t base = r->iova / pgsize;
    for (uint64_t p = start / pgsize; p <= (end - 1) / pgsize; p++) {
        uint64_t bit = p - base;
        __atomic_fetch_or(&r->dirty[bit / 64], UINT64_C(1) << (bit % 64), __ATOMIC_RELAXED);
    }
}

int vfu_dma_logging_start(struct vfu_dma *dma, uint64_t pgsize)
{
    if (pgsize < 4096 || (pgsize & (pgsize - 1)))
        return -EINVAL;
    pthread_mutex_lock(&dma->lock);
    int r = 0;
    for (size_t i = 0; i < dma->n && r == 0; i++) {
        free(dma->regions[i]->dirty);
        r = dma_dirty_alloc(dma->regions[i], pgsize);
    }
    if (r < 0) {
        /* Off, not on with bitmaps missing: marks would vanish silently. */
        atomic_store(&dma->dirty_pgsize, 0);
        for (size_t i = 0; i < dma->n; i++) {
            free(dma->regions[i]->dirty);
            dma->regions[i]->dirty = NULL;
        }
    } else {
        atomic_store(&dma->dirty_pgsize, pgsize);
    }
    pthread_mutex_unlock(&dma->lock);
    return r;
}

void vfu_dma_logging_stop(struct vfu_dma *dma)
{
    pthread_mutex_lock(&dma->lock);
    atomic_store(&dma->dirty_pgsize, 0);
    for (size_t i = 0; i < dma->n; i++) {
        free(dma->regions[i]->dirty);
        dma->regions[i]->dirty = NULL;
    }
    pthread_mutex_unlock(&dma->lock);
}

bool vfu_dma_logging(const struct vfu_dma *dma)
{
    return atomic_load(&dma->dirty_pgsize) != 0;
}

int vfu_dma_logging_report(struct vfu_dma *dma, uint64_t iova, uint64_t size, uint64_t *bitmap,
                           size_t bitmap_bytes)
{
    uint64_t pgsize = atomic_load(&dma->dirty_pgsize);
    if (pgsize == 0)
        return -ENOENT;
    if (size == 0 || iova % pgsize || size % pgsize)
        return -EINVAL;
    uint64_t pages = size / pgsize;
    if (bitmap_bytes < (pages + 63) / 64 * sizeof(uint64_t))
        return -EINVAL;
    const struct vfu_dma_region *found = vfu_dma_find(dma, iova, size);
    /* The range must lie in one mapping; the last page may run past a
     * mapping that ends inside it. */
    if (!found) {
        found = vfu_dma_find(dma, iova, 1);
        if (!found || iova + size - (found->iova + found->size) >= pgsize)
            return -EINVAL;
    }
    struct vfu_dma_region *r = (struct vfu_dma_region *)found;

    memset(bitmap, 0, (pages + 63) / 64 * sizeof(uint64_t));
    pthread_mutex_lock(&dma->lock);
    uint64_t base = r->iova / pgsize;
    for (uint64_t i = 0; r->dirty && i < pages; i++) {
        uint64_t bit = iova / pgsize + i - base;
        uint64_t mask = UINT64_C(1) << (bit % 64);
        uint64_t old = __atomic_fetch_and(&r->dirty[bit / 64], ~mask, __ATOMIC_RELAXED);
        if (old & mask)
            bitmap[i / 64] |= UINT64_C(1) << (i % 64);
    }
    pthread_mutex_unlock(&dma->lock);
    return 0;
}

void vfu_dma_mark_dirty(struct vfu_dma *dma, uint64_t iova, uint64_t len)
{
    uint64_t pgsize = atomic_load(&dma->dirty_pgsize);
    if (pgsize == 0 || len == 0)
        return;
    pthread_mutex_lock(&dma->lock);
    pgsize = atomic_load(&dma->dirty_pgsize);
    for (size_t i = 0; pgsize && i < dma->n; i++)
        dma_dirty_mark(dma->regions[i], pgsize, iova, len);
    pthread_mutex_unlock(&dma->lock);
}
