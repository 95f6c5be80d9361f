/* SPDX-License-Identifier: MIT */
#include "nvme-load.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "util/macro.h"

#define STALL_NS   (10 * 1000000000ull) /* no completion this long: -ETIMEDOUT */
#define SLOT_BYTES 4096u

/* Latencies: 100 ns buckets below 1 ms, 100 us buckets from 1 ms to 1 s,
 * and one for the rest. */
#define FINE_NS      100u
#define FINE_N       10000u
#define COARSE_NS    100000u
#define COARSE_N     9990u
#define HIST_N       (FINE_N + COARSE_N + 1)
#define HIST_LAST_NS (1000000000ull)

/* A command in flight, by cid (the driver hands cids out in turn). */
struct inflight {
    uint64_t start_ns, lba;
    uint32_t slot;
    bool busy;
};

struct load_run {
    struct nvme_drv *drv;
    const struct nvme_load *load;
    struct nvme_load_result *res;
    struct inflight *cmds; /* 65536, by cid */
    uint32_t *hist;        /* HIST_N */
    uint64_t rng, next_lba, nr_ios_slots;
    uint64_t submitted, inflight, lat_sum_ns, lat_max_ns;
    uint32_t nlb;
    bool stopping; /* no new commands: time is up, or one failed */
};

/* xorshift64*: quick, and the same numbers for the same seed. */
static uint64_t rng_next(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

static uint64_t next_lba(struct load_run *run)
{
    uint64_t n = run->load->sequential ? run->next_lba++ : rng_next(&run->rng);
    return n % run->nr_ios_slots * run->nlb;
}

static uint32_t hist_bucket(uint64_t ns)
{
    if (ns < (uint64_t)FINE_N * FINE_NS)
        return (uint32_t)(ns / FINE_NS);
    if (ns < HIST_LAST_NS)
        return FINE_N + (uint32_t)((ns - (uint64_t)FINE_N * FINE_NS) / COARSE_NS);
    return HIST_N - 1;
}

/* The middle of a bucket, in ns. */
static double hist_value(uint32_t b)
{
    if (b < FINE_N)
        return (b + 0.5) * FINE_NS;
    if (b < HIST_N - 1)
        return (double)FINE_N * FINE_NS + (b - FINE_N + 0.5) * COARSE_NS;
    return (double)HIST_LAST_NS;
}

static double hist_percentile(const uint32_t *hist, uint64_t n, double pct)
{
    uint64_t want = (uint64_t)((double)n * pct / 100.0 + 0.999999), seen = 0;
    for (uint32_t b = 0; b < HIST_N; b++) {
        seen += hist[b];
        if (seen >= want && seen > 0)
            return hist_value(b);
    }
    return 0;
}

static int submit(struct load_run *run, uint16_t qid, uint32_t slot, uint64_t now)
{
    const struct nvme_load *l = run->load;
    uint64_t lba = next_lba(run);
    struct nvme_sqe cmd = {.opcode = l->opcode,
                           .nsid = l->nsid ? l->nsid : 1,
                           .prp1 = nvme_drv_iova(NVME_DRV_DATA + (uint64_t)slot * SLOT_BYTES),
                           .cdw10 = (uint32_t)lba,
                           .cdw11 = (uint32_t)(lba >> 32),
                           .cdw12 = run->nlb - 1};
    uint16_t cid;
    /* A slow command (a disk under load) may still hold the cid the
     * driver would hand out next, 65536 commands on: pass over it. */
    while (run->cmds[run->drv->next_cid].busy)
        run->drv->next_cid++;
    int r = nvme_drv_queue_cmd(run->drv, qid, &cmd, &cid);
    if (r < 0)
        return r;
    run->cmds[cid] = (struct inflight){.start_ns = now, .lba = lba, .slot = slot, .busy = true};
    run->submitted++;
    run->inflight++;
    return 0;
}

static bool may_submit(const struct load_run *run)
{
    return !run->stopping && (!run->load->max_ios || run->submitted < run->load->max_ios);
}

/* One completion seen at `now`: its latency counted, a new command in its
 * slot (not yet rung). 1 when one was queued, 0 when not, or -errno. */
static int complete(struct load_run *run, uint16_t qid, const struct nvme_cqe *cqe, uint64_t now)
{
    struct inflight *c = &run->cmds[cqe->cid];
    if (!c->busy)
        return -EPROTO;
    c->busy = false;
    run->inflight--;
    uint16_t status = nvme_drv_status(cqe);
    if (status) {
        if (!run->res->status) {
            run->res->status = status;
            run->res->lba = c->lba;
        }
        run->stopping = true;
        return 0;
    }
    uint64_t lat = now - c->start_ns;
    run->hist[hist_bucket(lat)]++;
    run->lat_sum_ns += lat;
    if (lat > run->lat_max_ns)
        run->lat_max_ns = lat;
    run->res->ios++;
    run->res->queue_ios[qid]++;
    if (!may_submit(run))
        return 0;
    int r = submit(run, qid, c->slot, now);
    return r < 0 ? r : 1;
}

/* Poll CQ qid once: *seen when completions came; the SQ rung for the new
 * commands. */
static int poll_queue(struct load_run *run, uint16_t qid, uint64_t deadline, bool *seen)
{
    struct nvme_cqe cqes[NVME_DRV_QDEPTH];
    int n = nvme_drv_poll(run->drv, qid, cqes, ELEMENTSOF(cqes));
    if (n <= 0)
        return n;
    *seen = true;
    uint64_t now = test_now_ns();
    if (now >= deadline)
        run->stopping = true;
    bool queued = false;
    for (int i = 0; i < n; i++) {
        int r = complete(run, qid, &cqes[i], now);
        if (r < 0)
            return r;
        queued |= r > 0;
    }
    return queued ? nvme_drv_kick(run->drv, qid) : 0;
}

static int fill_queues(struct load_run *run, uint64_t now)
{
    const struct nvme_load *l = run->load;
    for (uint16_t q = 1; q <= l->queues; q++) {
        for (uint32_t i = 0; i < l->qd && may_submit(run); i++) {
            int r = submit(run, q, (q - 1) * l->qd + i, now);
            if (r < 0)
                return r;
        }
        int r = nvme_drv_kick(run->drv, q);
        if (r < 0)
            return r;
    }
    return 0;
}

static int run_load(struct load_run *run)
{
    const struct nvme_load *l = run->load;
    uint64_t start = test_now_ns();
    uint64_t deadline = l->duration_ns ? start + l->duration_ns : UINT64_MAX;
    uint64_t last = start;
    int r = fill_queues(run, start);
    while (r >= 0 && run->inflight > 0) {
        bool seen = false;
        for (uint16_t q = 1; r >= 0 && q <= l->queues; q++)
            r = poll_queue(run, q, deadline, &seen);
        uint64_t now = test_now_ns();
        if (seen)
            last = now;
        else if (now - last > STALL_NS)
            r = -ETIMEDOUT;
    }
    struct nvme_load_result *res = run->res;
    res->seconds = (double)(last - start) / 1e9;
    if (res->ios && res->seconds > 0) {
        res->iops = (double)res->ios / res->seconds;
        res->avg_us = (double)run->lat_sum_ns / (double)res->ios / 1e3;
        res->p99_us = hist_percentile(run->hist, res->ios, 99.0) / 1e3;
        res->max_us = (double)run->lat_max_ns / 1e3;
    }
    if (r < 0)
        return r;
    return res->status ? -EIO : 0;
}

int nvme_load_run(struct nvme_drv *drv, const struct nvme_load *load, struct nvme_load_result *res)
{
    *res = (struct nvme_load_result){0};
    if ((load->opcode != NVME_CMD_READ && load->opcode != NVME_CMD_WRITE) ||
        load->block_size == 0 || load->io_size == 0 || load->io_size > SLOT_BYTES ||
        load->io_size % load->block_size || load->nr_blocks < load->io_size / load->block_size ||
        load->queues == 0 || load->queues > NVME_DRV_MAX_QUEUES || load->qd == 0 ||
        load->qd >= NVME_DRV_QDEPTH)
        return -EINVAL;
    struct load_run run = {.drv = drv,
                           .load = load,
                           .res = res,
                           .rng = load->seed ? load->seed : 1,
                           .nlb = load->io_size / load->block_size};
    run.nr_ios_slots = load->nr_blocks / run.nlb;
    _cleanup_free_ struct inflight *cmds = calloc(65536, sizeof(*cmds));
    _cleanup_free_ uint32_t *hist = calloc(HIST_N, sizeof(*hist));
    if (!cmds || !hist)
        return -ENOMEM;
    run.cmds = cmds;
    run.hist = hist;
    memset(nvme_drv_ptr(drv, NVME_DRV_DATA), 0xa5, (size_t)load->queues * load->qd * SLOT_BYTES);
    return run_load(&run);
}
