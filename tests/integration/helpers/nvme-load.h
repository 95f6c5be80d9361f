/* SPDX-License-Identifier: MIT */
/*
 * A load generator on the userspace NVMe driver (nvme-driver.h), for
 * benchmarks: it keeps qd Read or Write commands in flight on each of the
 * I/O queues 1..queues (created by the caller, polled ones for speed), each
 * command one io_size transfer at an LBA drawn from a fixed-seed PRNG (or
 * the next one, sequential), and replaces each completed command at once,
 * until a time or a number of commands is reached; then it waits for the
 * rest. CQs are polled: no interrupt is waited for. It measures IOPS and
 * the average and 99th percentile latency, from just before the SQ
 * doorbell to the moment the completion was seen.
 *
 * Data buffers: one 4 KiB page per command slot from NVME_DRV_DATA on,
 * filled with a non-zero byte before the first command.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "nvme-driver.h"

struct nvme_load {
    uint8_t opcode;       /* NVME_CMD_READ or NVME_CMD_WRITE */
    uint32_t nsid;        /* 0: namespace 1 */
    uint32_t block_size;  /* the namespace's */
    uint64_t nr_blocks;   /* the namespace's */
    uint32_t io_size;     /* bytes per command: a multiple of block_size, at most 4096 */
    uint16_t queues;      /* I/O queues 1..queues, at most NVME_DRV_MAX_QUEUES */
    uint32_t qd;          /* commands in flight per queue, below NVME_DRV_QDEPTH */
    bool sequential;      /* LBAs in order from 0, wrapping, instead of random */
    uint64_t seed;        /* of the PRNG: the same seed, the same LBAs */
    uint64_t duration_ns; /* submit for this long (0: no limit)... */
    uint64_t max_ios;     /* ...or this many commands (0: no limit) */
};

struct nvme_load_result {
    uint64_t ios; /* completed */
    /* Of them, by I/O queue (index qid): how evenly the device serves queues. */
    uint64_t queue_ios[NVME_DRV_MAX_QUEUES + 1];
    double seconds, iops, avg_us, p99_us, max_us;
    /* The first command that failed: its status (SCT << 8 | SC) and LBA. */
    uint16_t status;
    uint64_t lba;
};

/*
 * Run the load; *res says what it measured. 0; -EIO when a command
 * completed with an error status (no new commands after it; the others
 * are waited for; res->status and res->lba say which); -EPROTO for a
 * completion of no command in flight; -ETIMEDOUT when no completion came
 * for 10 s (commands stay in flight: reset the controller); -EINVAL for
 * a load the driver cannot carry; or the driver's error.
 */
int nvme_load_run(struct nvme_drv *drv, const struct nvme_load *load, struct nvme_load_result *res);
