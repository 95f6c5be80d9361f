/* SPDX-License-Identifier: MIT */
/*
 * The DMA map table of one device's client: what guest memory the client
 * shared (DMA_MAP), mmap()ed when it came with an fd, bounds-checked
 * translation of guest addresses, references held by other threads, and
 * dirty-page logging. Regions never overlap; lookups are a binary search
 * over a sorted array of regions.
 *
 * Threads: the device's thread owns the table: vfu_dma_new/_free, map,
 * unmap, reap, find, translate and the logging calls. vfu_dma_get, _put and
 * _mark_dirty may be called from any thread. Each change builds a new array
 * and swaps it in under a short lock, which is also what vfu_dma_get takes
 * to find a region and count a user on it. A region that a DMA_UNMAP removes
 * while it has users is retired, not unmapped: its memory stays until the
 * last vfu_dma_put(), which calls the released callback, so the device's
 * thread reaps it and only then answers that DMA_UNMAP.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vfu/wire.h"

struct vfu_dma;

struct vfu_dma_region {
    uint64_t iova;
    uint64_t size;
    uint32_t prot;   /* VFU_DMA_FLAG_READ | VFU_DMA_FLAG_WRITE */
    uint64_t offset; /* file offset of iova in the client's fd */
    void *vaddr;     /* where iova is mapped in our address space; NULL: no fd,
                      * reached with DMA_READ/DMA_WRITE messages */
    void *mmap_base; /* what munmap() gets (page-aligned below vaddr) */
    size_t mmap_len;
    uint64_t *dirty; /* dirty-page bitmap while logging (migration), else NULL;
                      * bits set atomically, the pointer changed under the lock */
    /* The table's own bookkeeping. */
    _Atomic unsigned users; /* vfu_dma_get()s not yet put */
    _Atomic bool removed;   /* unmapped by the client; gone with the last user */
    uint64_t unmap_seq;     /* which unmap removed it */
    struct vfu_dma_region *next_retired;
};

/* vfu_dma_unmap(): removed, but still in use by another thread. */
#define VFU_DMA_HELD 1

/* Called for each region just before it goes away, so the device can drop
 * pointers into it (and, later, in-flight DMA can finish). */
typedef void (*vfu_dma_unmap_fn)(void *opaque, uint64_t iova, uint64_t size);

int vfu_dma_new(uint32_t max_maps, struct vfu_dma **ret);
/* Unmaps everything, also what is still held: every user must be gone. */
void vfu_dma_free(struct vfu_dma *dma);
/* The client's max_dma_maps, once negotiated. */
void vfu_dma_set_max_maps(struct vfu_dma *dma, uint32_t max_maps);

/*
 * Add a mapping. With fd >= 0 it is mmap()ed (MAP_SHARED, protection from
 * flags, any file offset: the mapping starts at the file's page below it, a
 * huge page on hugetlbfs); on success fd is taken (and closed: the mapping
 * keeps the memory). Returns -EEXIST when it overlaps an existing mapping,
 * -ENOSPC past max_maps, -EINVAL for size 0 or overflowing ranges, or
 * mmap's error.
 */
int vfu_dma_map(struct vfu_dma *dma, const struct vfu_dma_map *req, int fd);

/*
 * Remove every mapping that lies wholly inside [iova, iova+size): the spec
 * asks for an exact match, but QEMU (virtio-mem, a vIOMMU) unmaps a range
 * that spans several maps, as Linux VFIO allows. A mapping that crosses
 * either edge cannot be split: -EINVAL and nothing changes. A range with no
 * mapping in it succeeds and changes nothing, as with Linux VFIO.
 */
int vfu_dma_unmap(struct vfu_dma *dma, uint64_t iova, uint64_t size, vfu_dma_unmap_fn notify,
                  void *opaque);
/* Remove all mappings (DMA_UNMAP with FLAG_ALL, client disconnect); may
 * return VFU_DMA_HELD as vfu_dma_unmap() does. */
int vfu_dma_unmap_all(struct vfu_dma *dma, vfu_dma_unmap_fn notify, void *opaque);

/* The number of the last unmap (1, 2, ...). */
uint64_t vfu_dma_unmap_seq(const struct vfu_dma *dma);
/* Unmap retired regions nobody holds any more. Returns the number of the
 * oldest unmap after `floor` that still waits for a user, or UINT64_MAX when
 * none does (floor: where this client's unmaps begin; 0 for all). */
uint64_t vfu_dma_reap(struct vfu_dma *dma, uint64_t floor);
/* fn(opaque) runs, on whichever thread put it, when a retired region lost
 * its last user: have the device's thread call vfu_dma_reap(). Set before
 * any other thread uses the table. */
void vfu_dma_set_released(struct vfu_dma *dma, void (*fn)(void *opaque), void *opaque);

/*
 * Any thread: hold [iova, iova+len) with `prot` until vfu_dma_put(). Errors
 * as vfu_dma_translate(), but -ENOTCONN where nothing at all is mapped (no
 * client yet, or one that has mapped nothing so far). *region is what
 * vfu_dma_put() takes back.
 */
int vfu_dma_get(struct vfu_dma *dma, uint64_t iova, uint64_t len, uint32_t prot, void **ptr,
                struct vfu_dma_region **region);
/* Any thread: give back what vfu_dma_get() held; `written` marks
 * [iova, iova+len) dirty while logging. */
void vfu_dma_put(struct vfu_dma *dma, struct vfu_dma_region *region, uint64_t iova, uint64_t len,
                 bool written);

/*
 * Dirty-page logging (migration). While on, every page of a mapping that the
 * device writes (vfu_dma_mark_dirty, vfu_dma_put with written, a translate
 * for writing) has its bit set. pgsize is a power of two >= 4096.
 */
int vfu_dma_logging_start(struct vfu_dma *dma, uint64_t pgsize);
void vfu_dma_logging_stop(struct vfu_dma *dma);
bool vfu_dma_logging(const struct vfu_dma *dma);
/* Any thread. Marks the pages of [iova, iova+len) inside mappings. */
void vfu_dma_mark_dirty(struct vfu_dma *dma, uint64_t iova, uint64_t len);
/*
 * DMA_LOGGING_REPORT: the dirty bits of [iova, iova+length) at pgsize
 * granularity (any power of two; iova a multiple of it, the last page may
 * be partial) into bitmap, bit i (word i / 64, bit i % 64) for page i of the
 * range, and clear them. The range may span several mappings and the holes
 * between them (which report zero). A report page larger than the logging
 * page ORs the logging pages it covers; a smaller one repeats the logging
 * page's bit. bitmap_bytes must be at least vfu_dma_report_bitmap_size().
 * -EINVAL for a bad range or page size, -ENOENT when logging is off.
 */
int vfu_dma_logging_report(struct vfu_dma *dma, uint64_t iova, uint64_t length, uint64_t pgsize,
                           uint64_t *bitmap, size_t bitmap_bytes);
/* The bytes of a report bitmap for that range (whole u64 words), or -EINVAL. */
int vfu_dma_report_bitmap_size(uint64_t iova, uint64_t length, uint64_t pgsize, uint64_t *bytes);

/* The region holding all of [iova, iova+len), or NULL (also for len 0 or overflow). */
const struct vfu_dma_region *vfu_dma_find(const struct vfu_dma *dma, uint64_t iova, uint64_t len);

/*
 * Pointer to [iova, iova+len) in our address space. -ENOENT not mapped (or
 * not inside one region), -EACCES the region lacks `prot`, -EREMOTE mapped
 * without an fd. With VFU_DMA_FLAG_WRITE the range is marked dirty.
 */
int vfu_dma_translate(const struct vfu_dma *dma, uint64_t iova, uint64_t len, uint32_t prot,
                      void **ptr);

size_t vfu_dma_count(const struct vfu_dma *dma);

/* Did guest memory of this table vanish under us since the last call (the
 * client shrank a mapped file; see dma-guard.h)? Clears the flag. */
bool vfu_dma_take_fault(struct vfu_dma *dma);
