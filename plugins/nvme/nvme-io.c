/* SPDX-License-Identifier: MIT */
/*
 * NVM command set on the RAM namespace: Read, Write, Compare, Flush, Write
 * Zeroes, Dataset Management. Every LBA range is checked against the
 * namespace before it offsets anything; data moves through nvme-prp.c.
 */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "nvme-dev.h"

#define NVME_NSID_ALL 0xffffffffu

/* The byte range of SLBA (CDW10-11) and NLB (CDW12 15:0, 0's based), or a status. */
static uint16_t lba_range(const struct nvme_dev *d, const struct nvme_sqe *cmd, uint64_t *off,
                          uint64_t *len)
{
    uint64_t slba = (uint64_t)le32toh(cmd->cdw11) << 32 | le32toh(cmd->cdw10);
    uint64_t nlb = (le32toh(cmd->cdw12) & 0xffff) + 1ull;

    if (slba >= d->ns.nr_blocks || nlb > d->ns.nr_blocks - slba)
        return NVME_SC_LBA_RANGE;
    *off = slba << d->ns.lba_shift;
    *len = nlb << d->ns.lba_shift;
    return NVME_SC_SUCCESS;
}

static uint16_t do_rw(struct nvme_dev *d, const struct nvme_sqe *cmd, bool write)
{
    uint64_t off, len;
    uint16_t sc = lba_range(d, cmd, &off, &len);

    if (sc)
        return sc;
    if (len > NVME_MAX_XFER)
        return NVME_SC_INVALID_FIELD; /* over MDTS */
    if (write && d->ns.read_only)
        return NVME_SC_NS_WRITE_PROTECTED;
    if (write)
        nvme_ns_touch(&d->ns, off, len);
    sc = nvme_prp_copy(d, le64toh(cmd->prp1), le64toh(cmd->prp2), d->ns.mem + off, len, !write);
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

static uint16_t do_compare(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    uint64_t off, len;
    uint16_t sc = lba_range(d, cmd, &off, &len);

    if (sc)
        return sc;
    if (len > NVME_MAX_XFER)
        return NVME_SC_INVALID_FIELD;
    void *buf = malloc(len);
    if (!buf)
        return NVME_SC_INTERNAL;
    sc = nvme_prp_copy(d, le64toh(cmd->prp1), le64toh(cmd->prp2), buf, len, false);
    if (sc == 0 && memcmp(buf, d->ns.mem + off, len) != 0)
        sc = NVME_SC_COMPARE_FAILED;
    free(buf);
    return sc;
}

static uint16_t do_write_zeroes(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    uint64_t off, len;
    uint16_t sc = lba_range(d, cmd, &off, &len);

    if (sc)
        return sc;
    if (d->ns.read_only)
        return NVME_SC_NS_WRITE_PROTECTED;
    nvme_ns_zero(&d->ns, off, len);
    return NVME_SC_SUCCESS;
}

struct nvme_dsm_range {
    uint32_t attributes;
    uint32_t nlb; /* not 0's based */
    uint64_t slba;
};
_Static_assert(sizeof(struct nvme_dsm_range) == 16, "a DSM range is 16 bytes");
#define NVME_DSM_AD (1u << 2) /* CDW11: deallocate */

static uint16_t do_dsm(struct nvme_dev *d, const struct nvme_sqe *cmd)
{
    struct nvme_dsm_range ranges[256];
    uint32_t nr = (le32toh(cmd->cdw10) & 0xff) + 1;

    uint16_t sc = nvme_prp_copy(d, le64toh(cmd->prp1), le64toh(cmd->prp2), ranges,
                                nr * sizeof(ranges[0]), false);
    if (sc)
        return sc;
    if (!(le32toh(cmd->cdw11) & NVME_DSM_AD))
        return NVME_SC_SUCCESS; /* attributes are hints; nothing to do for RAM */
    if (d->ns.read_only)
        return NVME_SC_NS_WRITE_PROTECTED;
    /* All ranges checked before any is deallocated. */
    for (uint32_t i = 0; i < nr; i++) {
        uint64_t slba = le64toh(ranges[i].slba), nlb = le32toh(ranges[i].nlb);
        if (slba > d->ns.nr_blocks || nlb > d->ns.nr_blocks - slba)
            return NVME_SC_LBA_RANGE;
    }
    for (uint32_t i = 0; i < nr; i++) {
        uint64_t slba = le64toh(ranges[i].slba), nlb = le32toh(ranges[i].nlb);
        nvme_ns_zero(&d->ns, slba << d->ns.lba_shift, nlb << d->ns.lba_shift);
    }
    return NVME_SC_SUCCESS;
}

void nvme_io_cmd(struct nvme_dev *d, const struct nvme_sqe *cmd, struct nvme_result *res)
{
    uint32_t nsid = le32toh(cmd->nsid);

    switch (cmd->opcode) {
    case NVME_CMD_FLUSH:
    case NVME_CMD_WRITE:
    case NVME_CMD_READ:
    case NVME_CMD_COMPARE:
    case NVME_CMD_WRITE_ZEROES:
    case NVME_CMD_DSM:
        break;
    default:
        res->status = NVME_SC_INVALID_OPCODE;
        return;
    }
    /* Fused operations and SGLs (PSDT != 0) are not offered. */
    if (cmd->flags != 0) {
        res->status = NVME_SC_INVALID_FIELD;
        return;
    }
    if (nsid != 1 && !(cmd->opcode == NVME_CMD_FLUSH && nsid == NVME_NSID_ALL)) {
        res->status = NVME_SC_INVALID_NS;
        return;
    }
    switch (cmd->opcode) {
    case NVME_CMD_FLUSH:
        res->status = NVME_SC_SUCCESS; /* RAM: nothing volatile to write back */
        break;
    case NVME_CMD_WRITE:
        res->status = do_rw(d, cmd, true);
        break;
    case NVME_CMD_READ:
        res->status = do_rw(d, cmd, false);
        break;
    case NVME_CMD_COMPARE:
        res->status = do_compare(d, cmd);
        break;
    case NVME_CMD_WRITE_ZEROES:
        res->status = do_write_zeroes(d, cmd);
        break;
    case NVME_CMD_DSM:
        res->status = do_dsm(d, cmd);
        break;
    }
}
