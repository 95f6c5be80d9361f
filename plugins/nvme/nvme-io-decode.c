/* SPDX-License-Identifier: MIT */
/*
 * NVM command checks, in the order a status is chosen when several fail:
 * opcode, flags, namespace, LBA range, transfer size.
 */
#include <endian.h>
#include <string.h>

#include "nvme-dptr.h"
#include "nvme-io-decode.h"

/* FUSE 00b, PSDT 00b (PRPs) or 01b (SGL), the reserved bits 0. */
static bool flags_valid(uint8_t flags)
{
    unsigned psdt = NVME_SQE_PSDT(flags);
    return (flags & 0x3f) == 0 && (psdt == NVME_PSDT_PRP || psdt == NVME_PSDT_SGL);
}

/* The byte range of SLBA (CDW10-11) and NLB (CDW12 15:0, 0's based). */
static uint16_t lba_range(const struct nvme_sqe *cmd, const struct nvme_ns_geom *geom,
                          struct nvme_io_req *out)
{
    uint64_t slba = (uint64_t)le32toh(cmd->cdw11) << 32 | le32toh(cmd->cdw10);
    uint64_t nlb = (le32toh(cmd->cdw12) & 0xffff) + 1ull;

    if (slba >= geom->nr_blocks || nlb > geom->nr_blocks - slba)
        return NVME_SC_LBA_RANGE;
    out->off = slba << geom->lba_shift;
    out->len = nlb << geom->lba_shift;
    return NVME_SC_SUCCESS;
}

uint16_t nvme_io_decode(const struct nvme_sqe *cmd, const struct nvme_ns_geom *geom,
                        struct nvme_io_req *out)
{
    uint32_t nsid = le32toh(cmd->nsid);
    uint16_t sc;

    memset(out, 0, sizeof(*out));
    switch (cmd->opcode) {
    case NVME_CMD_FLUSH:
    case NVME_CMD_WRITE:
    case NVME_CMD_READ:
    case NVME_CMD_COMPARE:
    case NVME_CMD_WRITE_ZEROES:
    case NVME_CMD_DSM:
        break;
    default:
        return NVME_SC_INVALID_OPCODE;
    }
    /* Fused operations are not offered; PSDT 10b would need metadata SGLs. */
    if (!flags_valid(cmd->flags))
        return NVME_SC_INVALID_FIELD;
    if (cmd->opcode == NVME_CMD_FLUSH && nsid == NVME_NSID_ALL)
        return NVME_SC_SUCCESS; /* every namespace */
    if (!geom)
        return NVME_SC_INVALID_NS;
    switch (cmd->opcode) {
    case NVME_CMD_WRITE:
    case NVME_CMD_READ:
    case NVME_CMD_COMPARE:
        if ((sc = lba_range(cmd, geom, out)))
            return sc;
        if (out->len > NVME_MAX_XFER)
            return NVME_SC_INVALID_FIELD; /* over MDTS */
        out->xfer = out->len;
        break;
    case NVME_CMD_WRITE_ZEROES:
        return lba_range(cmd, geom, out); /* no data moves: MDTS does not apply */
    case NVME_CMD_DSM:
        out->nr_ranges = (le32toh(cmd->cdw10) & 0xff) + 1;
        out->xfer = out->nr_ranges * 16ull;
        break;
    }
    return NVME_SC_SUCCESS;
}
