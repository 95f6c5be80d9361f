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
#include "vfu/dma-internal.h"

int vfu_dma_new(uint32_t max_maps, struct vfu_dma **ret)
{
    struct vfu_dma *dma = calloc(1, sizeof(*dma));
    if (!dma)
        return -ENOMEM;
    dma->max_maps = max_maps;
    pthread_mutex_init(&dma->lock, NULL);
    *ret = dma;
    return 0;
}

void vfu_dma_set_max_maps(struct vfu_dma *dma, uint32_t max_maps)
{
    dma->max_maps = max_maps;
}

void vfu_dma_set_released(struct vfu_dma *dma, void (*fn)(void *opaque), void *opaque)
{
    dma->released = fn;
    dma->released_opaque = opaque;
}

static void region_release(struct vfu_dma_region *r)
{
    if (r->mmap_base) {
        dma_guard_remove(r->mmap_base);
        munmap(r->mmap_base, r->mmap_len);
    }
    free(r->dirty);
    free(r);
}

void vfu_dma_free(struct vfu_dma *dma)
{
    if (!dma)
        return;
    for (size_t i = 0; i < dma->n; i++)
        region_release(dma->regions[i]);
    while (dma->retired) {
        struct vfu_dma_region *r = dma->retired;
        dma->retired = r->next_retired;
        region_release(r);
    }
    free(dma->regions);
    pthread_mutex_destroy(&dma->lock);
    free(dma);
}

/* Swap in a new array (the device's thread; readers elsewhere hold the
 * lock). Returns the old one for the caller to free. */
static struct vfu_dma_region **publish(struct vfu_dma *dma, struct vfu_dma_region **regions,
                                       size_t n)
{
    pthread_mutex_lock(&dma->lock);
    struct vfu_dma_region **old = dma->regions;
    dma->regions = regions;
    dma->n = n;
    pthread_mutex_unlock(&dma->lock);
    return old;
}

/* Index of the first region whose iova is >= iova (dma->n if none). */
static size_t lower_bound(const struct vfu_dma *dma, uint64_t iova)
{
    size_t lo = 0, hi = dma->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (dma->regions[mid]->iova < iova)
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
        const struct vfu_dma_region *prev = dma->regions[i - 1];
        if (prev->iova + prev->size > req->address)
            return -EEXIST;
    }
    if (i < dma->n && dma->regions[i]->iova < end)
        return -EEXIST;
    if (dma->n >= dma->max_maps)
        return -ENOSPC;

    struct vfu_dma_region *region = calloc(1, sizeof(*region));
    if (!region)
        return -ENOMEM;
    *region = (struct vfu_dma_region){
        .iova = req->address,
        .size = req->size,
        .prot = req->flags,
    };
    if (fd >= 0) {
        region->offset = req->offset;
        r = map_fd(dma, region, fd);
        if (r < 0) {
            free(region);
            return r;
        }
    }
    uint64_t pgsize = atomic_load(&dma->dirty_pgsize);
    struct vfu_dma_region **regions = malloc((dma->n + 1) * sizeof(*regions));
    if (!regions || (pgsize && dma_dirty_alloc(region, pgsize) < 0)) {
        free(regions);
        region_release(region);
        return -ENOMEM;
    }
    if (dma->n > 0) {
        memcpy(regions, dma->regions, i * sizeof(*regions));
        memcpy(regions + i + 1, dma->regions + i, (dma->n - i) * sizeof(*regions));
    }
    regions[i] = region;
    /* The mapping keeps the memory; the fd would only cost one per map. */
    safe_close(fd);
    free(publish(dma, regions, dma->n + 1));
    return 0;
}

/* A region the client unmapped: gone now, or once its last user put it. */
static bool retire(struct vfu_dma *dma, struct vfu_dma_region *r)
{
    r->unmap_seq = dma->unmap_seq;
    /* Under the lock vfu_dma_put() drops its user with: either it sees
     * `removed` and wakes the reaper, or we see no user and free now. */
    pthread_mutex_lock(&dma->lock);
    atomic_store(&r->removed, true);
    bool in_use = atomic_load(&r->users) != 0;
    pthread_mutex_unlock(&dma->lock);
    if (!in_use) {
        region_release(r);
        return false;
    }
    r->next_retired = dma->retired;
    dma->retired = r;
    return true;
}

/* Remove regions [first, last) of the array: the client unmapped them. */
static int unmap_slice(struct vfu_dma *dma, size_t first, size_t last, vfu_dma_unmap_fn notify,
                       void *opaque)
{
    size_t gone_n = last - first;
    struct vfu_dma_region **regions = NULL;
    bool held = false;

    if (gone_n == 0)
        return 0;
    if (dma->n > gone_n) {
        regions = malloc((dma->n - gone_n) * sizeof(*regions));
        if (!regions)
            return -ENOMEM;
        memcpy(regions, dma->regions, first * sizeof(*regions));
        memcpy(regions + first, dma->regions + last, (dma->n - last) * sizeof(*regions));
    }
    struct vfu_dma_region **old = publish(dma, regions, dma->n - gone_n);
    dma->unmap_seq++;
    for (size_t i = first; i < last; i++) {
        if (notify)
            notify(opaque, old[i]->iova, old[i]->size);
        held |= retire(dma, old[i]);
    }
    free(old);
    return held ? VFU_DMA_HELD : 0;
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
        const struct vfu_dma_region *prev = dma->regions[first - 1];
        if (prev->iova + prev->size > iova)
            return -EINVAL;
    }
    size_t last = first;
    while (last < dma->n && dma->regions[last]->iova < end) {
        const struct vfu_dma_region *r = dma->regions[last];
        if (r->iova + r->size > end)
            return -EINVAL;
        last++;
    }
    return unmap_slice(dma, first, last, notify, opaque);
}

int vfu_dma_unmap_all(struct vfu_dma *dma, vfu_dma_unmap_fn notify, void *opaque)
{
    return unmap_slice(dma, 0, dma->n, notify, opaque);
}

uint64_t vfu_dma_unmap_seq(const struct vfu_dma *dma)
{
    return dma->unmap_seq;
}

uint64_t vfu_dma_reap(struct vfu_dma *dma, uint64_t floor)
{
    uint64_t oldest = UINT64_MAX;

    for (struct vfu_dma_region **p = &dma->retired; *p;) {
        struct vfu_dma_region *r = *p;
        pthread_mutex_lock(&dma->lock);
        bool in_use = atomic_load(&r->users) != 0;
        pthread_mutex_unlock(&dma->lock);
        if (!in_use) {
            *p = r->next_retired;
            region_release(r);
            continue;
        }
        if (r->unmap_seq > floor && r->unmap_seq < oldest)
            oldest = r->unmap_seq;
        p = &r->next_retired;
    }
    return oldest;
}

const struct vfu_dma_region *vfu_dma_find(const struct vfu_dma *dma, uint64_t iova, uint64_t len)
{
    uint64_t end;
    if (len == 0 || __builtin_add_overflow(iova, len, &end))
        return NULL;

    /* The candidate is the last region starting at or below iova. */
    size_t i = lower_bound(dma, iova);
    if (i < dma->n && dma->regions[i]->iova == iova)
        i++;
    if (i == 0)
        return NULL;
    const struct vfu_dma_region *r = dma->regions[i - 1];
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
    if ((prot & VFU_DMA_FLAG_WRITE) && vfu_dma_logging(dma))
        vfu_dma_mark_dirty((struct vfu_dma *)dma, iova, len);
    return 0;
}

int vfu_dma_get(struct vfu_dma *dma, uint64_t iova, uint64_t len, uint32_t prot, void **ptr,
                struct vfu_dma_region **region)
{
    pthread_mutex_lock(&dma->lock);
    const struct vfu_dma_region *r = vfu_dma_find(dma, iova, len);
    int ret = 0;
    if (!r)
        ret = dma->n == 0 ? -ENOTCONN : -ENOENT;
    else if (r->prot == 0 || (prot & ~r->prot) != 0)
        ret = -EACCES;
    else if (!r->vaddr)
        ret = -EREMOTE;
    if (ret == 0) {
        struct vfu_dma_region *held = (struct vfu_dma_region *)r;
        atomic_fetch_add(&held->users, 1);
        *ptr = (uint8_t *)r->vaddr + (iova - r->iova);
        *region = held;
    }
    pthread_mutex_unlock(&dma->lock);
    return ret;
}

void vfu_dma_put(struct vfu_dma *dma, struct vfu_dma_region *r, uint64_t iova, uint64_t len,
                 bool written)
{
    pthread_mutex_lock(&dma->lock);
    uint64_t pgsize = atomic_load(&dma->dirty_pgsize);
    if (written && pgsize && !atomic_load(&r->removed))
        dma_dirty_mark(r, pgsize, iova, len);
    /* Nothing of r is touched after the lock is dropped: the device's
     * thread may free it then. */
    if (atomic_fetch_sub(&r->users, 1) == 1 && atomic_load(&r->removed) && dma->released)
        dma->released(dma->released_opaque);
    pthread_mutex_unlock(&dma->lock);
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
