/* SPDX-License-Identifier: MIT */
#include "vfu/dma.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "util/macro.h"
#include "vfu/dma-guard.h"

struct vfu_dma {
    uint32_t max_maps;
    size_t n;
    /* Sorted by iova, never overlapping. Each change builds a new array and
     * swaps it in, so a reader holding the old one keeps a consistent view. */
    struct vfu_dma_region *regions;
    /* Set by the SIGBUS guard when the client shrank a mapped file. */
    volatile sig_atomic_t faulted;
};

int vfu_dma_new(uint32_t max_maps, struct vfu_dma **ret)
{
    struct vfu_dma *dma = calloc(1, sizeof(*dma));
    if (!dma)
        return -ENOMEM;
    dma->max_maps = max_maps;
    *ret = dma;
    return 0;
}

static void region_release(struct vfu_dma_region *r)
{
    if (r->mmap_base) {
        dma_guard_remove(r->mmap_base);
        munmap(r->mmap_base, r->mmap_len);
    }
    free(r->dirty);
}

void vfu_dma_free(struct vfu_dma *dma)
{
    if (!dma)
        return;
    for (size_t i = 0; i < dma->n; i++)
        region_release(&dma->regions[i]);
    free(dma->regions);
    free(dma);
}

/* Index of the first region whose iova is >= iova (dma->n if none). */
static size_t lower_bound(const struct vfu_dma *dma, uint64_t iova)
{
    size_t lo = 0, hi = dma->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dma->regions[mid].iova < iova)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The granule mmap() takes offsets and lengths in for this file: the huge
 * page size on hugetlbfs (also a memfd made with MFD_HUGETLB), else the
 * system page size. */
static int file_page_size(int fd, uint64_t *ret)
{
    struct statfs sfs;

    if (fstatfs(fd, &sfs) < 0)
        return -errno;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t size = (uint64_t)page;
    if ((unsigned long)sfs.f_type == HUGETLBFS_MAGIC && sfs.f_bsize > page)
        size = (uint64_t)sfs.f_bsize;
    if (size & (size - 1))
        return -EINVAL;
    *ret = size;
    return 0;
}

/* Maps the file range behind r. QEMU maps guest RAM sections at offsets that
 * need not be aligned to the file's pages (a section at 1 MiB of a 2 MiB
 * hugetlb file): we map from the page below and keep the sub-offset. */
static int map_fd(struct vfu_dma *dma, struct vfu_dma_region *r, int fd)
{
    uint64_t page = 0, len, end, map_end;
    int ret = file_page_size(fd, &page);
    if (ret < 0)
        return ret;
    uint64_t delta = r->offset & (page - 1);

    /* mmap() takes an off_t and a size_t: the whole file range must fit both. */
    if (__builtin_add_overflow(r->offset, r->size, &end) || end > (uint64_t)INT64_MAX ||
        __builtin_add_overflow(end, page - 1, &map_end))
        return -EINVAL;
    map_end &= ~(page - 1);
    len = map_end - (r->offset - delta);
    if (len > SIZE_MAX)
        return -EINVAL;

    /* Touching a mapping past the end of its file raises SIGBUS and would
     * kill the daemon: refuse a range the file does not cover. (A client that
     * shrinks the file later can still do that; QEMU seals its memfds.) */
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) && end > (uint64_t)st.st_size)
        return -EINVAL;

    /* A map the client allows neither read nor write of is kept PROT_NONE:
     * valid for the table, refused by vfu_dma_translate(). */
    int prot = PROT_NONE;
    if (r->prot & VFU_DMA_FLAG_READ)
        prot |= PROT_READ;
    if (r->prot & VFU_DMA_FLAG_WRITE)
        prot |= PROT_WRITE;

    void *base = mmap(NULL, (size_t)len, prot, MAP_SHARED, fd, (off_t)(r->offset - delta));
    if (base == MAP_FAILED)
        return -errno;
    int g = dma_guard_add(base, (size_t)len, &dma->faulted);
    if (g < 0) {
        munmap(base, (size_t)len);
        return g;
    }
    r->mmap_base = base;
    r->mmap_len = (size_t)len;
    r->vaddr = (uint8_t *)base + delta;
    return 0;
}

int vfu_dma_map(struct vfu_dma *dma, const struct vfu_dma_map *req, int fd)
{
    uint64_t end;
    int r;

    if (req->size == 0 || __builtin_add_overflow(req->address, req->size, &end))
        return -EINVAL;
    if (req->flags & ~(VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE))
        return -EINVAL;

    size_t i = lower_bound(dma, req->address);
    if (i > 0) {
        const struct vfu_dma_region *prev = &dma->regions[i - 1];
        if (prev->iova + prev->size > req->address)
            return -EEXIST;
    }
    if (i < dma->n && dma->regions[i].iova < end)
        return -EEXIST;
    if (dma->n >= dma->max_maps)
        return -ENOSPC;

    struct vfu_dma_region region = {
        .iova = req->address,
        .size = req->size,
        .prot = req->flags,
    };
    if (fd >= 0) {
        region.offset = req->offset;
        r = map_fd(dma, &region, fd);
        if (r < 0)
            return r;
    }

    struct vfu_dma_region *regions = malloc((dma->n + 1) * sizeof(*regions));
    if (!regions) {
        region_release(&region);
        return -ENOMEM;
    }
    if (dma->n > 0) {
        memcpy(regions, dma->regions, i * sizeof(*regions));
        memcpy(regions + i + 1, dma->regions + i, (dma->n - i) * sizeof(*regions));
    }
    regions[i] = region;
    /* The mapping keeps the memory; the fd would only cost one per map. */
    safe_close(fd);

    free(dma->regions);
    dma->regions = regions;
    dma->n++;
    return 0;
}

int vfu_dma_unmap(struct vfu_dma *dma, uint64_t iova, uint64_t size, vfu_dma_unmap_fn notify,
                  void *opaque)
{
    uint64_t end;
    if (size == 0 || __builtin_add_overflow(iova, size, &end))
        return -EINVAL;

    /* [first, last) are the regions inside the range; one that only
     * overlaps it at either edge cannot be split. */
    size_t first = lower_bound(dma, iova);
    if (first > 0) {
        const struct vfu_dma_region *prev = &dma->regions[first - 1];
        if (prev->iova + prev->size > iova)
            return -EINVAL;
    }
    size_t last = first;
    while (last < dma->n && dma->regions[last].iova < end) {
        const struct vfu_dma_region *r = &dma->regions[last];
        if (r->iova + r->size > end)
            return -EINVAL;
        last++;
    }
    size_t gone_n = last - first;
    if (gone_n == 0)
        return 0;

    struct vfu_dma_region *regions = NULL;
    if (dma->n > gone_n) {
        regions = malloc((dma->n - gone_n) * sizeof(*regions));
        if (!regions)
            return -ENOMEM;
        memcpy(regions, dma->regions, first * sizeof(*regions));
        memcpy(regions + first, dma->regions + last, (dma->n - last) * sizeof(*regions));
    }

    struct vfu_dma_region *old = TAKE_PTR(dma->regions);
    dma->regions = regions;
    dma->n -= gone_n;

    for (size_t i = first; i < last; i++) {
        if (notify)
            notify(opaque, old[i].iova, old[i].size);
        region_release(&old[i]);
    }
    free(old);
    return 0;
}

void vfu_dma_unmap_all(struct vfu_dma *dma, vfu_dma_unmap_fn notify, void *opaque)
{
    struct vfu_dma_region *regions = TAKE_PTR(dma->regions);
    size_t n = dma->n;

    dma->n = 0;
    for (size_t i = 0; i < n; i++) {
        if (notify)
            notify(opaque, regions[i].iova, regions[i].size);
        region_release(&regions[i]);
    }
    free(regions);
}

const struct vfu_dma_region *vfu_dma_find(const struct vfu_dma *dma, uint64_t iova, uint64_t len)
{
    uint64_t end;
    if (len == 0 || __builtin_add_overflow(iova, len, &end))
        return NULL;

    /* The candidate is the last region starting at or below iova. */
    size_t i = lower_bound(dma, iova);
    if (i < dma->n && dma->regions[i].iova == iova)
        i++;
    if (i == 0)
        return NULL;
    const struct vfu_dma_region *r = &dma->regions[i - 1];
    return range_within(iova - r->iova, len, r->size) ? r : NULL;
}

int vfu_dma_translate(const struct vfu_dma *dma, uint64_t iova, uint64_t len, uint32_t prot,
                      void **ptr)
{
    const struct vfu_dma_region *r = vfu_dma_find(dma, iova, len);
    if (!r)
        return -ENOENT;
    if (r->prot == 0 || (prot & ~r->prot) != 0)
        return -EACCES;
    if (!r->vaddr)
        return -EREMOTE;
    *ptr = (uint8_t *)r->vaddr + (iova - r->iova);
    return 0;
}

size_t vfu_dma_count(const struct vfu_dma *dma)
{
    return dma->n;
}

bool vfu_dma_take_fault(struct vfu_dma *dma)
{
    if (!dma || !dma->faulted)
        return false;
    dma->faulted = 0;
    return true;
}
