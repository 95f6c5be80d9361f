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

/* Bits lo..hi (0..63, lo <= hi) of a word. */
static uint64_t bits_between(unsigned lo, unsigned hi)
{
    uint64_t upto_hi = hi == 63 ? ~UINT64_C(0) : (UINT64_C(1) << (hi + 1)) - 1;
    return upto_hi & ~((UINT64_C(1) << lo) - 1);
}

/* Set bits [first, last] of a report bitmap of nbits bits, a word at a
 * time (a small report page replicates a dirty page into many bits). */
static void set_bits(uint64_t *bitmap, uint64_t nbits, uint64_t first, uint64_t last)
{
    if (first >= nbits)
        return; /* cannot happen: the caller sized the bitmap for the range */
    if (last >= nbits)
        last = nbits - 1;
    for (uint64_t w = first / 64; w <= last / 64; w++) {
        unsigned lo = w == first / 64 ? (unsigned)(first % 64) : 0;
        unsigned hi = w == last / 64 ? (unsigned)(last % 64) : 63;
        bitmap[w] |= bits_between(lo, hi);
    }
}

/* Is all of mapping r's part of logging page `bit` (relative to base) in
 * [iova, last]? Only such a page may be cleared. */
static bool page_inside(const struct vfu_dma_region *r, uint64_t logpg, uint64_t base, uint64_t bit,
                        uint64_t iova, uint64_t last)
{
    uint64_t page = (base + bit) * logpg;
    uint64_t page_last = page + (logpg - 1);
    uint64_t r_last = r->iova + (r->size - 1);
    uint64_t own_first = page > r->iova ? page : r->iova;
    uint64_t own_last = page_last < r_last ? page_last : r_last;
    return own_first >= iova && own_last <= last;
}

/*
 * Report the part [lo, hi] (inclusive: a range may end at the top of the
 * address space) of mapping r. Logging pages are whole at absolute
 * multiples of the logging page size; each dirty one sets every report bit
 * its part in [lo, hi] touches: one bit when report pages are larger (an
 * OR of several logging pages), several when they are smaller (replicated).
 * A logging page is cleared only when its part in the mapping lies wholly
 * in the range: one that straddles the range's edge stays dirty for the
 * report that covers the rest (reporting a page twice costs a copy,
 * dropping it would lose a write).
 */
static void report_region(struct vfu_dma_region *r, uint64_t logpg, uint64_t iova, uint64_t last,
                          uint64_t pgsize, uint64_t lo, uint64_t hi, uint64_t *bitmap,
                          uint64_t nbits)
{
    uint64_t base = r->iova / logpg;
    uint64_t first_bit = lo / logpg - base, last_bit = hi / logpg - base;
    /* Pages between the two edge pages lie wholly in the range. */
    bool clear_first = page_inside(r, logpg, base, first_bit, iova, last);
    bool clear_last = page_inside(r, logpg, base, last_bit, iova, last);

    /* A word at a time, clean words skipped at a load each: the cost is
     * the range's share of the bitmap, whatever page size the report asks. */
    for (uint64_t w = first_bit / 64; w <= last_bit / 64; w++) {
        if (__atomic_load_n(&r->dirty[w], __ATOMIC_RELAXED) == 0)
            continue;
        unsigned lo_b = w == first_bit / 64 ? (unsigned)(first_bit % 64) : 0;
        unsigned hi_b = w == last_bit / 64 ? (unsigned)(last_bit % 64) : 63;
        uint64_t in_range = bits_between(lo_b, hi_b), clearable = in_range;
        if (!clear_first && w == first_bit / 64)
            clearable &= ~(UINT64_C(1) << (first_bit % 64));
        if (!clear_last && w == last_bit / 64)
            clearable &= ~(UINT64_C(1) << (last_bit % 64));
        if ((__atomic_load_n(&r->dirty[w], __ATOMIC_RELAXED) & in_range) == 0)
            continue;
        uint64_t hits = __atomic_fetch_and(&r->dirty[w], ~clearable, __ATOMIC_RELAXED) & in_range;
        for (; hits; hits &= hits - 1) {
            uint64_t b = w * 64 + (uint64_t)__builtin_ctzll(hits);
            uint64_t page = (base + b) * logpg;
            uint64_t a = page > lo ? page : lo;
            uint64_t z = page + (logpg - 1) < hi ? page + (logpg - 1) : hi;
            set_bits(bitmap, nbits, (a - iova) / pgsize, (z - iova) / pgsize);
        }
    }
}

int vfu_dma_logging_report(struct vfu_dma *dma, uint64_t iova, uint64_t length, uint64_t pgsize,
                           uint64_t *bitmap, size_t bitmap_bytes)
{
    uint64_t end, bytes;
    int r = vfu_dma_report_bitmap_size(iova, length, pgsize, &bytes);
    if (r < 0)
        return r;
    if (bitmap_bytes < bytes)
        return -EINVAL;
    if (__builtin_add_overflow(iova, length - 1, &end))
        return -EINVAL;

    memset(bitmap, 0, (size_t)bytes);
    pthread_mutex_lock(&dma->lock);
    uint64_t logpg = atomic_load(&dma->dirty_pgsize);
    /* Regions are sorted and never overlap: holes between them report zero. */
    for (size_t i = 0; logpg && i < dma->n; i++) {
        struct vfu_dma_region *reg = dma->regions[i];
        uint64_t r_last = reg->iova + (reg->size - 1);
        if (!reg->dirty || r_last < iova || reg->iova > end)
            continue;
        uint64_t lo = reg->iova > iova ? reg->iova : iova;
        uint64_t hi = r_last < end ? r_last : end;
        report_region(reg, logpg, iova, end, pgsize, lo, hi, bitmap, bytes * 8);
    }
    pthread_mutex_unlock(&dma->lock);
    return logpg ? 0 : -ENOENT;
}

int vfu_dma_report_bitmap_size(uint64_t iova, uint64_t length, uint64_t pgsize, uint64_t *bytes)
{
    uint64_t end;
    if (pgsize == 0 || (pgsize & (pgsize - 1)) || length == 0 || iova % pgsize)
        return -EINVAL;
    if (__builtin_add_overflow(iova, length - 1, &end))
        return -EINVAL;
    /* Pages, rounded up (the last may be partial), then whole u64 words;
     * computed from the last page's index so that nothing wraps (a length
     * of 2^64-1 at page size 1 is 2^64-1 pages: 2^58 words, too many). */
    uint64_t words = ((length - 1) / pgsize) / 64 + 1;
    if (words > UINT64_MAX / sizeof(uint64_t))
        return -E2BIG;
    *bytes = words * sizeof(uint64_t);
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
