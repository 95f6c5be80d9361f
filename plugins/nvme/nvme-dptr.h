/* SPDX-License-Identifier: MIT */
/*
 * A command's data pointer (PRPs or an SGL, NVMe 1.4 sections 4.3 and 4.4)
 * turned into the guest memory it names: a bounded list of segments. Pure:
 * the one way it reads guest memory (PRP list pages, SGL segments) is the
 * caller's fetch callback, so the fuzz target and the unit tests drive it
 * with fake memory, and no device state is touched. Any thread: it keeps
 * no state of its own.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvme-spec.h"

/* MDTS: a command moves at most 2^5 pages, 128 KiB. */
#define NVME_MDTS     5
#define NVME_MAX_XFER (NVME_PAGE_SIZE << NVME_MDTS)

/* SGL descriptors one command may use, Segment and Last Segment ones
 * included. It bounds the walk (a guest may chain segments in a cycle) and
 * is generous: 128 KiB in 4 KiB pages takes 33 data blocks. */
#define NVME_DPTR_MAX_DESCS 256
/* Segments the list holds: adjacent data merge, so at most one per data
 * descriptor (and at most 1 + 2^MDTS for PRPs). */
#define NVME_DPTR_MAX_SEGS NVME_DPTR_MAX_DESCS

struct nvme_dptr_seg {
    uint64_t iova; /* 0 for a bit bucket */
    uint32_t len;
    bool bit_bucket; /* controller-to-host data that is discarded, not copied */
};

struct nvme_dptr {
    uint32_t nr;
    uint64_t len; /* the sum of the segments' lengths: the transfer length */
    struct nvme_dptr_seg seg[NVME_DPTR_MAX_SEGS];
};

/* Read len bytes of guest memory at iova into buf: 0, or a negative errno
 * when the memory is not there (unmapped, not readable). */
typedef int nvme_dptr_fetch_fn(void *opaque, uint64_t iova, void *buf, size_t len);

/*
 * The segments of a transfer of len bytes (at most NVME_MAX_XFER) through
 * cmd's data pointer: PSDT 00b walks PRP1, PRP2 and PRP lists; PSDT 01b walks
 * the SGL whose first descriptor is the DPTR. to_host: the data goes to the
 * host (a read), the only direction Bit Bucket descriptors may be used in.
 * An SGL may describe more than len; the excess is neither read nor checked.
 * MPTR is not read (no metadata); PSDT 10b is refused (SGLS bit 19 is 0).
 * Returns NVME_SC_SUCCESS with *out filled (out->len == len), or the status
 * the command completes with; *out is then undefined.
 */
uint16_t nvme_dptr_parse(const struct nvme_sqe *cmd, uint64_t len, bool to_host,
                         nvme_dptr_fetch_fn *fetch, void *opaque, struct nvme_dptr *out);
