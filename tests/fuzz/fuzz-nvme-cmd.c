/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer on the nvme plugin's NVM command checks and data pointer parser:
 * the input is a 64-byte SQE and then a little guest memory at MEM_BASE
 * (PRP lists, SGL segments); a read anywhere else fails as unmapped memory
 * does. On success the segments must add up to the transfer, stay within
 * the caps, and no fetch may have gone outside the memory given.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/nvme/nvme-dptr.h"
#include "../../plugins/nvme/nvme-io-decode.h"

#define MEM_BASE 0x10000ull

struct fake_mem {
    const uint8_t *data;
    size_t size;
    unsigned fetches;
};

static int fetch(void *opaque, uint64_t iova, void *buf, size_t len)
{
    struct fake_mem *m = opaque;

    m->fetches++;
    assert(m->fetches <= NVME_DPTR_MAX_DESCS + NVME_MAX_XFER / NVME_PAGE_SIZE);
    assert(len <= NVME_PAGE_SIZE);
    if (iova < MEM_BASE || iova - MEM_BASE > m->size || len > m->size - (iova - MEM_BASE))
        return -ENOENT;
    memcpy(buf, m->data + (iova - MEM_BASE), len);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct nvme_dptr out;
    struct nvme_sqe cmd;
    struct nvme_io_req req;

    if (size < sizeof(cmd))
        return 0;
    memcpy(&cmd, data, sizeof(cmd));
    struct fake_mem mem = {data + sizeof(cmd), size - sizeof(cmd), 0};
    /* 4 KiB blocks when cdw13's bit 0 is set, else 512 bytes; bit 1: no
     * namespace by the command's NSID (the checks never read cdw13). */
    struct nvme_ns_geom geom = {.nr_blocks = 1u << 20, .lba_shift = (cmd.cdw13 & 1) ? 12 : 9};
    bool no_ns = cmd.cdw13 & 2;

    uint16_t sc = nvme_io_decode(&cmd, no_ns ? NULL : &geom, &req);
    if (sc != NVME_SC_SUCCESS)
        return 0;
    /* Without a namespace only a Flush of every namespace gets through. */
    assert(!no_ns || (cmd.opcode == NVME_CMD_FLUSH && cmd.nsid == NVME_NSID_ALL));
    assert(req.xfer <= NVME_MAX_XFER || cmd.opcode == NVME_CMD_WRITE_ZEROES);
    assert(req.off + req.len <= geom.nr_blocks << geom.lba_shift);
    bool to_host = cmd.opcode == NVME_CMD_READ;
    sc = nvme_dptr_parse(&cmd, req.xfer, to_host, fetch, &mem, &out);
    if (sc != NVME_SC_SUCCESS)
        return 0;
    assert(out.nr <= NVME_DPTR_MAX_SEGS);
    assert(out.len == req.xfer);
    uint64_t sum = 0;
    for (uint32_t i = 0; i < out.nr; i++) {
        const struct nvme_dptr_seg *s = &out.seg[i];
        uint64_t end;
        assert(s->len > 0);
        assert(!s->bit_bucket || to_host);
        assert(s->bit_bucket || !__builtin_add_overflow(s->iova, s->len, &end));
        sum += s->len;
    }
    assert(sum == req.xfer);
    return 0;
}
