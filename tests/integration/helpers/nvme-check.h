/* SPDX-License-Identifier: MIT */
/*
 * Asserting helpers for the Check suites that drive the nvme plugin with
 * helpers/nvme-driver.h: commands that must complete (with a given status),
 * several in flight, Identify, queue setup, and the byte pattern the
 * suites write and check. `log` is the daemon whose log a failed command
 * prints. Check suites only: failures are assertions.
 */
#pragma once

#ifdef CHECK_H

#include <stdint.h>
#include <string.h>

#include "nvme-driver.h"
#include "testutil.h"

/* Submit c on queue qid and wait for it: its status (SCT << 8 | SC). */
static inline uint16_t tu_nvme_cmd(struct nvme_drv *drv, const struct test_daemon *log,
                                   uint16_t qid, struct nvme_sqe *c, uint32_t *dw0)
{
    uint16_t status = 0xffff;
    int r = nvme_drv_cmd(drv, qid, c, &status, dw0);
    if (r < 0)
        test_daemon_dump_log(log, 4096);
    ck_assert_msg(r == 0, "command %#x on queue %u: %s", c->opcode, qid, strerror(-r));
    return status;
}

static inline void tu_nvme_cmd_ok(struct nvme_drv *drv, const struct test_daemon *log, uint16_t qid,
                                  struct nvme_sqe *c, uint32_t *dw0)
{
    uint16_t status = tu_nvme_cmd(drv, log, qid, c, dw0);
    ck_assert_msg(status == 0, "command %#x on queue %u: status %#x", c->opcode, qid, status);
}

static inline void tu_nvme_expect_status(struct nvme_drv *drv, const struct test_daemon *log,
                                         uint16_t qid, struct nvme_sqe *c, uint16_t want,
                                         const char *what)
{
    uint16_t status = tu_nvme_cmd(drv, log, qid, c, NULL);
    ck_assert_msg(status == want, "%s: status %#x, expected %#x", what, status, want);
}

/* Queue c on qid without ringing: its cid. */
static inline uint16_t tu_nvme_submit(struct nvme_drv *drv, uint16_t qid, struct nvme_sqe c)
{
    uint16_t cid;
    ck_assert_int_eq(nvme_drv_queue_cmd(drv, qid, &c, &cid), 0);
    return cid;
}

/* n completions on qid, each successful, each for one of the n cids (up
 * to 64), in any order. */
static inline void tu_nvme_reap_all(struct nvme_drv *drv, const struct test_daemon *log,
                                    uint16_t qid, const uint16_t *cids, int n)
{
    bool seen[64] = {false};
    ck_assert_int_le(n, 64);
    for (int k = 0; k < n; k++) {
        struct nvme_cqe cqe;
        int r = nvme_drv_reap(drv, qid, &cqe, TU_TIMEOUT_MS);
        if (r < 0)
            test_daemon_dump_log(log, 4096);
        ck_assert_msg(r == 0, "queue %u: completion %d of %d: %s", qid, k + 1, n, strerror(-r));
        int i = 0;
        while (i < n && cids[i] != cqe.cid)
            i++;
        ck_assert_msg(i < n && !seen[i], "queue %u: a completion for cid %u, not one outstanding",
                      qid, cqe.cid);
        seen[i] = true;
        ck_assert_msg(nvme_drv_status(&cqe) == 0, "queue %u: command %d: status %#x", qid, i,
                      nvme_drv_status(&cqe));
    }
}

/* Identify CNS cns of nsid into the first data page (0xee before): a pointer to it. */
static inline uint8_t *tu_nvme_identify(struct nvme_drv *drv, const struct test_daemon *log,
                                        uint32_t cns, uint32_t nsid)
{
    memset(nvme_drv_ptr(drv, NVME_DRV_DATA), 0xee, 4096);
    struct nvme_sqe c = {.opcode = NVME_ADM_IDENTIFY,
                         .nsid = nsid,
                         .prp1 = nvme_drv_iova(NVME_DRV_DATA),
                         .cdw10 = cns};
    tu_nvme_cmd_ok(drv, log, 0, &c, NULL);
    return nvme_drv_ptr(drv, NVME_DRV_DATA);
}

/* Set Features Number of Queues: n submission and n completion queues, granted. */
static inline void tu_nvme_set_queues(struct nvme_drv *drv, const struct test_daemon *log,
                                      uint16_t n)
{
    uint32_t dw0 = 0;
    struct nvme_sqe c = {.opcode = NVME_ADM_SET_FEATURES,
                         .cdw10 = NVME_FEAT_NUM_QUEUES,
                         .cdw11 = (uint32_t)(n - 1) << 16 | (n - 1)};
    tu_nvme_cmd_ok(drv, log, 0, &c, &dw0);
    ck_assert_uint_eq(dw0, (uint32_t)(n - 1) << 16 | (n - 1));
}

static inline void tu_nvme_create_queue(struct nvme_drv *drv, uint16_t qid)
{
    uint16_t status = 0xffff;
    int r = nvme_drv_create_io_queue(drv, qid, &status);
    ck_assert_msg(r == 0 && status == 0, "creating I/O queue %u: %s, status %#x", qid, strerror(-r),
                  status);
}

/* After a migration: *client (freed) becomes a new one on device id of d,
 * the driver reattached to it with its guest memory and queues; the
 * controller is ready. */
static inline void tu_nvme_reattach(struct nvme_drv *drv, struct vfu_client **client,
                                    struct test_daemon *d, const char *id)
{
    vfu_client_free(*client);
    *client = tu_open(d, id);
    int r = nvme_drv_reattach(drv, *client, true);
    ck_assert_msg(r == 0, "reattaching: %s", strerror(-r));
    uint32_t csts = 0;
    ck_assert_int_eq(nvme_drv_rd32(drv, NVME_REG_CSTS, &csts), 0);
    if (csts != NVME_CSTS_RDY)
        test_daemon_dump_log(d, 8192);
    ck_assert_msg(csts == NVME_CSTS_RDY, "CSTS is %#x after the migration, not RDY alone", csts);
}

/* Byte i of a pattern: differs between pages, so a page in the wrong place shows. */
static inline uint8_t tu_pat(uint8_t seed, size_t i)
{
    return (uint8_t)(seed + i * 13 + i / 4096);
}

static inline void tu_fill_pat(void *buf, size_t len, uint8_t seed)
{
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++)
        p[i] = tu_pat(seed, i);
}

/* buf[0, len) holds the pattern's bytes from `first` on. One assertion at
 * the first wrong byte: a Check assertion per byte costs a write to the
 * runner's pipe each. */
static inline void tu_check_pat(const void *buf, size_t len, uint8_t seed, size_t first,
                                const char *what)
{
    const uint8_t *p = buf;
    size_t i = 0;
    while (i < len && p[i] == tu_pat(seed, first + i))
        i++;
    ck_assert_msg(i == len, "%s: byte %zu is %#x, expected %#x", what, i, i < len ? p[i] : 0,
                  tu_pat(seed, first + i));
}

/* buf[0, len) is all zeros. */
static inline void tu_check_zero(const void *buf, size_t len, const char *what)
{
    const uint8_t *p = buf;
    size_t i = 0;
    while (i < len && p[i] == 0)
        i++;
    ck_assert_msg(i == len, "%s: byte %zu is %#x, expected 0", what, i, i < len ? p[i] : 0);
}

#endif /* CHECK_H */
