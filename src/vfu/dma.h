/* SPDX-License-Identifier: MIT */
/*
 * The DMA map table of one client connection: what guest memory the client
 * shared (DMA_MAP), mmap()ed when it came with an fd, and bounds-checked
 * translation of guest addresses. Regions never overlap; lookups are a binary
 * search over a sorted array. Room for dirty-page logging (migration) is kept
 * per region.
 *
 * Threads: the device's I/O thread only (ABI 1 plugins reach it from their
 * callbacks there). The table is
 * replaced, never edited in place, so a later I/O-thread design can hand
 * readers an immutable snapshot (see design.md).
 */
#pragma once

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
    uint64_t *dirty; /* dirty-page bitmap while logging (migration), else NULL */
};

/* Called for each region just before it goes away, so the device can drop
 * pointers into it (and, later, in-flight DMA can finish). */
typedef void (*vfu_dma_unmap_fn)(void *opaque, uint64_t iova, uint64_t size);

int vfu_dma_new(uint32_t max_maps, struct vfu_dma **ret);
void vfu_dma_free(struct vfu_dma *dma); /* unmaps everything, no notification */

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
/* Remove all mappings (DMA_UNMAP with FLAG_ALL, client disconnect). */
void vfu_dma_unmap_all(struct vfu_dma *dma, vfu_dma_unmap_fn notify, void *opaque);

/* The region holding all of [iova, iova+len), or NULL (also for len 0 or overflow). */
const struct vfu_dma_region *vfu_dma_find(const struct vfu_dma *dma, uint64_t iova, uint64_t len);

/*
 * Pointer to [iova, iova+len) in our address space. -ENOENT not mapped (or
 * not inside one region), -EACCES the region lacks `prot`, -EREMOTE mapped
 * without an fd.
 */
int vfu_dma_translate(const struct vfu_dma *dma, uint64_t iova, uint64_t len, uint32_t prot,
                      void **ptr);

size_t vfu_dma_count(const struct vfu_dma *dma);

/* Did guest memory of this table vanish under us since the last call (the
 * client shrank a mapped file; see dma-guard.h)? Clears the flag. */
bool vfu_dma_take_fault(struct vfu_dma *dma);
