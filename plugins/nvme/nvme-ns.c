/* SPDX-License-Identifier: MIT */
/*
 * The RAM namespace: a private anonymous mapping of the namespace's size.
 * Blocks never written cost no memory and read as zeros, which is also
 * what deallocated blocks read as (Identify Namespace DLFEAT = 1).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "nvme-dev.h"

int nvme_ns_open(struct nvme_ns *ns, uint64_t size, uint32_t block_size, bool read_only)
{
    void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    *ns = (struct nvme_ns){
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
