/* SPDX-License-Identifier: MIT */
/*
 * The RAM namespace: a private anonymous mapping of the namespace's size.
 * Blocks never written cost no memory and read as zeros, which is also
 * what deallocated blocks read as (Identify Namespace DLFEAT = 1).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "nvme-dev.h"

int nvme_ns_open(struct nvme_ns *ns, uint64_t size, uint32_t block_size, bool read_only)
{
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    uint64_t pages = (size + 4095) / 4096;
    uint64_t *touched = calloc((size_t)((pages + 63) / 64), sizeof(uint64_t));
    if (!touched) {
        munmap(mem, size);
        return -ENOMEM;
    }
    *ns = (struct nvme_ns){
        .fd = -1,
        .touched = touched,
        .size = size,
        .block_size = block_size,
        .lba_shift = (uint32_t)__builtin_ctz(block_size),
        .nr_blocks = size / block_size,
        .read_only = read_only,
        .mem = mem,
    };
    return 0;
}

void nvme_ns_close(struct nvme_ns *ns)
{
    if (ns->mem)
        munmap(ns->mem, ns->size);
    ns->mem = NULL;
    free(ns->touched);
    ns->touched = NULL;
}

void nvme_ns_zero(struct nvme_ns *ns, uint64_t off, uint64_t len)
{
    /* Whole pages go back to the kernel (and read as zeros); the edges are
     * cleared by hand. */
    uint64_t start = (off + 4095) & ~4095ull, end = (off + len) & ~4095ull;
    if (start >= end) {
        memset(ns->mem + off, 0, len);
        return;
    }
    memset(ns->mem + off, 0, start - off);
    if (madvise(ns->mem + start, end - start, MADV_DONTNEED) < 0)
        memset(ns->mem + start, 0, end - start);
    memset(ns->mem + end, 0, off + len - end);
}

/* A save walks this bitmap, not the memory: a large namespace the guest
 * barely wrote is saved without reading (or faulting in) the rest. */
void nvme_ns_touch(struct nvme_ns *ns, uint64_t off, uint64_t len)
{
    if (len == 0)
        return;
    for (uint64_t p = off / 4096; p <= (off + len - 1) / 4096; p++)
        ns->touched[p / 64] |= UINT64_C(1) << (p % 64);
}

static bool touched(const struct nvme_ns *ns, uint64_t page)
{
    return ns->touched[page / 64] & (UINT64_C(1) << (page % 64));
}

uint64_t nvme_ns_next_touched(const struct nvme_ns *ns, uint64_t off)
{
    uint64_t pages = (ns->size + 4095) / 4096;
    uint64_t p = off / 4096;
    while (p < pages) {
        uint64_t word = ns->touched[p / 64] >> (p % 64);
        if (word)
            return (p + (uint64_t)__builtin_ctzll(word)) * 4096 < ns->size
                       ? (p + (uint64_t)__builtin_ctzll(word)) * 4096
                       : ns->size;
        p = (p / 64 + 1) * 64;
    }
    return ns->size;
}

uint64_t nvme_ns_touched_run(const struct nvme_ns *ns, uint64_t off, uint64_t max)
{
    uint64_t pages = (ns->size + 4095) / 4096;
    uint64_t p = off / 4096, last = (off + max) / 4096;
    while (p < pages && p < last && touched(ns, p))
        p++;
    uint64_t end = p * 4096 < ns->size ? p * 4096 : ns->size;
    return end > off ? end - off : 0;
}
