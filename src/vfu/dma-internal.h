/* SPDX-License-Identifier: MIT */
/* The DMA table's insides, shared by dma.c (maps, references) and
 * dma-dirty.c (dirty-page logging). Not for use outside src/vfu/. */
#pragma once

#include <pthread.h>
#include <signal.h>

#include "vfu/dma.h"

struct vfu_dma {
    uint32_t max_maps;
    /* Sorted by iova, never overlapping. The device's thread builds a new
     * array for each change and swaps it in under `lock`; other threads
     * read it only under `lock` (vfu_dma_get, vfu_dma_mark_dirty). */
    pthread_mutex_t lock;
    size_t n;
    struct vfu_dma_region **regions;
    /* Removed while in use: unmapped once their users are gone. */
    struct vfu_dma_region *retired;
    uint64_t unmap_seq;
    /* Any thread, under `lock`: a retired region lost its last user. */
    void (*released)(void *opaque);
    void *released_opaque;
    /* Logging page size, 0 while off; changed under `lock`. */
    _Atomic uint64_t dirty_pgsize;
    /* Set by the SIGBUS guard when the client shrank a mapped file. */
    volatile sig_atomic_t faulted;
};

/* dma-dirty.c. Under dma->lock: */
int dma_dirty_alloc(struct vfu_dma_region *r, uint64_t pgsize);
void dma_dirty_mark(struct vfu_dma_region *r, uint64_t pgsize, uint64_t iova, uint64_t len);
