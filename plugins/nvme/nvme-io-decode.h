/* SPDX-License-Identifier: MIT */
/*
 * The checks an NVM command's SQE must pass before it is executed, as a
 * pure function of the SQE and the namespace's geometry, so that the fuzz
 * target covers them. What the command's data holds (DSM ranges, blocks)
 * is the executor's business (nvme-io.c). Any thread: no state.
 */
#pragma once

#include <stdint.h>

#include "nvme-spec.h"

struct nvme_ns_geom {
    uint64_t nr_blocks;
    uint32_t lba_shift; /* log2 of the block size */
};

/* A decoded command. */
struct nvme_io_req {
    uint64_t off, len;  /* namespace bytes: Read, Write, Compare, Write Zeroes */
    uint64_t xfer;      /* bytes through the data pointer (DSM: the ranges) */
    uint32_t nr_ranges; /* DSM: ranges in the data, 1 to 256 */
};

/* Decode an NVM command (opcode, flags, namespace, SLBA and NLB inside the
 * namespace, MDTS) into *out: NVME_SC_SUCCESS, or the status it completes
 * with (*out is then undefined). geom is the namespace the command's NSID
 * names, NULL when none is active by that NSID; a Flush of NSID FFFFFFFFh
 * (every namespace) needs none. */
uint16_t nvme_io_decode(const struct nvme_sqe *cmd, const struct nvme_ns_geom *geom,
                        struct nvme_io_req *out);
