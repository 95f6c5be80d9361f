/* SPDX-License-Identifier: MIT */
/*
 * NVM command set on a RAM namespace: Read, Write, Compare, Flush, Write
 * Zeroes, Dataset Management (a file-backed namespace's go to
 * nvme-io-file.c), each on the namespace its NSID names. nvme-io-decode.c
 * checks the command (its LBA range against the namespace) before anything
 * here runs; data moves through nvme-data.c.
 */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "nvme-dev.h"
#include "nvme-io-decode.h"

static uint16_t do_rw(struct nvme_dev *d, struct nvme_ns *ns, const struct nvme_sqe *cmd,
                      const struct nvme_io_req *req, bool write)
{
    uint64_t off = req->off, len = req->len;
    uint16_t sc;

    if (write && ns->read_only)
        return NVME_SC_NS_WRITE_PROTECTED;
    if (write)
        nvme_ns_touch(ns, off, len);
    sc = nvme_data_copy(d, cmd, ns->mem + off, len, !write);
    if (sc)
        return sc;
    if (write) {
        d->stats.host_writes++;
        d->stats.units_written += len / 512;
    } else {
        d->stats.host_reads++;
        d->stats.units_read += len / 512;
    }
    return NVME_SC_SUCCESS;
}

static uint16_t do_compare(struct nvme_dev *d, const struct nvme_ns *ns, const struct nvme_sqe *cmd,
                           const struct nvme_io_req *req)
{
    uint64_t off = req->off, len = req->len;
    uint16_t sc;

    void *buf = malloc(len);
    if (!buf)
        return NVME_SC_INTERNAL;
    sc = nvme_data_copy(d, cmd, buf, len, false);
    if (sc == 0 && memcmp(buf, ns->mem + off, len) != 0)
        sc = NVME_SC_COMPARE_FAILED;
    free(buf);
    return sc;
}

static uint16_t do_write_zeroes(struct nvme_ns *ns, const struct nvme_io_req *req)
{
    if (ns->read_only)
        return NVME_SC_NS_WRITE_PROTECTED;
    nvme_ns_zero(ns, req->off, req->len);
    return NVME_SC_SUCCESS;
}

static uint16_t do_dsm(struct nvme_dev *d, struct nvme_ns *ns, const struct nvme_sqe *cmd,
                       const struct nvme_io_req *req)
{
    struct nvme_dsm_range ranges[256];
    uint32_t nr = req->nr_ranges;

    _Static_assert(sizeof(ranges) / sizeof(ranges[0]) == 256, "DSM takes up to 256 ranges");
    uint16_t sc = nvme_data_copy(d, cmd, ranges, nr * sizeof(ranges[0]), false);
    if (sc)
        return sc;
    if (!(le32toh(cmd->cdw11) & NVME_DSM_AD))
        return NVME_SC_SUCCESS; /* attributes are hints; nothing to do for RAM */
    if (ns->read_only)
        return NVME_SC_NS_WRITE_PROTECTED;
    /* All ranges checked before any is deallocated. */
    for (uint32_t i = 0; i < nr; i++) {
        uint64_t slba = le64toh(ranges[i].slba), nlb = le32toh(ranges[i].nlb);
        if (slba > ns->nr_blocks || nlb > ns->nr_blocks - slba)
            return NVME_SC_LBA_RANGE;
    }
    for (uint32_t i = 0; i < nr; i++) {
        uint64_t slba = le64toh(ranges[i].slba), nlb = le32toh(ranges[i].nlb);
        nvme_ns_zero(ns, slba << ns->lba_shift, nlb << ns->lba_shift);
    }
    return NVME_SC_SUCCESS;
}

void nvme_io_cmd(struct nvme_dev *d, uint16_t sqid, const struct nvme_sqe *cmd,
                 struct nvme_result *res)
{
    struct nvme_ns *ns = nvme_ns_of(d, le32toh(cmd->nsid));
    struct nvme_ns_geom geom;
    struct nvme_io_req req;

    if (ns)
        geom = (struct nvme_ns_geom){.nr_blocks = ns->nr_blocks, .lba_shift = ns->lba_shift};
    res->status = nvme_io_decode(cmd, ns ? &geom : NULL, &req);
    if (res->status)
        return;
    if (!ns) { /* decoded without one: a Flush of every namespace */
        nvme_file_flush_all(d, sqid, cmd, res);
        return;
    }
    if (ns->fd >= 0) {
        nvme_file_cmd(d, ns, sqid, cmd, &req, res);
        return;
    }
    switch (cmd->opcode) {
    case NVME_CMD_FLUSH:
        res->status = NVME_SC_SUCCESS; /* RAM: nothing volatile to write back */
        break;
    case NVME_CMD_WRITE:
        res->status = do_rw(d, ns, cmd, &req, true);
        break;
    case NVME_CMD_READ:
        res->status = do_rw(d, ns, cmd, &req, false);
        break;
    case NVME_CMD_COMPARE:
        res->status = do_compare(d, ns, cmd, &req);
        break;
    case NVME_CMD_WRITE_ZEROES:
        res->status = do_write_zeroes(ns, &req);
        break;
    case NVME_CMD_DSM:
        res->status = do_dsm(d, ns, cmd, &req);
        break;
    }
}
